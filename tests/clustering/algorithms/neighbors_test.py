"""kNN mining (exact, tiled, sharded, approximate) and the neighbour pairs
fed to pair-supervised methods."""

import jax
import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from clustering import data
from clustering.algorithms import neighbors
from configs import default


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


@pytest.mark.parametrize("metric", ["cosine", "sqeuclidean"])
def test_tiles_of_the_data_set_sharded_over_devices_equal_one_pass(metric):
  """Queries over 8 devices scanning tiles of 70 rows (the last one padded)
  find scikit-learn's neighbours, as one device scanning one tile does."""
  rng = np.random.default_rng(1)
  x = rng.standard_normal((333, 9)).astype(np.float32)
  sk_metric = "cosine" if metric == "cosine" else "euclidean"
  ref = NearestNeighbors(n_neighbors=8, metric=sk_metric).fit(x).kneighbors(
      x, return_distance=False)[:, 1:]
  tiled = neighbors.nearest_neighbors(x, 7, metric=metric, chunk=40,
                                      database_block=70,
                                      devices=jax.devices()[:8])
  whole = neighbors.nearest_neighbors(x, 7, metric=metric,
                                      devices=jax.devices()[:1])
  np.testing.assert_array_equal(tiled, ref)
  np.testing.assert_array_equal(whole, ref)


def test_approximate_search_and_its_recall():
  rng = np.random.default_rng(2)
  x = rng.standard_normal((400, 16)).astype(np.float32)
  exact = neighbors.nearest_neighbors(x, 10)
  found = neighbors.nearest_neighbors(x, 10, approximate=True,
                                      recall_target=0.9, database_block=128)
  assert found.shape == (400, 10)
  assert not np.any(found == np.arange(400)[:, None])
  recall = neighbors.neighbor_recall(found, exact)
  assert recall >= 0.9
  # Recall by hand: row 0 finds 2 of 3, row 1 all 3 (in another order).
  assert neighbors.neighbor_recall(
      np.array([[1, 2, 9], [0, 3, 2]]),
      np.array([[1, 2, 3], [2, 3, 0]])) == pytest.approx(5 / 6)
  with pytest.raises(ValueError, match="`found`"):
    neighbors.neighbor_recall(found[:, :5], exact)


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
                                              "`metric`"),
    (dict(k=2, recall_target=0.0), "`recall_target`")])
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


def test_self_share_pairs_a_share_of_anchors_with_themselves():
  table = (np.arange(4000).reshape(1000, 4) + 5000).astype(np.int32)
  anchors = np.random.default_rng(1).permutation(1000)
  # Share 0 is the draw before the argument existed: one of the K columns,
  # uniformly, from the (seed, step) generator.
  column = np.random.default_rng([3, 7]).integers(0, 4, size=1000)
  np.testing.assert_array_equal(
      data.partner_indices(table, anchors, seed=3, step=7, batch_size=1000),
      table[anchors, column])
  np.testing.assert_array_equal(
      data.partner_indices(table, anchors, seed=3, step=7, batch_size=1000,
                           self_share=1.0), anchors)
  half = data.partner_indices(table, anchors, seed=3, step=7,
                              batch_size=1000, self_share=0.5)
  own = half == anchors
  assert 430 < own.sum() < 570  # Binomial(1000, 0.5): 4.4 std either way
  # The others keep the neighbour share 0 drew for them.
  np.testing.assert_array_equal(half[~own], table[anchors, column][~own])
  halves = [data.partner_indices(table, anchors[p * 500:(p + 1) * 500],
                                 seed=3, step=7, batch_size=1000,
                                 process_index=p, process_count=2,
                                 self_share=0.5) for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(halves), half)
  with pytest.raises(ValueError, match="self_share must be in"):
    data.partner_indices(table, anchors, seed=3, step=7, batch_size=1000,
                         self_share=1.5)


def test_training_batches_hand_out_the_anchor_as_its_own_partner():
  digits = data.load(default.get_config().data, num_clusters=10)
  table = np.roll(np.arange(digits.num_examples), 1)[:, None]  # i -> i - 1
  batches = data.TrainingBatches(digits, batch_size=64, seed=0,
                                 neighbors=table, self_share=1.0)
  x, partners = batches(3)
  np.testing.assert_array_equal(partners, x)
  x, partners = data.TrainingBatches(digits, batch_size=64, seed=0,
                                     neighbors=table)(3)
  assert not np.array_equal(partners, x)


