"""MCR2Clustering with a learned head: a partition, not just valid ids.

(The cluster-count estimate of ``eval.num_clusters_candidates`` is tested
against an independent coding length in
``tests/experiments/config_paths_test.py``.)
"""

import numpy as np
import pytest
from scipy import optimize
from sklearn import datasets

import clustering


def _hungarian_accuracy(y, labels):
  """Best one-to-one cluster-to-class accuracy (SciPy's assignment)."""
  counts = np.zeros((labels.max() + 1, y.max() + 1))
  np.add.at(counts, (labels, y), 1)
  rows, cols = optimize.linear_sum_assignment(-counts)
  return counts[rows, cols].sum() / len(y)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_learned_head_separates_four_blobs():
  """``learn_head=True`` on four well-separated blobs: every cluster is
  used and matches a blob (ACC >= 0.9), and the partition is computed from
  the learned cluster head's unit-norm ``z_dim`` outputs."""
  x, y = datasets.make_blobs(n_samples=160, centers=4, n_features=8,
                             cluster_std=0.5, center_box=(-10, 10),
                             random_state=0)
  est = clustering.MCR2Clustering(
      n_clusters=4, learn_head=True, max_iter=30, batch_size=64,
      hidden_layer_sizes=(32,), z_dim=6, random_state=0).fit(x)
  assert np.unique(est.labels_).size == 4  # >= 3 and, for ACC 0.9, all 4
  assert _hungarian_accuracy(y, est.labels_) >= 0.9
  assert est.embedding_.shape == (160, 6)  # the head's, not X's 8 columns
  np.testing.assert_allclose(np.linalg.norm(est.embedding_, axis=1), 1.0,
                             atol=1e-5)
  assert est.loss_curve_.shape == (30,)
  assert est.loss_curve_[-5:].mean() < est.loss_curve_[:5].mean()
