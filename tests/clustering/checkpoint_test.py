"""Restoring never deletes: damaged checkpoints are moved aside, other
failures stop with the directory as it was (DESIGN §10)."""

import errno
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from clustering import checkpoint as checkpoint_lib


def _state(step):
  return {"w": jnp.full((4, 3), float(step)), "step": jnp.asarray(step)}


def _saved(tmp_path, steps=(10, 20)):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"), every=10)
  for step in steps:
    ckpt.save(step, _state(step), {"step": step})
  ckpt.close()
  return checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"), every=10)


def _files(path):
  return sorted(str(p.relative_to(path)) for p in pathlib.Path(path).rglob("*"))


def _damage(step_dir):
  """Truncates every array file (metadata aside): a bad disk, a stray rm."""
  for f in (step_dir / "state").rglob("*"):
    if f.is_file() and "metadata" not in f.name:
      f.write_bytes(b"")


def test_the_newest_readable_checkpoint_is_restored(tmp_path):
  ckpt = _saved(tmp_path)
  step, state, meta = ckpt.restore_latest(
      checkpoint_lib.abstract_like(_state(0)))
  assert (step, meta) == (20, {"step": 20})
  np.testing.assert_array_equal(state["w"], np.full((4, 3), 20.0))
  ckpt.close()


def test_a_damaged_newest_checkpoint_is_moved_aside_not_deleted(tmp_path):
  ckpt = _saved(tmp_path)
  _damage(tmp_path / "checkpoints" / "20")
  damaged_files = _files(tmp_path / "checkpoints" / "20")
  step, state, _ = ckpt.restore_latest(checkpoint_lib.abstract_like(_state(0)))
  assert step == 10
  np.testing.assert_array_equal(state["w"], np.full((4, 3), 10.0))
  assert ckpt.steps() == [10]
  (moved,) = (tmp_path / "checkpoints_damaged").iterdir()
  assert moved.name.startswith("20-")
  assert _files(moved) == damaged_files  # every file kept
  # The step can be saved again (orbax refuses an existing step).
  assert ckpt.save(20, _state(21), {"step": 20})
  ckpt.close()


@pytest.mark.parametrize("error", [
    MemoryError("out of memory"),
    OSError(errno.EIO, "Input/output error"),
    PermissionError(errno.EACCES, "Permission denied"),
    ValueError("UNAVAILABLE: the storage service is down"),
    RuntimeError("something else"),
])
def test_any_other_restore_error_stops_and_changes_nothing(tmp_path,
                                                           monkeypatch, error):
  ckpt = _saved(tmp_path)
  before = _files(tmp_path)

  def failing_restore(step, abstract_state):
    raise error

  monkeypatch.setattr(ckpt, "restore", failing_restore)
  with pytest.raises(checkpoint_lib.CheckpointError,
                     match="step 20 .*nothing was changed"):
    ckpt.restore_latest(checkpoint_lib.abstract_like(_state(0)))
  assert _files(tmp_path) == before
  assert ckpt.steps() == [10, 20]
  ckpt.close()


def test_when_no_checkpoint_reads_nothing_is_moved(tmp_path):
  ckpt = _saved(tmp_path)
  for step in (10, 20):
    _damage(tmp_path / "checkpoints" / str(step))
  before = _files(tmp_path)
  with pytest.raises(checkpoint_lib.CheckpointError,
                     match="No checkpoint .* can be read"):
    ckpt.restore_latest(checkpoint_lib.abstract_like(_state(0)))
  assert _files(tmp_path) == before
  ckpt.close()


def test_no_checkpoint_is_none(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "c"), every=10)
  assert ckpt.restore_latest(checkpoint_lib.abstract_like(_state(0))) is None
  ckpt.close()
