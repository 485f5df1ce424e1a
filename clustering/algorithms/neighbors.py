"""k-nearest-neighbour mining over a whole data set, in JAX.

Neighbour-supervised clustering (I-Con's kNN kernel over the training set,
SCAN-style neighbour mining) pairs each example with one of its ``k`` nearest
neighbours in the input space (raw pixels, or pre-trained features such as
CLIP/DINO embeddings loaded with ``data.name='npy'``).

Brute force in tiles: blocks of query rows sharded over the devices
(:func:`clustering.algorithms.blocks.map_row_blocks`) scan the data set in
``[query_block, database_block]`` similarity tiles, keeping a running top
``k``, so memory does not grow with ``n^2`` (nor with ``n`` per query
block). ``approximate=True`` takes each tile's top ``k`` with
``jax.lax.approx_max_k`` (exact on CPU and GPU, where it lowers to a sort;
TPU's native partial reduction at ``recall_target``); time is ``O(n^2 d)``
either way.

:func:`ivf_neighbors` is the search for large ``n`` without a TPU: an
inverted file. k-means on a sample cuts the data set into cells; each
cell's members are searched exactly among the members of the
``num_probes`` cells whose centroids are nearest its own, so time grows as
``n * num_probes * n / num_cells * d`` (``n^1.5`` with ``num_cells ~
sqrt(n)``) instead of ``n^2``. :func:`neighbor_recall` measures an
approximate search against the exact one.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from clustering.algorithms import blocks

__all__ = ["nearest_neighbors", "ivf_neighbors", "mutual_neighbors",
           "unit_rows",
           "neighbor_recall", "neighbor_purity"]

_METRICS = ("cosine", "sqeuclidean")


@functools.partial(jax.jit, static_argnames=("k", "metric", "approximate",
                                             "recall_target"))
def _block_top_k(queries, rows, database, sq_norms, *, k, metric,
                 approximate, recall_target):
  """Top ``k`` of ``queries [q, d]`` over ``database [t, b, d]`` tiles."""
  num_tiles, tile = database.shape[:2]

  def scan_tile(best, inputs):
    best_scores, best_ids = best
    x, x_sq, first = inputs
    scores = jnp.matmul(queries, x.T, precision=jax.lax.Precision.HIGHEST)
    if metric == "sqeuclidean":  # -||q - x||^2 up to the query's own norm
      scores = 2.0 * scores - x_sq[None, :]
    ids = first + jnp.arange(tile)
    # Never one's own neighbour; padding rows (+inf norm) never win.
    scores = jnp.where((ids[None, :] == rows[:, None]) | jnp.isinf(x_sq)[None],
                       -jnp.inf, scores)
    if approximate:
      top, where = jax.lax.approx_max_k(scores, k, recall_target=recall_target)
    else:
      top, where = jax.lax.top_k(scores, k)
    merged = jnp.concatenate([best_scores, top], axis=1)
    merged_ids = jnp.concatenate([best_ids, ids[where]], axis=1)
    top, where = jax.lax.top_k(merged, k)
    return (top, jnp.take_along_axis(merged_ids, where, axis=1)), None

  init = (jnp.full((queries.shape[0], k), -jnp.inf, queries.dtype),
          jnp.full((queries.shape[0], k), -1, jnp.int32))
  firsts = jnp.arange(num_tiles, dtype=jnp.int32) * tile
  (_, ids), _ = jax.lax.scan(scan_tile, init, (database, sq_norms, firsts))
  return ids


def nearest_neighbors(x: np.ndarray, k: int, *, metric: str = "cosine",
                      chunk: int = 2048, database_block: int = 16384,
                      approximate: bool = False, recall_target: float = 0.95,
                      devices=None) -> np.ndarray:
  """Indices of the ``k`` nearest other examples of each row of ``x``.

  Args:
    x: ``[n, ...]`` examples (flattened to ``[n, d]``).
    k: neighbours per example, ``1 <= k < n``.
    metric: ``'cosine'`` (largest cosine similarity) or ``'sqeuclidean'``.
    chunk: query rows per block, split over the devices.
    database_block: data-set rows per tile; a tile's scores are ``chunk *
      database_block`` floats (256 MB by default), whatever ``n`` is.
    approximate: each tile's top ``k`` by ``jax.lax.approx_max_k``.
    recall_target: its expected recall (TPU; exact elsewhere).
    devices: the devices query blocks are sharded over (default: this
      process's).

  Returns:
    ``[n, k]`` int32, nearest first; an example is never its own neighbour.
  """
  x = _prepared(x, k, metric)
  n = x.shape[0]
  if not 0.0 < recall_target <= 1.0:
    raise ValueError(f"`recall_target`={recall_target} must be in (0, 1].")
  tile = max(int(min(database_block, n)), int(k))
  pad = -n % tile
  database = np.concatenate([x, np.zeros((pad, x.shape[1]), np.float32)])
  sq_norms = np.concatenate([_row_sq_norms(x),
                             np.full((pad,), np.inf, np.float32)])
  search = functools.partial(_block_top_k, k=int(k), metric=metric,
                             approximate=bool(approximate),
                             recall_target=float(recall_target))
  return blocks.map_row_blocks(
      search, x, database.reshape(-1, tile, x.shape[1]),
      sq_norms.reshape(-1, tile), block_size=chunk,
      devices=devices).astype(np.int32)


def _prepared(x, k, metric) -> np.ndarray:
  """``x`` as ``[n, d]`` float32 (unit rows for cosine), arguments checked."""
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
    # Rows that are unit already (data.mine_neighbors writes them so) are
    # used as they are: at 1.28M x 768 a normalised copy is 3.9 GB.
    if not np.all(np.abs(np.sqrt(_row_sq_norms(x)) - 1.0) <= 1e-6):
      x = unit_rows(x)
  return x


def unit_rows(x: np.ndarray, *, chunk: int = 16384) -> np.ndarray:
  """``[n, d]`` float32: each row of ``x`` over its norm (a zero row stays
  zero), computed ``chunk`` rows at a time so that no temporary is as large
  as ``x``."""
  out = np.empty(x.shape, np.float32)
  for start in range(0, len(x), chunk):
    block = x[start:start + chunk]
    out[start:start + chunk] = block / np.maximum(
        np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
  return out


def _row_sq_norms(x: np.ndarray) -> np.ndarray:
  """``[n]`` squared row norms, without an ``[n, d]`` temporary."""
  return np.einsum("ij,ij->i", x, x)


def _nearest_centroids(x, centroids, count, chunk=16384) -> np.ndarray:
  """``[n, count]`` the nearest ``centroids`` (Euclidean) of each row."""
  c_sq = np.sum(centroids * centroids, axis=1)
  out = np.empty((len(x), count), np.int64)
  for start in range(0, len(x), chunk):
    scores = 2.0 * x[start:start + chunk] @ centroids.T - c_sq
    top = np.argpartition(-scores, count - 1, axis=1)[:, :count]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1,
                       kind="stable")
    out[start:start + chunk] = np.take_along_axis(top, order, axis=1)
  return out


def _coarse_centroids(sample: np.ndarray, num_cells: int, *,
                      iterations: int) -> np.ndarray:
  """Lloyd from ``num_cells`` rows of the (shuffled) ``sample``: the cells
  need to be compact, not optimal, and BLAS matrix products keep this
  seconds where k-means++ would take minutes at thousands of cells."""
  centroids = sample[:num_cells].copy()
  for _ in range(iterations):
    cell = _nearest_centroids(sample, centroids, 1)[:, 0]
    order = np.argsort(cell, kind="stable")
    filled, starts, counts = np.unique(cell[order], return_index=True,
                                       return_counts=True)
    # An empty cell keeps its centroid.
    centroids[filled] = (np.add.reduceat(sample[order], starts, axis=0)
                         / counts[:, None])
  return centroids


def ivf_neighbors(x: np.ndarray, k: int, *, metric: str = "cosine",
                  num_cells: int | None = None, num_probes: int = 16,
                  train_size: int | None = None, query_block: int = 2048,
                  seed: int = 0) -> np.ndarray:
  """Approximate ``k`` nearest other examples of each row, by an inverted
  file (on the host; see the module docstring).

  Args:
    x: ``[n, ...]`` examples (flattened to ``[n, d]``).
    k: neighbours per example, ``1 <= k < n``.
    metric: ``'cosine'`` or ``'sqeuclidean'``.
    num_cells: k-means cells; default ``round(2 sqrt(n))`` (at most ``n``).
    num_probes: cells each cell's members are searched in (its own and the
      nearest others by centroid); ``num_probes >= num_cells`` is exact.
    train_size: rows of the sample the cells' k-means (5 Lloyd steps from
      sampled rows) is fitted on (default ``64 * num_cells``).
    query_block: a cell's members scored at once (memory ``query_block *
      candidates`` floats).
    seed: the sample's and k-means' seed.

  Returns:
    ``[n, k]`` int32, nearest first; never the example itself.
  """
  x = _prepared(x, k, metric)
  n = x.shape[0]
  num_cells = int(round(2 * np.sqrt(n))) if num_cells is None else num_cells
  if not isinstance(num_cells, (int, np.integer)) or not 1 <= num_cells <= n:
    raise ValueError(f"`num_cells`={num_cells!r} must be an integer in "
                     f"[1, n] with n={n} examples.")
  if not isinstance(num_probes, (int, np.integer)) or num_probes < 1:
    raise ValueError(f"`num_probes`={num_probes!r} must be a positive "
                     "integer.")
  num_probes = min(num_probes, num_cells)
  rng = np.random.default_rng(seed)
  train_size = 64 * num_cells if train_size is None else train_size
  sample = rng.choice(n, min(n, max(train_size, num_cells)), replace=False)
  centroids = _coarse_centroids(x[sample], num_cells, iterations=5)
  cell = _nearest_centroids(x, centroids, 1)[:, 0]
  members = np.argsort(cell, kind="stable")
  bounds = np.searchsorted(cell[members], np.arange(num_cells + 1))
  probes = _nearest_centroids(centroids, centroids, num_probes)
  sq_norms = _row_sq_norms(x) if metric == "sqeuclidean" else None
  found = np.empty((n, k), np.int32)
  for c in range(num_cells):
    queries = members[bounds[c]:bounds[c + 1]]
    if not len(queries):
      continue
    cells = probes[c] if c in probes[c] else np.append(probes[c][:-1], c)
    candidates = np.concatenate([members[bounds[p]:bounds[p + 1]]
                                 for p in cells])
    if len(candidates) <= k:  # too few near cells: this cell searches all
      candidates = np.arange(n)
    database = x[candidates]
    for start in range(0, len(queries), query_block):
      q = queries[start:start + query_block]
      scores = x[q] @ database.T
      if metric == "sqeuclidean":
        scores = 2.0 * scores - sq_norms[candidates][None, :]
      scores[q[:, None] == candidates[None, :]] = -np.inf
      top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
      order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1,
                         kind="stable")
      found[q] = candidates[np.take_along_axis(top, order, axis=1)]
  return found


def mutual_neighbors(neighbors: np.ndarray) -> np.ndarray:
  """Keeps each example's mutual neighbours: ``j`` in row ``i`` stays when
  ``i`` is also in row ``j``.

  Mutual pairs share a class far more often than one-sided ones (cosine on
  pixels, 5 neighbours: MNIST-test 0.982 vs 0.907; they are 45% of the
  pairs), so pairs drawn from them are cleaner while most examples keep
  several partners. The table keeps its shape, so a partner drawn
  uniformly from a row is one of the example's mutual neighbours (tiled
  over the ``k`` slots in rank order); a row with none keeps its nearest
  neighbour in every slot. Fewer partners can teach less: CPP learned
  less from them than from all pairs (``configs/default.py``).

  Args:
    neighbors: ``[n, k]`` indices into the same ``n`` examples, nearest
      first (as :func:`nearest_neighbors` returns them).

  Returns:
    ``[n, k]`` of the same dtype.
  """
  neighbors = np.asarray(neighbors)
  if neighbors.ndim != 2 or not np.issubdtype(neighbors.dtype, np.integer):
    raise ValueError(f"`neighbors` must be an [n, k] integer array; got "
                     f"{neighbors.dtype} {neighbors.shape}.")
  n, k = neighbors.shape
  if neighbors.size and (neighbors.min() < 0 or neighbors.max() >= n):
    raise ValueError(f"`neighbors` indexes {n} examples; its entries must "
                     f"be in [0, {n}); got [{neighbors.min()}, "
                     f"{neighbors.max()}].")
  rows = np.arange(n)[:, None]
  mutual = (neighbors[neighbors] == rows[:, :, None]).any(axis=-1)  # [n, k]
  # Mutual entries first, each group in rank order; slot c takes the
  # (c mod m)-th of a row's m mutual entries (m = 0: the nearest).
  order = np.argsort(~mutual, axis=1, kind="stable")
  count = np.maximum(mutual.sum(axis=1, keepdims=True), 1)
  slot = np.arange(k)[None, :] % count
  return neighbors[rows, np.take_along_axis(order, slot, axis=1)]


def neighbor_recall(found: np.ndarray, exact: np.ndarray) -> float:
  """Fraction of the exact ``[n, k]`` neighbours that ``found`` holds."""
  found, exact = np.asarray(found), np.asarray(exact)
  if found.shape != exact.shape:
    raise ValueError(f"`found` {found.shape} and `exact` {exact.shape} must "
                     "have the same shape.")
  hits = (found[:, :, None] == exact[:, None, :]).any(axis=1)
  return float(np.mean(hits))


def neighbor_purity(neighbors: np.ndarray, labels: np.ndarray) -> float:
  """Fraction of (example, neighbour) pairs that share a label."""
  neighbors, labels = np.asarray(neighbors), np.asarray(labels)
  return float(np.mean(labels[neighbors] == labels[:, None]))
