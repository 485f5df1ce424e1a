import numpy as np
import pytest

from clustering.algorithms import metrics


def test_hungarian_accuracy_hand_computed():
  # Clusters are a relabelling of classes except one point.
  true = np.array([0, 0, 1, 1, 2, 2])
  pred = np.array([2, 2, 0, 0, 1, 0])
  assert metrics.hungarian_accuracy(true, pred) == pytest.approx(5 / 6)
  assert metrics.hungarian_accuracy(true, (true + 1) % 3) == 1.0


def test_against_sklearn_and_more_clusters_than_classes():
  rng = np.random.default_rng(0)
  true = rng.integers(0, 4, 200)
  pred = rng.integers(0, 6, 200)
  out = metrics.clustering_metrics(true, pred, rng.standard_normal((200, 3)))
  from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
  assert out["nmi"] == pytest.approx(normalized_mutual_info_score(true, pred))
  assert out["ari"] == pytest.approx(adjusted_rand_score(true, pred))
  assert 0 < out["acc"] < 1 and np.isfinite(out["silhouette"])


def test_bad_input():
  with pytest.raises(ValueError, match="`labels_pred` must be a 1-D integer"):
    metrics.hungarian_accuracy([0, 1], [0.5, 1.0])
  with pytest.raises(ValueError, match="same shape"):
    metrics.hungarian_accuracy([0, 1, 1], [0, 1])
