r"""Trains a clustering method: the project's main job.

    python -m experiments.main --config=configs/mcr2.py [--workdir=runs/mcr2]
    python -m experiments.main --config=configs/swav.py:quick \
        --config.data.batch_size=128

Every config runs on the embedded digits data by default (no network). The
workdir defaults to a fresh folder under ./runs/; pointing --workdir at an
existing run resumes it from its last checkpoint (with the same config).

Exit status: 0 done; 2 a bad config or dataset, or a workdir that holds
another run or is being written by another process (one line on stderr,
before anything is compiled or written); 1 a NaN/Inf loss
(``train.nonfinite='stop'``) or a checkpoint that cannot be restored;
143 (130 for Ctrl-C) stopped by SIGTERM with a checkpoint saved: run the same
command again to resume.
"""

from __future__ import annotations

import logging as logging_std
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from clustering import checkpoint as checkpoint_lib
from experiments import train
from experiments import trainer
from experiments import workdir as workdir_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Method config file, e.g. configs/mcr2.py[:quick].",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None,
    "Output directory (default: a new runs/<method>-<date>-<time>-<random>).")
flags.mark_flags_as_required(["config"])


class _QuietOrbax(logging_std.Filter):
  """Orbax logs every checkpoint step at INFO; keep its warnings only."""

  def filter(self, record):
    return record.levelno >= logging_std.WARNING or "orbax" not in (
        record.pathname or "")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  # Before anything touches a device: joins the other processes, if any.
  trainer.initialize_distributed(config)
  workdir = _WORKDIR.value
  if not workdir:
    if jax.process_count() > 1:  # each process would invent its own name
      print("error: a multi-process run needs --workdir (a folder every "
            "process can reach).", file=sys.stderr)
      sys.exit(2)
    workdir = workdir_lib.new_workdir(config.method or "run")
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietOrbax())
  logging.info("JAX %s on %s: %d process(es), %d device(s): %s",
               jax.__version__, jax.default_backend(), jax.process_count(),
               jax.device_count(), jax.devices())
  logging.info("workdir: %s\nconfig:\n%s", workdir, config)
  try:
    results = train.train_and_evaluate(config, workdir)
  except (train.SetupError, workdir_lib.WorkdirError) as e:
    # A config, data or workdir problem, found before anything was compiled
    # or written.
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except checkpoint_lib.CheckpointError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except train.NonFiniteLoss as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except train.Preempted as e:
    print(str(e), file=sys.stderr)
    sys.exit(128 + e.signum)  # 143 for SIGTERM, as the shell reports it
  summary = "  ".join(f"{k} {results[k]:.4f}" for k in (
      "acc", "nmi", "ari", "silhouette") if results.get(k) is not None)
  print(f"{config.method} on {results['eval_data']}: {summary}  "
        f"({results['seconds']:.0f} s, {results['num_devices']} device(s)); "
        f"outputs in {workdir}")


def _parse_flags(argv):
  """absl's flag parsing, except that a wrong ``--config.*`` field
  (ml_collections raises AttributeError/KeyError/TypeError for those, not a
  flag error) is one line on stderr and exit status 2, not a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"FATAL Flags parsing error: {e}\nPass --helpshort or --helpfull "
          "to see help on flags.", file=sys.stderr)
    sys.exit(1)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    message = str(e).replace("\\n", " ").replace("\\'", "'").strip("'\" ")
    print(f"error: bad --config: {' '.join(message.split())}",
          file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
