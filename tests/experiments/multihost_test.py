"""Two processes on JAX's distributed runtime train like one process.

Two CPU processes on localhost (gloo collectives), each with 2 devices,
share one workdir and run `configs/mcr2.py:quick` (on synthetic data); one process with 4
devices runs the same global batches. Final loss and predictions must agree.
"""

import json
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.subprocess_env import child_env

pytestmark = pytest.mark.slow  # minutes: the fast tier is -m 'not slow'

ROOT = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT_S = 400


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _command(workdir, *extra):
  # A constant learning rate, so that the run may be extended (a workdir
  # refuses a new length under a schedule that depends on it).
  # 512 synthetic examples: MLC's evaluation (an n x n membership and its
  # spectral clustering, in each of three processes on two cores) is then
  # cheap; what is tested is that the processes agree, not the data.
  return [sys.executable, "-m", "experiments.main",
          "--config=configs/mcr2.py:quick", f"--workdir={workdir}",
          "--config.optimizer.schedule=constant",
          "--config.data.name=synthetic", "--config.data.num_examples=512",
          *extra]


def _run_all(commands_and_envs, logs):
  procs = []
  try:
    for (cmd, env), log in zip(commands_and_envs, logs):
      procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT))
    for p in procs:
      p.wait(timeout=TIMEOUT_S)
  finally:
    for p in procs:  # on a timeout or failure, leave nothing behind
      if p.poll() is None:
        p.kill()
        p.wait()
  return [p.returncode for p in procs]


def _run_logged(tmp_path, runs, tag):
  paths = [tmp_path / f"{tag}{i}.log" for i in range(len(runs))]
  logs = [open(path, "w") for path in paths]
  try:
    codes = _run_all(runs, logs)
  finally:
    for log in logs:
      log.close()
  assert codes == [0] * len(runs), [p.read_text()[-3000:] for p in paths]


def _two_processes(workdir, *extra):
  port = _free_port()
  return [(_command(workdir,
                    f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                    "--config.distributed.num_processes=2",
                    f"--config.distributed.process_id={i}", *extra), child_env(2))
          for i in (0, 1)]


def _assert_same_run(multi, single):
  res_multi = json.loads((multi / "results.json").read_text())
  res_single = json.loads((single / "results.json").read_text())
  assert res_multi["num_processes"] == 2 and res_multi["num_devices"] == 4
  assert res_single["num_processes"] == 1 and res_single["num_devices"] == 4
  np.testing.assert_allclose(res_multi["final_loss"], res_single["final_loss"],
                             rtol=1e-5)
  pm, ps = np.load(multi / "predictions.npz"), np.load(single / "predictions.npz")
  np.testing.assert_array_equal(pm["cluster"], ps["cluster"])
  np.testing.assert_allclose(pm["features"], ps["features"], atol=1e-5)

  # Process 0 alone writes the metrics (each step once), and every logged
  # loss follows the one-process run.
  def losses(workdir):
    records = [json.loads(line) for line in
               (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}, [
        r["step"] for r in records if "loss" in r]
  (lm, steps_m), (ls, steps_s) = losses(multi), losses(single)
  assert steps_m == steps_s and len(set(steps_m)) == len(steps_m)
  np.testing.assert_allclose([lm[k] for k in steps_m],
                             [ls[k] for k in steps_s], rtol=1e-5, atol=1e-6)
  return res_multi


def test_two_processes_equal_one_process_with_the_same_devices(tmp_path):
  # The two-process job trains 30 steps, then resumes from its shared
  # checkpoint to 40; the one-process job runs the 40 steps uninterrupted
  # (a constant learning rate makes the first 30 steps the same run).
  multi, single = tmp_path / "two_processes", tmp_path / "one_process"
  _run_logged(tmp_path, _two_processes(multi) + [
      (_command(single, "--config.train.num_steps=40"), child_env(4))], "first")
  first = json.loads((multi / "results.json").read_text())
  assert first["resumed_from"] == 0 and first["num_steps"] == 30
  _run_logged(tmp_path, _two_processes(multi, "--config.train.num_steps=40"),
              "resumed")
  res = _assert_same_run(multi, single)
  assert res["resumed_from"] == 30 and res["num_steps"] == 40


def test_incomplete_distributed_config_fails_before_any_device():
  from configs import mcr2  # pylint: disable=g-import-not-at-top
  from experiments import trainer  # pylint: disable=g-import-not-at-top
  config = mcr2.get_config("quick")
  assert not trainer.initialize_distributed(config)  # off by default
  config.distributed.coordinator_address = "127.0.0.1:1"
  config.distributed.num_processes = 2
  with pytest.raises(ValueError, match="config.distributed needs"):
    trainer.initialize_distributed(config)  # process_id left at -1
