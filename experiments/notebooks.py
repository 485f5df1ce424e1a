r"""Executes the notebooks and exports their key figures.

    python -m experiments.notebooks [--names=01,02,03] [--figures=docs/figures]

Runs each notebook under ``notebooks/`` top to bottom in a fresh Python kernel
(nbclient), in the repository root, and fails on the first cell that raises.
Code cells tagged ``figure:<name>`` (cell metadata) must display an image;
with ``--figures`` it is written to ``<figures>/<name>.png``: the screenshots
the README shows. The test suite runs the same function with
``CLUSTERAX_NOTEBOOK_QUICK=1`` (the training notebook then uses the
``:quick`` config).
"""

from __future__ import annotations

import base64
import glob
import os
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
FIGURE_TAG = "figure:"


def notebook_paths(names=None) -> list[str]:
  paths = sorted(glob.glob(os.path.join(NOTEBOOKS, "*.ipynb")))
  if names:
    paths = [p for p in paths
             if any(os.path.basename(p).startswith(n) for n in names)]
  return paths


def kernel_env(quick: bool, workdir: str | None = None) -> dict:
  """The kernel's environment: one CPU device unless the user set more
  (the test suite's 8 fake devices are for its own process); ``workdir``
  replaces the training notebook's ``runs/notebook_mcr2``."""
  env = dict(os.environ)
  flags_ = env.get("XLA_FLAGS", "")
  env["XLA_FLAGS"] = " ".join(
      f for f in flags_.split() if "xla_force_host_platform_device_count"
      not in f)
  if quick:
    env["CLUSTERAX_NOTEBOOK_QUICK"] = "1"
  else:
    env.pop("CLUSTERAX_NOTEBOOK_QUICK", None)
  env.pop("CLUSTERAX_NOTEBOOK_WORKDIR", None)
  if workdir:
    env["CLUSTERAX_NOTEBOOK_WORKDIR"] = workdir
  return env


def execute(path: str, *, quick: bool = False, workdir: str | None = None,
            timeout: int = 900):
  """Runs one notebook; returns the executed notebook (nbformat node)."""
  import nbformat  # pylint: disable=g-import-not-at-top
  return execute_node(nbformat.read(path, as_version=4), quick=quick,
                      workdir=workdir, timeout=timeout)


def execute_node(nb, *, quick: bool = False, workdir: str | None = None,
                 timeout: int = 900):
  """Runs a notebook node in a fresh kernel (environment `kernel_env`, in
  the repository root); returns it executed."""
  import nbclient  # pylint: disable=g-import-not-at-top
  client = nbclient.NotebookClient(
      nb, timeout=timeout, kernel_name="python3",
      resources={"metadata": {"path": ROOT}})
  old = dict(os.environ)
  os.environ.clear()
  os.environ.update(kernel_env(quick, workdir))  # the kernel inherits it
  try:
    client.execute()
  finally:
    os.environ.clear()
    os.environ.update(old)
  return nb


def tagged_figures(nb) -> dict[str, bytes]:
  """``{name: png bytes}`` for every cell tagged ``figure:<name>``; raises if
  a tagged cell displayed no image."""
  figures = {}
  for cell in nb.cells:
    for tag in cell.get("metadata", {}).get("tags", []):
      if not tag.startswith(FIGURE_TAG):
        continue
      name = tag[len(FIGURE_TAG):]
      images = [o["data"]["image/png"] for o in cell.get("outputs", [])
                if "image/png" in o.get("data", {})]
      if not images:
        raise ValueError(f"cell tagged {tag!r} displayed no image")
      figures[name] = base64.b64decode(images[-1])
  return figures


def run(names=None, *, figures_dir=None, quick=False, log=print) -> dict:
  """Executes the selected notebooks; returns ``{notebook: [figure names]}``."""
  out = {}
  for path in notebook_paths(names):
    start = time.time()
    nb = execute(path, quick=quick)
    figures = tagged_figures(nb)
    if figures_dir:
      os.makedirs(figures_dir, exist_ok=True)
      for name, png in figures.items():
        with open(os.path.join(figures_dir, f"{name}.png"), "wb") as f:
          f.write(png)
    out[os.path.basename(path)] = sorted(figures)
    log(f"{os.path.basename(path)}: ok in {time.time() - start:.0f} s, "
        f"figures {sorted(figures)}")
  return out


def main(argv):
  del argv
  run(_NAMES.value, figures_dir=_FIGURES.value, quick=_QUICK.value)


if __name__ == "__main__":
  _NAMES = flags.DEFINE_list("names", None, "Notebook name prefixes.")
  _FIGURES = flags.DEFINE_string("figures", None, "Where to write figures.")
  _QUICK = flags.DEFINE_bool("quick", False, "Quick variants (CI).")
  app.run(main)