@pytest.mark.parametrize("metric", ["cosine", "sqeuclidean"])
def test_inverted_file_probing_every_cell_is_the_exact_search(metric):
  rng = np.random.default_rng(3)
  x = rng.standard_normal((500, 10)).astype(np.float32)
  sk_metric = "cosine" if metric == "cosine" else "euclidean"
  ref = NearestNeighbors(n_neighbors=7, metric=sk_metric).fit(x).kneighbors(
      x, return_distance=False)[:, 1:]
  found = neighbors.ivf_neighbors(x, 6, metric=metric, num_cells=20,
                                  num_probes=20, query_block=32)
  assert found.shape == (500, 6) and found.dtype == np.int32
  np.testing.assert_array_equal(found, ref)


def test_inverted_file_recall_on_clustered_data():
  """A few probed cells find most true neighbours of data with structure
  (a Gaussian mixture, as features of images are); one probe finds fewer
  and every probe finds all. Never an example itself."""
  rng = np.random.default_rng(4)
  means = 3.0 * rng.standard_normal((20, 16))
  x = (means[rng.integers(0, 20, 4000)]
       + rng.standard_normal((4000, 16))).astype(np.float32)
  exact = neighbors.nearest_neighbors(x, 10)
  found = neighbors.ivf_neighbors(x, 10)  # 126 cells, 16 probes
  assert not np.any(found == np.arange(4000)[:, None])
  assert len({tuple(r) for r in np.sort(found, axis=1)}) > 3900
  recall = neighbors.neighbor_recall(found, exact)
  one = neighbors.neighbor_recall(
      neighbors.ivf_neighbors(x, 10, num_probes=1), exact)
  assert recall >= 0.99 and one < 0.7, (recall, one)  # 0.999 and 0.50


def test_inverted_file_cells_too_small_for_k_search_everything():
  # 12 points in 12 cells, one probe: each cell holds only its query, so
  # every cell falls back to all rows and the result is exact.
  rng = np.random.default_rng(5)
  x = rng.standard_normal((12, 4)).astype(np.float32)
  exact = neighbors.nearest_neighbors(x, 5)
  found = neighbors.ivf_neighbors(x, 5, num_cells=12, num_probes=1)
  np.testing.assert_array_equal(found, exact)


@pytest.mark.parametrize("kw, match", [
    (dict(k=0), "`k`"), (dict(k=2, metric="l1"), "`metric`"),
    (dict(k=2, num_cells=0), "`num_cells`"),
    (dict(k=2, num_cells=11), "`num_cells`"),
    (dict(k=2, num_probes=0), "`num_probes`")])
def test_inverted_file_bad_arguments(kw, match):
  with pytest.raises(ValueError, match=match):
    neighbors.ivf_neighbors(np.ones((10, 3)), **kw)


def test_mining_searches_exactly_up_to_the_auto_limit_then_by_cells(
    monkeypatch):
  """``data.neighbor_search='auto'``: all pairs up to ``AUTO_EXACT_MAX``
  examples, the inverted file above (here the limit is lowered to 500)."""
  from clustering.data import pipeline  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(6)
  means = 3.0 * rng.standard_normal((10, 8))
  x = (means[rng.integers(0, 10, 1000)]
       + rng.standard_normal((1000, 8))).astype(np.float32)
  dataset = data.from_arrays("mixture", x, None)
  stats = data.input_stats(dataset, seed=0)
  exact = data.mine_neighbors(dataset, 5, stats, search="exact")
  calls = []
  real_ivf = neighbors.ivf_neighbors
  monkeypatch.setattr(neighbors, "ivf_neighbors",
                      lambda *a, **kw: calls.append(kw) or real_ivf(*a, **kw))
  np.testing.assert_array_equal(
      data.mine_neighbors(dataset, 5, stats, search="auto"), exact)
  assert not calls
  monkeypatch.setattr(pipeline, "AUTO_EXACT_MAX", 500)
  found = data.mine_neighbors(dataset, 5, stats, search="auto", seed=3)
  assert calls and calls[-1]["seed"] == 3
  assert neighbors.neighbor_recall(found, exact) >= 0.95
  np.testing.assert_array_equal(
      data.mine_neighbors(dataset, 5, stats, search="ivf", seed=3), found)


