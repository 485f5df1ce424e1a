"""Spectral clustering of a membership against scikit-learn."""

import numpy as np
import pytest
from sklearn import cluster as sk_cluster

from clustering.algorithms import metrics
from clustering.algorithms import spectral


def test_spectral_clustering_matches_scikit_learn():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(4), 30)
  affinity = 0.02 * rng.random((120, 120))
  affinity += (labels[:, None] == labels[None]) * rng.uniform(0.5, 1.0,
                                                              (120, 120))
  affinity = 0.5 * (affinity + affinity.T)
  ours = spectral.spectral_clustering(affinity, 4)
  ref = sk_cluster.SpectralClustering(
      4, affinity="precomputed", random_state=0).fit_predict(affinity)
  assert metrics.adjusted_rand_index(ref, ours) == 1.0
  assert metrics.adjusted_rand_index(labels, ours) == 1.0
  with pytest.raises(ValueError, match="square"):
    spectral.spectral_clustering(affinity[:5], 2)


def test_lanczos_and_dense_spectral_embeddings_agree(monkeypatch):
  rng = np.random.default_rng(1)
  labels = np.repeat(np.arange(5), 80)
  affinity = 0.05 * rng.random((400, 400))
  affinity += (labels[:, None] == labels[None]) * rng.uniform(0.3, 1.0,
                                                              (400, 400))
  dense = spectral.spectral_embedding(affinity, 5)
  monkeypatch.setattr(spectral, "_DENSE_MAX", 100)
  lanczos = spectral.spectral_embedding(affinity, 5)
  # Same subspace up to a rotation: the map between them is orthogonal.
  np.testing.assert_allclose(
      np.linalg.svd(np.linalg.lstsq(dense, lanczos, rcond=None)[0],
                    compute_uv=False), 1.0, atol=1e-3)
  assert metrics.adjusted_rand_index(
      labels, spectral.spectral_clustering(affinity, 5)) == 1.0
