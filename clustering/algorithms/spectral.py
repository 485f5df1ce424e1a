"""Spectral clustering of a (soft) membership or affinity matrix.

MLC and CPP assign test samples by spectral clustering on the doubly
stochastic membership ``Gamma``: symmetrise, normalised Laplacian
``I - D^-1/2 A D^-1/2``, the ``k`` eigenvectors with the smallest eigenvalues
(the largest of ``D^-1/2 A D^-1/2``), row-normalise, k-means (Ng, Jordan and
Weiss, 2001; scikit-learn's ``SpectralClustering`` with a precomputed
affinity follows the same recipe).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from scipy.sparse import linalg as sparse_linalg

from clustering.algorithms.kmeans import kmeans as fit_kmeans

__all__ = ["spectral_embedding", "spectral_clustering"]

# Above this many samples the top eigenvectors come from Lanczos (eigsh).
_DENSE_MAX = 3000


@jax.jit
def _normalized_affinity(affinity):
  a = 0.5 * (affinity + affinity.T)
  a = jnp.maximum(a, 0.0)
  deg = jnp.sum(a, axis=1)
  inv_sqrt = jax.lax.rsqrt(jnp.maximum(deg, 1e-12))
  return a * inv_sqrt[:, None] * inv_sqrt[None, :]


def spectral_embedding(affinity: jax.typing.ArrayLike,
                       num_clusters: int) -> np.ndarray:
  """Row-normalised top-``k`` eigenvectors of ``D^-1/2 A D^-1/2``.

  Args:
    affinity: ``[n, n]`` non-negative affinities (made symmetric).
    num_clusters: ``k``.

  Returns:
    ``[n, k]`` float32 embedding.
  """
  affinity = jnp.asarray(affinity, jnp.float32)
  if affinity.ndim != 2 or affinity.shape[0] != affinity.shape[1]:
    raise ValueError(f"`affinity` must be square [n, n]; got {affinity.shape}.")
  if not 2 <= num_clusters <= affinity.shape[0]:
    raise ValueError(f"`num_clusters`={num_clusters} must be in [2, n] for "
                     f"`affinity` {affinity.shape}.")
  m = np.asarray(_normalized_affinity(affinity), np.float64)
  n = m.shape[0]
  if n <= _DENSE_MAX or num_clusters >= n // 10:  # Lanczos wants k << n
    _, vectors = np.linalg.eigh(m)  # ascending; LAPACK in float64
    top = vectors[:, -num_clusters:]
  else:
    # Lanczos for the k largest: seconds where a dense eigh of a 10k x 10k
    # matrix takes minutes. The start vector is fixed for reproducibility.
    v0 = np.sqrt(np.maximum(m.sum(1), 1e-12))
    _, top = sparse_linalg.eigsh(m, k=num_clusters, which="LA", v0=v0,
                                 tol=1e-8)
  top = np.array(top)
  top /= np.maximum(np.linalg.norm(top, axis=1, keepdims=True), 1e-12)
  return top.astype(np.float32)


def spectral_clustering(affinity: jax.typing.ArrayLike, num_clusters: int,
                        *, n_init: int = 10, seed: int = 0) -> np.ndarray:
  """Cluster labels ``[n]`` (int32) from an affinity/membership ``[n, n]``."""
  embedding = spectral_embedding(affinity, num_clusters)
  result = fit_kmeans(embedding, num_clusters, n_init=n_init, seed=seed)
  return np.asarray(result.labels, np.int32)
