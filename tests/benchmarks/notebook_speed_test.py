"""The notebook-speed benchmark's pieces (its timings are not asserted)."""

import json

from benchmarks import notebook_speed
from configs import mcr2


def test_phase_speeds_are_medians_without_each_phases_first_interval(
    tmp_path):
  records = [
      {"step": 20, "phase": "warmup", "steps_per_sec": 1.0},   # compiling
      {"step": 40, "phase": "warmup", "steps_per_sec": 9.0},
      {"step": 60, "phase": "warmup", "steps_per_sec": 11.0},
      {"step": 60, "eval": {"acc": 0.5}},
      {"step": 80, "phase": "cluster", "steps_per_sec": 0.5},  # compiling
      {"step": 100, "phase": "cluster", "steps_per_sec": 6.0},
      {"step": 120, "phase": "cluster", "steps_per_sec": 8.0},
      {"step": 140, "phase": "cluster", "steps_per_sec": 7.0},
  ]
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  speeds = notebook_speed.phase_speeds(str(path))
  assert speeds == {"warmup": 10.0, "cluster": 7.0}
  rows = notebook_speed.table(speeds, {"warmup": 5.0, "cluster": 7.0})
  assert [(r["phase"], r["ratio"]) for r in rows] == [
      ("warmup", 0.5), ("cluster", 1.0)]
  assert "| warmup | 10.00 | 5.00 | 0.50 |" in notebook_speed.markdown(rows)


def test_the_kernel_runs_the_config_the_command_line_runs(tmp_path):
  fields = notebook_speed.overrides(123)
  source = notebook_speed.cell_source("configs/mcr2.py:quick", "W", fields)
  # Everything but the training call, executed here.
  namespace = {}
  exec(source.rsplit("\n", 1)[0], namespace)  # pylint: disable=exec-used
  expected = mcr2.get_config("quick")
  expected.train.num_steps = 123
  expected.optimizer.schedule = "constant"
  expected.train.log_every = 20
  expected.train.eval_every = 123
  expected.train.checkpoint_every = 123
  assert namespace["config"].to_dict() == expected.to_dict()
  assert source.endswith("train.train_and_evaluate(config, 'W')")
  cli = notebook_speed.command_line("configs/mcr2.py:quick", "W", fields)
  assert cli[-5:] == [
      "--config.train.num_steps=123", "--config.optimizer.schedule=constant",
      "--config.train.log_every=20", "--config.train.eval_every=123",
      "--config.train.checkpoint_every=123"]
