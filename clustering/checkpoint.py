"""Checkpoints of a training run, behind one small class (orbax).

A checkpoint holds the whole train state (parameters, BatchNorm statistics,
optimizer state, EMA, step) and a JSON record of how the input order is
derived (seed, global batch size, steps done), so a restarted run reads the
exact batches an uninterrupted one would.

Crash safety: orbax writes each checkpoint into a temporary folder and
renames it when complete, so a process killed mid-save leaves no checkpoint
that :meth:`Checkpointer.steps` lists.

Nothing here deletes a checkpoint because it failed to load. When the
newest checkpoints are damaged (files truncated, missing or garbled: a bad
disk, a stray ``rm``) and an older one reads, the damaged ones are moved to
``<directory>_damaged/`` (named in the log) and the older one is used. Any
other failure (out of memory, an I/O or permission error, every checkpoint
unreadable) raises :class:`CheckpointError` with the directory as it was.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

__all__ = ["Checkpointer", "CheckpointError"]

# Messages of errors that are not about the files' content (tensorstore
# reports these through ValueError too).
_TRANSIENT = ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED",
              "PERMISSION_DENIED", "ABORTED", "CANCELLED", "INTERNAL")


class CheckpointError(RuntimeError):
  """A checkpoint could not be restored; nothing was changed on disk."""


def _is_damage(error: BaseException) -> bool:
  """Whether ``error`` says the checkpoint's files are damaged (truncated,
  missing or garbled), as opposed to the machine failing to read them."""
  if isinstance(error, FileNotFoundError):
    return True
  if isinstance(error, (MemoryError, OSError)):
    return False
  if any(code in str(error) for code in _TRANSIENT):
    return False
  return isinstance(error, (ValueError, KeyError, EOFError))


def _describe(error: BaseException) -> str:
  lines = str(error).strip().splitlines() or [""]
  return f"{type(error).__name__}: {lines[0][:300]}"


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
    """``(step, state, meta)`` of the newest readable checkpoint, or None
    when there is none.

    Damaged checkpoints newer than a readable one are moved aside (see the
    module doc). Raises :class:`CheckpointError`, changing nothing, on any
    other error or when no checkpoint can be read.
    """
    steps = self.steps()
    damaged = []
    for step in reversed(steps):
      try:
        state, meta = self.restore(step, abstract_state)
      except Exception as e:  # pylint: disable=broad-except
        if not _is_damage(e):
          raise CheckpointError(
              f"Restoring the checkpoint at step {step} in {self.directory} "
              f"failed ({_describe(e)}); nothing was changed: fix the cause "
              "and run the same command again.") from e
        damaged.append((step, e))
        continue
      for bad_step, error in damaged:
        self._move_aside(bad_step, error, fallback=step)
      return step, state, meta
    if damaged:
      raise CheckpointError(
          f"No checkpoint in {self.directory} can be read ("
          + "; ".join(f"step {s}: {_describe(e)}" for s, e in damaged)
          + "); nothing was changed. Move the directory away to start "
          "from scratch.") from damaged[0][1]
    return None

  def _move_aside(self, step: int, error: BaseException, *, fallback: int):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    target = os.path.join(f"{self.directory}_damaged", f"{step}-{stamp}")
    if jax.process_index() == 0:  # one process moves; all see it after
      os.makedirs(os.path.dirname(target), exist_ok=True)
      os.rename(os.path.join(self.directory, str(step)), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"moved aside {step}")
    self._manager.reload()
    logging.warning(
        "The checkpoint at step %d is damaged (%s): moved to %s; resuming "
        "from step %d.", step, _describe(error), target, fallback)

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) for restoring into ``tree``'s layout."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
