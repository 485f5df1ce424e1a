"""Checkpoints of a training run, behind one small class (orbax).

A checkpoint holds the whole train state (parameters, BatchNorm statistics,
optimizer state, EMA, step) and a JSON record of how the input order is
derived (seed, global batch size, steps done), so a restarted run reads the
exact batches an uninterrupted one would.

Crash safety: orbax writes each checkpoint into a temporary folder and
renames it when complete, so a process killed mid-save leaves no checkpoint
that :meth:`Checkpointer.steps` lists. If the newest listed checkpoint still
cannot be read (a damaged disk, files removed by hand),
:meth:`Checkpointer.restore_latest` says so, deletes it and falls back to
the previous one.
"""

from __future__ import annotations

import os
from typing import Any

from absl import logging
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

  def steps(self) -> list[int]:
    """Steps of the complete checkpoints, oldest first."""
    return sorted(self._manager.all_steps())

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

  def restore_latest(self, abstract_state: Any
                     ) -> tuple[int, Any, dict] | None:
    """``(step, state, meta)`` of the newest readable checkpoint, or None.

    An unreadable checkpoint is logged, deleted (so a later save of the
    same step is not refused) and skipped for the one before it.
    """
    steps = self.steps()
    for i, step in enumerate(reversed(steps)):
      try:
        state, meta = self.restore(step, abstract_state)
      except Exception as e:  # pylint: disable=broad-except
        older = steps[-i - 2] if i + 1 < len(steps) else None
        logging.warning(
            "Checkpoint at step %d in %s is unreadable (%s: %s); %s.", step,
            self.directory, type(e).__name__, str(e).splitlines()[0][:300],
            f"falling back to step {older}" if older is not None
            else "no older checkpoint, starting from scratch")
        self._manager.delete(step)
        continue
      return step, state, meta
    return None

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) for restoring into ``tree``'s layout."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
