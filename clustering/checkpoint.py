"""Checkpoints of a training run, behind one small class (orbax).

A checkpoint holds the whole train state (parameters, BatchNorm statistics,
optimizer state, EMA, step) and a JSON record of how the input order is
derived (seed, global batch size, steps done), so a restarted run reads the
exact batches an uninterrupted one would.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

__all__ = ["Checkpointer"]


class Checkpointer:
  """Saves every ``every`` steps (and on demand); restores the latest."""

  def __init__(self, directory: str, *, every: int, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self.every = every
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                             create=True),
        item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict, *, force: bool = False):
    """Saves when ``step`` is a multiple of ``every`` (or ``force``)."""
    if not force and step % self.every:
      return False
    if self._manager.latest_step() == step:
      return False
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    return True

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """State (laid out like ``abstract_state``, shardings included) and meta."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"]

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) for restoring into ``tree``'s layout."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
