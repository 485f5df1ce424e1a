"""Row-wise work over any number of rows: fixed-size blocks, each sharded
over devices.

Passes over a whole data set (nearest neighbours, carrying an anchored
cut to every sample, nearest-centroid labels) hold one ``[block, ...]``
slice on the devices at a time, split row-wise over a one-axis mesh, and
everything the rows are compared with replicated. Memory is that of a
block, whatever the number of rows; blocks are padded to one shape, so each
function compiles once.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np

__all__ = ["map_row_blocks", "fold_row_blocks"]


def _mesh_and_blocks(x, constants, block_size, devices):
  """Yields ``(block, row_ids, valid)`` on the devices, and the replicated
  constants first."""
  devices = list(devices or jax.local_devices())
  mesh = jax.sharding.Mesh(np.array(devices), ("rows",))
  rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("rows"))
  replicated = jax.sharding.NamedSharding(mesh,
                                          jax.sharding.PartitionSpec())
  yield [jax.device_put(c, replicated) for c in constants]
  n = x.shape[0]
  block_size = -(-min(block_size, n) // len(devices)) * len(devices)
  for start in range(0, n, block_size):
    block = np.asarray(x[start:start + block_size])
    valid = block.shape[0]
    ids = np.full((block_size,), -1, np.int32)
    ids[:valid] = np.arange(start, start + valid)
    if valid < block_size:  # the last block: the same shape, no retrace
      block = np.concatenate([block, np.repeat(block[:1], block_size - valid,
                                               axis=0)])
    yield jax.device_put(block, rows), jax.device_put(ids, rows), valid


def fold_row_blocks(fn: Callable, x: np.ndarray, init, *constants,
                    block_size: int = 4096,
                    devices: Sequence[jax.Device] | None = None):
  """``carry = fn(carry, block, row_ids, *constants)`` over row blocks.

  For reductions over every row (sums, log-sum-exps): ``fn`` must ignore
  the padding rows of the last block (``row_ids == -1``). Arguments as
  :func:`map_row_blocks`; returns the final carry (on the devices).
  """
  blocks = _mesh_and_blocks(x, constants, block_size, devices)
  constants = next(blocks)
  carry = init
  for block, ids, _ in blocks:
    # One block in flight: a queue of programs whose cross-device reductions
    # interleave can starve a collective's rendezvous on a loaded host
    # (seen as an abort with 8 CPU devices on 2 cores).
    carry = jax.block_until_ready(fn(carry, block, ids, *constants))
  return carry


def map_row_blocks(fn: Callable, x: np.ndarray, *constants,
                   block_size: int = 4096,
                   devices: Sequence[jax.Device] | None = None) -> list:
  """``fn(block, row_ids, *constants)`` over ``[block_size]`` row blocks.

  Args:
    fn: a jitted function of a ``[b, ...]`` block, its ``[b]`` int32 row
      indices (``-1`` on padding rows) and the ``constants``; returns an
      array or a tuple of arrays with rows first.
    x: ``[n, ...]`` host array (a ``np.memmap`` is read block by block).
    *constants: arrays replicated on every device.
    block_size: rows per block (rounded up to a multiple of the devices).
    devices: default: this process's devices.

  Returns:
    The outputs of every block concatenated over rows, padding dropped: a
    host array, or a list of them when ``fn`` returns a tuple.
  """
  blocks = _mesh_and_blocks(x, constants, block_size, devices)
  constants = next(blocks)
  outputs = []
  for block, ids, valid in blocks:
    out = fn(block, ids, *constants)
    out = out if isinstance(out, tuple) else (out,)
    outputs.append([np.asarray(o)[:valid] for o in out])
  result = [np.concatenate(parts) for parts in zip(*outputs)]
  return result if len(result) > 1 else result[0]
