import numpy as np
import pytest
from sklearn import datasets
from sklearn.cluster import KMeans

import clustering
import objectives as O


def test_matches_sklearn_inertia_on_digits():
  x = datasets.load_digits().data.astype(np.float32)
  ours = clustering.kmeans(x, 10, n_init=10, seed=0)
  ref = KMeans(n_clusters=10, n_init=10, random_state=0).fit(x)
  assert float(ours.inertia) <= ref.inertia_ * 1.005
  # inertia is the sum of squared distances to the returned centroids.
  direct = np.min(np.asarray(O.squared_distances(x, ours.centroids)), 1).sum()
  np.testing.assert_allclose(float(ours.inertia), direct, rtol=1e-4)
  np.testing.assert_array_equal(
      ours.labels, np.argmin(np.asarray(O.squared_distances(x, ours.centroids)), 1))
  assert 0 < int(ours.iterations) <= 300


def test_separated_blobs_are_recovered():
  rng = np.random.default_rng(0)
  centers = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
  x = np.concatenate([c + rng.standard_normal((40, 2)) for c in centers])
  y = np.repeat(np.arange(3), 40)
  out = clustering.kmeans(x.astype(np.float32), 3, n_init=3)
  assert clustering.hungarian_accuracy(y, np.asarray(out.labels)) == 1.0


def test_bad_input():
  with pytest.raises(ValueError, match="`num_clusters`=5 exceeds"):
    clustering.kmeans(np.zeros((4, 2), np.float32), 5)
  with pytest.raises(ValueError, match="`x` must have rank 2"):
    clustering.kmeans(np.zeros(4, np.float32), 2)
