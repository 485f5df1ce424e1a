"""Crash safety, for real: subprocesses killed with SIGKILL and SIGTERM,
damaged checkpoints, NaN losses, and bad command lines."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from clustering import data as data_lib
from configs import soft_kmeans
from experiments import train
from tests.subprocess_env import child_env

pytestmark = pytest.mark.slow  # minutes: the fast tier is -m 'not slow'

ROOT = pathlib.Path(__file__).resolve().parents[2]
# A quick run with room to be killed in: 120 steps, a checkpoint every 10.
ARGS = ["--config=configs/soft_kmeans.py:autoencoder:quick",
        "--config.train.num_steps=120", "--config.train.checkpoint_every=10",
        "--config.train.log_every=5", "--config.train.eval_every=1000"]
TIMEOUT = 120


def _start(workdir, *extra):
  # A --config in ``extra`` replaces ARGS' (absl takes each flag once).
  configs = [e for e in extra if e.startswith("--config=")] or ARGS[:1]
  extra = [e for e in extra if e not in configs]
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.main", *configs, *ARGS[1:], *extra,
       f"--workdir={workdir}"], cwd=ROOT, env=child_env(),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(workdir, *extra):
  proc = _start(workdir, *extra)
  out, err = proc.communicate(timeout=TIMEOUT)
  return proc.returncode, out, err


def _records(workdir):
  path = pathlib.Path(workdir) / "metrics.jsonl"
  return path.read_text().count("\n") if path.exists() else 0


def _outputs(workdir):
  workdir = pathlib.Path(workdir)
  arrays = np.load(workdir / "predictions.npz")
  results = json.loads((workdir / "results.json").read_text())
  losses = [(r["step"], r["loss"]) for r in map(
      json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
            if "loss" in r]
  return arrays, results, losses


def _assert_same_run(a, b):
  arrays_a, results_a, losses_a = _outputs(a)
  arrays_b, results_b, losses_b = _outputs(b)
  for key in ("cluster", "features", "label"):
    np.testing.assert_array_equal(arrays_a[key], arrays_b[key])
  assert results_a["final_loss"] == results_b["final_loss"]
  assert results_a["acc"] == results_b["acc"]
  assert losses_a == losses_b  # every logged step exactly once, same values


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("reference")
  code, _, err = _run(workdir)
  assert code == 0, err
  return workdir


def _wait_for(condition, proc, timeout=TIMEOUT):
  deadline = time.time() + timeout
  while not condition():
    if proc.poll() is not None or time.time() > deadline:
      return False
    time.sleep(0.001)
  return True


def test_sigkill_at_random_moments_resumes_exactly(reference, tmp_path):
  rng = np.random.default_rng(0)
  workdir = tmp_path / "run"
  checkpoints = workdir / "checkpoints"
  kills, kills_in_save = 0, 0
  for attempt in range(6):
    proc = _start(workdir)
    if attempt % 2 == 0:
      # Kill while orbax is writing a checkpoint (its temporary folder
      # exists), whenever the next save comes.
      def saving():
        return checkpoints.exists() and any(
            "tmp" in p.name for p in checkpoints.iterdir())
      landed = _wait_for(saving, proc)
    else:
      # Kill after a random number of logged steps.
      target = _records(workdir) + int(rng.integers(1, 6))
      landed = _wait_for(lambda: _records(workdir) >= target, proc)
      time.sleep(float(rng.uniform(0, 0.05)))
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
      proc.wait(timeout=TIMEOUT)
      kills += 1
      kills_in_save += attempt % 2 == 0 and landed
    else:
      break
  code, _, err = _run(workdir)  # the same command, until it finishes
  assert code == 0, err
  assert kills >= 3, kills
  _assert_same_run(reference, workdir)
  print(f"{kills} SIGKILLs, {kills_in_save} of them while a checkpoint was "
        "being written")


def test_sigterm_saves_a_checkpoint_and_exits(reference, tmp_path):
  workdir = tmp_path / "run"
  proc = _start(workdir)
  assert _wait_for(lambda: _records(workdir) >= 4, proc)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=TIMEOUT)
  assert proc.returncode == 128 + signal.SIGTERM, err
  assert "SIGTERM received: stopped after step" in err
  assert "Traceback" not in err
  stopped = int(err.split("stopped after step ")[1].split()[0])
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()
                 if p.name.isdigit())
  assert steps[-1] == stopped and stopped < 120
  code, _, err = _run(workdir)
  assert code == 0, err
  assert json.loads((workdir / "results.json").read_text())[
      "resumed_from"] == stopped
  _assert_same_run(reference, workdir)


def _quick(num_steps, **train_overrides):
  config = soft_kmeans.get_config("autoencoder,quick")
  config.train.num_steps = num_steps
  config.train.checkpoint_every = 10
  config.train.update(train_overrides)
  return config


def test_damaged_newest_checkpoint_is_moved_aside_for_the_previous(tmp_path):
  ref = train.train_and_evaluate(_quick(30), str(tmp_path / "ref"),
                                 show_progress=False, devices=_one_device())
  workdir = tmp_path / "run"
  train.train_and_evaluate(_quick(20), str(workdir), show_progress=False,
                           devices=_one_device())
  ckpts = workdir / "checkpoints"
  assert sorted(p.name for p in ckpts.iterdir()) == ["10", "20"]
  # Damage step 20: its array data disappears (a bad disk, a stray rm).
  for f in (ckpts / "20" / "state").rglob("*"):
    if f.is_file() and "metadata" not in f.name:
      f.write_bytes(b"")
  damaged_files = sorted(p.name for p in (ckpts / "20").rglob("*"))
  results = train.train_and_evaluate(_quick(30), str(workdir),
                                     show_progress=False,
                                     devices=_one_device())
  assert results["resumed_from"] == 10
  assert results["final_loss"] == ref["final_loss"]
  # Moved aside whole, not deleted.
  (moved,) = (workdir / "checkpoints_damaged").iterdir()
  assert moved.name.startswith("20-")
  assert sorted(p.name for p in moved.rglob("*")) == damaged_files
  np.testing.assert_array_equal(
      np.load(workdir / "predictions.npz")["features"],
      np.load(tmp_path / "ref" / "predictions.npz")["features"])


def test_half_written_checkpoint_is_never_loaded(tmp_path):
  workdir = tmp_path / "run"
  train.train_and_evaluate(_quick(20), str(workdir), show_progress=False,
                           devices=_one_device())
  ckpts = workdir / "checkpoints"
  # What a process killed mid-save leaves: orbax's temporary folder of a
  # later step, with part of the files.
  partial = ckpts / "30.orbax-checkpoint-tmp-1234567"
  shutil.copytree(ckpts / "20", partial)
  for f in list(partial.rglob("*"))[::2]:
    if f.is_file():
      f.unlink()
  results = train.train_and_evaluate(_quick(40), str(workdir),
                                     show_progress=False,
                                     devices=_one_device())
  assert results["resumed_from"] == 20


def test_nonfinite_loss_stops_naming_the_step_and_keeps_good_checkpoints(
    tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_quick(20), workdir, show_progress=False,
                           devices=_one_device())
  # From step 22 on, the batches hold NaNs (a bad shard, a broken decoder):
  # the loss computed on device is NaN.
  clean_batches = data_lib.TrainingBatches.__call__

  def poisoned(self, step):
    x, partners = clean_batches(self, step)
    return (np.full_like(x, np.nan) if step >= 21 else x), partners

  monkeypatch.setattr(data_lib.TrainingBatches, "__call__", poisoned)
  with pytest.raises(train.NonFiniteLoss,
                     match=r"Step 22: the loss, gradient or updated parameters "
                     r"are not finite \(.*param_norm=.*"
                     r"last good checkpoint is step 20"):
    train.train_and_evaluate(_quick(40), workdir, show_progress=False,
                             devices=_one_device())
  ckpts = sorted(p.name for p in (pathlib.Path(workdir) / "checkpoints")
                 .iterdir())
  assert ckpts == ["10", "20"]
  # Restarted with good data, the run goes on from step 20.
  monkeypatch.undo()
  results = train.train_and_evaluate(_quick(30), workdir, show_progress=False,
                                     devices=_one_device())
  assert results["resumed_from"] == 20 and np.isfinite(results["final_loss"])


def test_nonfinite_steps_can_be_skipped(tmp_path):
  config = _quick(20, nonfinite="skip")
  # Every update overflows float32: each one is dropped, the state stays
  # the initial one and the run still ends with finite outputs.
  config.optimizer.learning_rate = 1e39
  results = train.train_and_evaluate(config, str(tmp_path), show_progress=False,
                                     devices=_one_device())
  assert results["skipped_steps"] == list(range(1, 21)), results
  features = np.load(tmp_path / "predictions.npz")["features"]
  assert np.all(np.isfinite(features))


def _one_device():
  import jax  # pylint: disable=g-import-not-at-top
  return jax.devices()[:1]


@pytest.mark.parametrize("extra, message", [
    (["--config.num_clusters=5000"], "error: num_clusters=5000 exceeds the "
     "1797 training examples."),
    (["--config.data.name=idx", "--config.data.path=/nonexistent"],
     "error: /nonexistent has no t10k-images-idx3-ubyte[.gz]."),
    (["--config.train.nonfinite=maybe"], "error: train.nonfinite must be one "
     "of ('stop', 'skip'); got 'maybe'."),
])
def test_bad_command_lines_fail_in_one_line_before_compiling(extra, message,
                                                             tmp_path):
  workdir = tmp_path / "run"
  code, _, err = _run(workdir, *extra)
  assert code == 2, err
  assert err.strip().splitlines()[-1] == message
  assert "Traceback" not in err and "Compiling" not in err
  assert not workdir.exists()  # nothing started


def test_unknown_and_mistyped_config_fields_are_flag_errors(tmp_path):
  code, _, err = _run(tmp_path / "a", "--config.data.batchsize=64")
  assert code == 2 and "Traceback" not in err, err
  assert err.strip().splitlines()[-1].startswith("error: bad --config")
  assert 'Did you mean "batch_size"' in err
  code, _, err = _run(tmp_path / "b", "--config.data.batch_size=lots")
  assert code != 0 and "lots" in err


def _snapshot(workdir):
  return {str(p.relative_to(workdir)): (p.read_bytes(), p.stat().st_mtime_ns)
          for p in sorted(pathlib.Path(workdir).rglob("*")) if p.is_file()}


@pytest.mark.parametrize("extra, named", [
    (["--config.num_clusters=12"], "num_clusters: 10 -> 12"),
    (["--config.model.z_dim=8"], "model.z_dim: 16 -> 8"),
    (["--config=configs/clam.py:quick"], "method: 'soft_kmeans' -> 'clam'"),
])
def test_a_finished_run_is_never_overwritten_by_another_config(
    reference, extra, named):
  before = _snapshot(reference)
  code, out, err = _run(reference, *extra)
  assert code == 2, err
  last = err.strip().splitlines()[-1]
  assert last.startswith(f"error: {reference} holds another run") and (
      named in last), err
  assert "Traceback" not in err and "Compiling" not in err
  assert _snapshot(reference) == before  # checkpoints, metrics, results


def test_a_second_writer_exits_at_once(reference):
  from experiments import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  holder = workdir_lib.Workdir(str(reference),
                               soft_kmeans.get_config("autoencoder,quick"))
  with holder:  # this test process is the first writer
    before = _snapshot(reference)
    code, _, err = _run(reference)
  assert code == 2, err
  assert f"is being written by process {os.getpid()}" in err.splitlines()[-1]
  assert _snapshot(reference) == before


def test_a_full_disk_during_a_save_resumes_from_the_last_good_one(
    tmp_path, monkeypatch):
  ref = train.train_and_evaluate(_quick(30), str(tmp_path / "ref"),
                                 show_progress=False, devices=_one_device())
  workdir = tmp_path / "run"
  from clustering import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  save = checkpoint_lib.Checkpointer.save

  def full_disk_at_20(self, step, state, meta, force=False):
    if step == 20:
      raise OSError(28, "No space left on device")
    return save(self, step, state, meta, force=force)

  monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", full_disk_at_20)
  with pytest.raises(OSError, match="No space left"):
    train.train_and_evaluate(_quick(30), str(workdir), show_progress=False,
                             devices=_one_device())
  monkeypatch.undo()
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["10"]
  results = train.train_and_evaluate(_quick(30), str(workdir),
                                     show_progress=False,
                                     devices=_one_device())
  assert results["resumed_from"] == 10
  assert results["final_loss"] == ref["final_loss"]
  np.testing.assert_array_equal(
      np.load(workdir / "predictions.npz")["features"],
      np.load(tmp_path / "ref" / "predictions.npz")["features"])
