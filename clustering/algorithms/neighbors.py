"""Exact k-nearest-neighbour mining over a whole data set, in JAX.

Neighbour-supervised clustering (I-Con's kNN kernel over the training set,
SCAN-style neighbour mining) pairs each example with one of its ``k`` nearest
neighbours in the input space (raw pixels, or pre-trained features such as
CLIP/DINO embeddings loaded with ``data.name='npy'``). The search is brute
force: ``[chunk, n]`` similarity blocks on the device, then ``lax.top_k``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_METRICS = ("cosine", "sqeuclidean")


@functools.partial(jax.jit, static_argnames=("k", "metric"))
def _block_top_k(queries, first, x, sq_norms, *, k, metric):
  scores = jnp.matmul(queries, x.T, precision=jax.lax.Precision.HIGHEST)
  if metric == "sqeuclidean":  # -||q - x||^2 up to the query's own norm
    scores = 2.0 * scores - sq_norms[None, :]
  rows = first + jnp.arange(queries.shape[0])
  scores = jnp.where(rows[:, None] == jnp.arange(x.shape[0])[None, :],
                     -jnp.inf, scores)  # never one's own neighbour
  return jax.lax.top_k(scores, k)[1]


def nearest_neighbors(x: np.ndarray, k: int, *, metric: str = "cosine",
                      chunk: int = 2048) -> np.ndarray:
  """Indices of the ``k`` nearest other examples of each row of ``x``.

  Args:
    x: ``[n, ...]`` examples (flattened to ``[n, d]``).
    k: neighbours per example, ``1 <= k < n``.
    metric: ``'cosine'`` (largest cosine similarity) or ``'sqeuclidean'``.
    chunk: query rows per block (memory is ``chunk * n`` floats).

  Returns:
    ``[n, k]`` int32, nearest first; an example is never its own neighbour.
  """
  x = np.asarray(x, np.float32)
  if x.ndim < 2 or x.shape[0] < 2:
    raise ValueError(f"`x` must be [n, ...] with n >= 2 examples; got shape "
                     f"{x.shape}.")
  n = x.shape[0]
  if not isinstance(k, (int, np.integer)) or not 1 <= k < n:
    raise ValueError(f"`k`={k!r} must be an integer in [1, n) with n={n} "
                     "examples.")
  if metric not in _METRICS:
    raise ValueError(f"`metric`={metric!r} must be one of {_METRICS}.")
  x = x.reshape(n, -1)
  if metric == "cosine":
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  xj = jnp.asarray(x)
  sq_norms = jnp.sum(xj * xj, axis=1)
  out = []
  for start in range(0, n, chunk):
    queries = xj[start:start + chunk]
    out.append(np.asarray(_block_top_k(queries, start, xj, sq_norms, k=int(k),
                                       metric=metric)))
  return np.concatenate(out).astype(np.int32)


def neighbor_purity(neighbors: np.ndarray, labels: np.ndarray) -> float:
  """Fraction of (example, neighbour) pairs that share a label."""
  neighbors, labels = np.asarray(neighbors), np.asarray(labels)
  return float(np.mean(labels[neighbors] == labels[:, None]))