def test_unit_rows_in_chunks_equal_each_row_over_its_norm():
  rng = np.random.default_rng(8)
  x = (rng.standard_normal((50, 12)) * rng.uniform(0.1, 9, (50, 1))
       ).astype(np.float32)
  x[3] = 0.0
  expected = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  got = neighbors.unit_rows(x, chunk=7)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, expected)  # the same values, chunked
  np.testing.assert_allclose(np.linalg.norm(got[4:], axis=1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(got[3], 0.0)


def test_mining_reads_features_in_chunks_as_their_z_scored_unit_rows():
  """The rows the search compares, written chunk by chunk, equal the whole
  set z-scored with the training statistics and each row over its norm;
  cosine neighbours found on them equal scikit-learn's on that set."""
  from clustering.data import pipeline  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(9)
  x = (rng.standard_normal((300, 16)) * rng.uniform(0.5, 4, 16)
       + rng.uniform(-3, 3, 16)).astype(np.float32)
  dataset = data.from_arrays("features", x, None)
  stats = data.input_stats(dataset, seed=0)
  z = (x - stats.feature_mean) / stats.feature_std
  expected = z / np.linalg.norm(z, axis=1, keepdims=True)
  rows = pipeline._unit_search_rows(dataset, stats, chunk=64)  # pylint: disable=protected-access
  np.testing.assert_array_equal(rows, expected)
  found = data.mine_neighbors(dataset, 4, stats, search="exact")
  ref = NearestNeighbors(n_neighbors=5, metric="cosine").fit(z)
  sk = ref.kneighbors(z, return_distance=False)[:, 1:]
  np.testing.assert_array_equal(found, sk)


def test_rows_that_are_unit_already_are_searched_without_a_copy(
    monkeypatch):
  """Cosine search: unit rows are used as given (no normalised copy), other
  rows are normalised, and both find the same neighbours."""
  rng = np.random.default_rng(10)
  x = rng.standard_normal((400, 8)).astype(np.float32)
  unit = neighbors.unit_rows(x)
  calls = []
  real = neighbors.unit_rows
  monkeypatch.setattr(neighbors, "unit_rows",
                      lambda a, **kw: calls.append(a.shape) or real(a, **kw))
  from_unit = neighbors.ivf_neighbors(unit, 5, seed=0)
  assert not calls
  scaled = x * rng.uniform(0.5, 3.0, (400, 1)).astype(np.float32)
  from_scaled = neighbors.ivf_neighbors(scaled, 5, seed=0)
  assert calls == [(400, 8)]
  assert neighbors.neighbor_recall(from_scaled, from_unit) >= 0.99


def _mutual_by_sets(table):
  """Row by row: the mutual neighbours in rank order, tiled over the k
  slots; the nearest neighbour alone where none is mutual."""
  rows = [set(row) for row in table]
  out = []
  for i, row in enumerate(table):
    kept = [j for j in row if i in rows[j]] or [row[0]]
    out.append([kept[c % len(kept)] for c in range(len(row))])
  return np.array(out)


def test_mutual_neighbors_keep_pairs_found_in_both_rows():
  table = np.array([[1, 2], [0, 2], [3, 0], [2, 1]])
  # 0-1, 0-2 and 2-3 are mutual; 1->2 and 3->1 are one-sided.
  np.testing.assert_array_equal(neighbors.mutual_neighbors(table),
                                [[1, 2], [0, 0], [3, 0], [2, 2]])
  rng = np.random.default_rng(7)
  x = rng.standard_normal((300, 4))
  table = NearestNeighbors(n_neighbors=6).fit(x).kneighbors(
      x, return_distance=False)[:, 1:]
  kept = neighbors.mutual_neighbors(table)
  np.testing.assert_array_equal(kept, _mutual_by_sets(table))
  assert kept.dtype == table.dtype
  # Some rows lose partners and none gains one it did not list.
  assert (kept != table).any()
  assert all(set(a) <= set(b) for a, b in zip(kept, table))


def test_mutual_pairs_share_a_class_more_often_on_digits():
  """On real images mutual pairs are cleaner (digits, 10 neighbours:
  0.963 -> 0.983 of pairs share the class)."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  x, labels = load_digits(return_X_y=True)
  images = (x.reshape(-1, 8, 8, 1) / 16.0).astype(np.float32)
  dataset = data.from_arrays("digits", images, labels)
  stats = data.input_stats(dataset, seed=0)
  every = data.mine_neighbors(dataset, 10, stats, search="exact")
  mutual = data.mine_neighbors(dataset, 10, stats, search="exact",
                               pairs="mutual")
  np.testing.assert_array_equal(mutual, neighbors.mutual_neighbors(every))
  assert (neighbors.neighbor_purity(mutual, labels)
          > neighbors.neighbor_purity(every, labels) + 0.015)


@pytest.mark.parametrize("table, match", [
    (np.array([0, 1]), r"\[n, k\] integer"),
    (np.array([[0.0], [1.0]]), r"\[n, k\] integer"),
    (np.array([[1], [2]]), r"in \[0, 2\)")])
def test_mutual_neighbors_bad_tables(table, match):
  with pytest.raises(ValueError, match=match):
    neighbors.mutual_neighbors(table)
