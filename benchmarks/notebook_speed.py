r"""Training speed in a Jupyter kernel against the command line.

    python -m benchmarks.notebook_speed [--config=configs/mcr2.py]
        [--num_steps=400] [--quick] [--out=DIR]

Runs the same config twice, one after the other on this machine: once as
``python -m experiments.main`` and once in a fresh Jupyter kernel (the
kernel the notebooks run in, started as ``experiments.notebooks`` starts
it) calling ``experiments.train.train_and_evaluate``, as
``notebooks/03_train_mcr2.ipynb`` does. Prints, per training phase, the
median steps/s of each (the first logged interval of a phase, which
includes compilation, left out) and their ratio. A ratio well below 1
means something in the kernel (thread pools, environment, logging) slows
training: the check the notebook's own test cannot make, since it runs the
seconds-long ``:quick`` config.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

from experiments import notebooks

ROOT = notebooks.ROOT


def overrides(num_steps: int) -> dict:
  """Fields set in both runs: a constant schedule (so a short run trains at
  its phases' usual cost), logging every 20 steps, no mid-run evaluation."""
  return {"train.num_steps": num_steps, "optimizer.schedule": "constant",
          "train.log_every": 20, "train.eval_every": num_steps,
          "train.checkpoint_every": num_steps}


def command_line(config: str, workdir: str, fields: dict) -> list[str]:
  return [sys.executable, "-m", "experiments.main", f"--config={config}",
          f"--workdir={workdir}"] + [
              f"--config.{k}={v}" for k, v in fields.items()]


def cell_source(config: str, workdir: str, fields: dict) -> str:
  """The notebook cell: the config file loaded as ``--config`` loads it,
  the same fields set, then the notebook's call."""
  path, _, arg = config.partition(":")
  module = os.path.splitext(os.path.normpath(path))[0].replace(os.sep, ".")
  lines = [
      "import importlib",
      "from experiments import train",
      f"config = importlib.import_module({module!r}).get_config("
      f"{arg or None!r})",
  ]
  lines += [f"config.{k} = {v!r}" for k, v in fields.items()]
  lines.append(f"train.train_and_evaluate(config, {workdir!r})")
  return "\n".join(lines)


def phase_speeds(metrics_path: str) -> dict[str, float]:
  """``{phase: median steps/s}`` from a run's ``metrics.jsonl``, leaving out
  each phase's first logged interval (it includes compiling the step)."""
  by_phase: dict[str, list[float]] = {}
  with open(metrics_path) as f:
    for line in f:
      record = json.loads(line)
      if "steps_per_sec" in record:
        by_phase.setdefault(record.get("phase", "train"), []).append(
            record["steps_per_sec"])
  return {phase: statistics.median(v[1:] if len(v) > 1 else v)
          for phase, v in by_phase.items()}


def run_command_line(config, workdir, fields):
  subprocess.run(command_line(config, workdir, fields), cwd=ROOT, check=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                 env=notebooks.kernel_env(False))
  return phase_speeds(os.path.join(workdir, "metrics.jsonl"))


def run_kernel(config, workdir, fields):
  import nbformat  # pylint: disable=g-import-not-at-top
  nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
      cell_source(config, workdir, fields))])
  notebooks.execute_node(nb, timeout=3600)
  return phase_speeds(os.path.join(workdir, "metrics.jsonl"))


def table(cli: dict, kernel: dict) -> list[dict]:
  return [dict(phase=p, command_line=cli[p], notebook=kernel[p],
               ratio=kernel[p] / cli[p]) for p in cli if p in kernel]


def markdown(rows: list[dict]) -> str:
  lines = ["| phase | command line (steps/s) | notebook kernel (steps/s) | "
           "notebook / command line |", "|---|---:|---:|---:|"]
  lines += [f"| {r['phase']} | {r['command_line']:.2f} | {r['notebook']:.2f} "
            f"| {r['ratio']:.2f} |" for r in rows]
  return "\n".join(lines)


def benchmark(config: str, num_steps: int, out: str | None = None):
  fields = overrides(num_steps)
  with tempfile.TemporaryDirectory() as tmp:
    start = time.time()
    cli = run_command_line(config, os.path.join(tmp, "cli"), fields)
    kernel = run_kernel(config, os.path.join(tmp, "kernel"), fields)
  rows = table(cli, kernel)
  text = markdown(rows)
  print(f"{config}, {num_steps} steps each ({time.time() - start:.0f} s):")
  print(text)
  if out:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "notebook_speed.md"), "w") as f:
      f.write(text + "\n")
    with open(os.path.join(out, "notebook_speed.json"), "w") as f:
      json.dump(rows, f, indent=1)
  return rows


def main(argv):
  del argv
  config = _CONFIG.value + (":quick" if _QUICK.value else "")
  benchmark(config, 40 if _QUICK.value else _NUM_STEPS.value, _OUT.value)


if __name__ == "__main__":
  _CONFIG = flags.DEFINE_string("config", "configs/mcr2.py", "config file.")
  _NUM_STEPS = flags.DEFINE_integer(
      "num_steps", 400, "steps per run (MLC: 300 warm-up, then cluster).")
  _QUICK = flags.DEFINE_bool("quick", False, "the :quick config, 40 steps.")
  _OUT = flags.DEFINE_string("out", None, "folder for the table.")
  app.run(main)
