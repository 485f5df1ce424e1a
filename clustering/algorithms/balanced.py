"""Equipartition of a whole data set among prototypes, in row blocks.

SeLa and SwAV assign every example to one of ``k`` prototypes under the
constraint that the clusters are equally large: the entropic OT plan between
the ``n`` examples (mass ``1/n`` each) and the prototypes (mass ``1/k``) on
the scores ``x . p``. At ImageNet size the ``[n, k]`` plan (1.28M x 1000
floats, 5 GB) is never formed: only the ``k`` column potentials are kept,
and each iteration is one pass over the rows in blocks sharded over the
devices (:func:`clustering.algorithms.blocks.fold_row_blocks`). A row's
own potential is whatever makes its row sum to ``1/n``, so it is recomputed
inside the pass and never stored: memory ``O(block k + k)``, time ``O(n k
d)`` per iteration.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from clustering.algorithms import blocks

__all__ = ["balanced_assignment"]


def _log_plan_rows(x, prototypes, g, epsilon):
  """``log(n P_ij)`` of a block: each row normalised to mass 1."""
  logits = (x @ prototypes.T) / epsilon + g[None, :]
  return logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)


@jax.jit
def _column_mass(log_mass, x, row_ids, prototypes, g, epsilon):
  """Adds a block's ``log sum_i n P_ij`` (padding rows excluded)."""
  rows = _log_plan_rows(x, prototypes, g, epsilon)
  rows = jnp.where((row_ids >= 0)[:, None], rows, -jnp.inf)
  return jnp.logaddexp(log_mass, jax.nn.logsumexp(rows, axis=0))


@jax.jit
def _labels(x, row_ids, prototypes, g, epsilon):
  del row_ids
  return jnp.argmax(_log_plan_rows(x, prototypes, g, epsilon),
                    axis=1).astype(jnp.int32)


def balanced_assignment(x, prototypes, *, epsilon: float, num_iters: int = 3,
                        block_size: int = 65536, devices=None
                        ) -> tuple[np.ndarray, np.ndarray]:
  """Cluster ids of every row under the equal-size entropic OT plan.

  Sinkhorn's alternating updates in the log domain, starting from ``g = 0``;
  after ``t`` iterations the plan's rows have mass ``1/n`` exactly and its
  columns ``1/k`` up to Sinkhorn's error after ``t`` column updates (SwAV
  and SeLa run 3 on each batch).

  Args:
    x: ``[n, d]`` host array (e.g. a ``np.memmap``), read block by block.
    prototypes: ``[k, d]``.
    epsilon: entropic regularisation in the units of ``x . p``.
    num_iters: column updates.
    block_size: rows per block.
    devices: default: this process's devices.

  Returns:
    ``(labels [n] int32, g [k])``: each row's argmax of the plan and the
    column potentials (units of ``1/epsilon``).
  """
  prototypes = np.asarray(prototypes, np.float32)
  if np.ndim(x) != 2 or prototypes.ndim != 2 or (
      x.shape[1] != prototypes.shape[1]):
    raise ValueError(f"`x` [n, d] and `prototypes` [k, d] must share d; got "
                     f"{np.shape(x)} and {prototypes.shape}.")
  if not epsilon > 0:
    raise ValueError(f"`epsilon` must be > 0; got {epsilon}.")
  k = prototypes.shape[0]
  n = x.shape[0]
  eps = np.float32(epsilon)
  g = jnp.zeros((k,), jnp.float32)
  for _ in range(int(num_iters)):
    # sum_i P_ij over every block, with each row normalised by the current
    # g; the new g gives every column the mass 1/k.
    log_mass = blocks.fold_row_blocks(
        _column_mass, x, jnp.full((k,), -jnp.inf, jnp.float32), prototypes,
        g, eps, block_size=block_size, devices=devices)
    g = g + jnp.log(n / k) - log_mass
  labels = blocks.map_row_blocks(_labels, x, prototypes, g, eps,
                                 block_size=block_size, devices=devices)
  return labels, np.asarray(g)
