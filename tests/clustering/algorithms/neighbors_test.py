"""Exact kNN mining and the neighbour pairs fed to pair-supervised methods."""

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from clustering import data
from clustering.algorithms import neighbors


@pytest.mark.parametrize("metric", ["cosine", "sqeuclidean"])
def test_matches_scikit_learn_and_excludes_self(metric):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((300, 12)).astype(np.float32)
  ours = neighbors.nearest_neighbors(x, 5, metric=metric, chunk=64)
  sk_metric = "cosine" if metric == "cosine" else "euclidean"
  ref = NearestNeighbors(n_neighbors=6, metric=sk_metric).fit(x).kneighbors(
      x, return_distance=False)[:, 1:]
  assert ours.shape == (300, 5) and ours.dtype == np.int32
  np.testing.assert_array_equal(ours, ref)
  assert not np.any(ours == np.arange(300)[:, None])


def test_images_are_flattened_and_purity_counts_shared_labels():
  x = np.zeros((4, 2, 2, 1), np.float32)
  x[:2, 0, 0, 0] = [1.0, 0.9]
  x[2:, 1, 1, 0] = [1.0, 0.8]
  x[:, 0, 1, 0] = 0.01 * np.arange(4)
  nn = neighbors.nearest_neighbors(x, 1)
  np.testing.assert_array_equal(nn[:, 0], [1, 0, 3, 2])
  assert neighbors.neighbor_purity(nn, np.array([0, 0, 1, 1])) == 1.0
  assert neighbors.neighbor_purity(nn, np.array([0, 1, 1, 0])) == 0.0


@pytest.mark.parametrize("kw, match", [
    (dict(k=0), "`k`"), (dict(k=10), "`k`"), (dict(k=2, metric="l1"),
                                              "`metric`")])
def test_bad_arguments(kw, match):
  with pytest.raises(ValueError, match=match):
    neighbors.nearest_neighbors(np.ones((10, 3)), **kw)
  with pytest.raises(ValueError, match="`x`"):
    neighbors.nearest_neighbors(np.ones((1, 3)), 1)


def test_partners_depend_on_seed_and_step_and_split_over_processes():
  table = np.arange(40).reshape(10, 4) + 100
  anchors = np.array([3, 1, 7, 0, 9, 2])
  full = data.partner_indices(table, anchors, seed=0, step=5, batch_size=6)
  assert all(p in table[a] for a, p in zip(anchors, full))
  again = data.partner_indices(table, anchors, seed=0, step=5, batch_size=6)
  np.testing.assert_array_equal(full, again)
  others = [data.partner_indices(table, anchors, seed=0, step=s,
                                 batch_size=6) for s in range(6, 12)]
  assert any(not np.array_equal(full, o) for o in others)
  halves = [data.partner_indices(table, anchors[p * 3:(p + 1) * 3], seed=0,
                                 step=5, batch_size=6, process_index=p,
                                 process_count=2) for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(halves), full)
