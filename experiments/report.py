"""What a run leaves in its workdir: metrics, results, predictions, plots.

Plots are drawn on matplotlib ``Figure`` objects (no pyplot, no display):
``loss.png`` (loss terms over steps, phases marked), ``confusion.png`` (true
labels vs clusters, columns in Hungarian-matched order) and ``embedding.png``
(the learned features in 2-D, t-SNE up to 3,000 points and PCA above,
coloured by cluster).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np

from clustering.algorithms import metrics


def _clean(value):
  """JSON-safe: numpy scalars to Python, NaN/Inf to None."""
  if isinstance(value, dict):
    return {k: _clean(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_clean(v) for v in value]
  if isinstance(value, (np.floating, float)):
    value = float(value)
    return value if math.isfinite(value) else None
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, np.ndarray):
    return _clean(value.tolist())
  return value


class MetricsWriter:
  """The run's metrics, written twice through one interface:
  ``metrics.jsonl`` (one JSON object per line: what the plots, resumes and
  tests read) and TensorBoard event files under ``tensorboard/``
  (``tensorboard --logdir runs/``), through tensorboardX.
  """

  def __init__(self, workdir: str, *, enabled: bool = True,
               resume_step: int = 0):
    """``resume_step``: a run resumed at that step redoes the later ones,
    so their records (and a line torn by a killed process) are dropped, in
    the JSON lines now and in TensorBoard when it next reads the events."""
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = enabled
    self._board = None
    self._logdir = os.path.join(workdir, "tensorboard")
    self._purge_step = resume_step + 1
    if enabled and os.path.exists(self.path):
      kept = [json.dumps(r) + "\n" for r in self.read()
              if r.get("step", 0) <= resume_step]
      _atomic_write(self.path, "".join(kept))

  def _tensorboard(self):
    if self._board is None:
      # Imported on first use: a disabled writer needs no TensorBoard.
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._board = SummaryWriter(self._logdir, purge_step=self._purge_step)
    return self._board

  def write_scalars(self, step: int, scalars: dict, *, group: str = "train",
                    **fields):
    """One record: ``scalars`` at ``step`` (TensorBoard tags
    ``<group>/<name>``); ``fields`` (e.g. the phase) go to the JSON line
    only. Evaluation records are ``{"step", "eval": scalars}``."""
    if not self.enabled:
      return
    record = (dict(step=step, eval=scalars) if group == "eval"
              else dict(scalars, step=step, **fields))
    with open(self.path, "a") as f:
      f.write(json.dumps(_clean(record)) + "\n")
    board = self._tensorboard()
    for name, value in scalars.items():
      if isinstance(value, (int, float, np.number)) and math.isfinite(value):
        board.add_scalar(f"{group}/{name}", float(value), step)
    board.flush()

  def read(self) -> list[dict]:
    if not os.path.exists(self.path):
      return []
    records = []
    with open(self.path) as f:
      for line in f:
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError:
          continue  # empty, or cut short when a process was killed
    return records

  def close(self):
    if self._board is not None:
      self._board.close()
      self._board = None


def _atomic_write(path: str, text: str):
  """Writes a file so that a reader (or a crash) sees the old or new
  contents, never half of them."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, obj: dict):
  _atomic_write(path, json.dumps(_clean(obj), indent=2, sort_keys=True)
                + "\n")


def write_predictions(path: str, *, clusters, features, labels=None):
  """``predictions.npz``: ``index``, ``cluster``, ``features`` (the space
  the method assigns in) and, with labels, ``label``; written atomically."""
  arrays = dict(index=np.arange(len(clusters)), cluster=clusters,
                features=np.asarray(features, np.float32))
  if labels is not None:
    arrays["label"] = labels
  tmp = f"{path}.tmp{os.getpid()}.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


class Progress:
  """A one-line progress bar with loss, steps/s and ETA.

  Redraws in place on a terminal; elsewhere (CI, notebooks' captured logs)
  prints a line every ``every`` updates.
  """

  def __init__(self, total: int, start: int = 0, *, every: int = 50,
               stream=None, enabled: bool = True):
    self.total, self.start, self.every = total, start, every
    self.stream = stream or sys.stderr
    self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.enabled = enabled
    self.t0 = time.perf_counter()
    self.steps_per_sec = float("nan")

  def update(self, step: int, **values):
    done = step - self.start
    elapsed = time.perf_counter() - self.t0
    self.steps_per_sec = done / elapsed if elapsed > 0 else float("nan")
    if not self.enabled or not (self.tty or step % self.every == 0
                                or step == self.total):
      return
    eta = (self.total - step) / self.steps_per_sec if done else float("nan")
    frac = step / self.total
    bar = ("=" * int(24 * frac)).ljust(24)
    text = " ".join(f"{k} {v:.4g}" for k, v in values.items())
    eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(
        eta) else "--:--:--"
    line = (f"step {step}/{self.total} [{bar}] {100 * frac:5.1f}% {text} | "
            f"{self.steps_per_sec:.1f} steps/s | ETA {eta_s}")
    if self.tty:
      self.stream.write("\r" + line + "\033[K")
      if step == self.total:
        self.stream.write("\n")
    else:
      self.stream.write(line + "\n")
    self.stream.flush()


def pca_2d(features: np.ndarray) -> np.ndarray:
  x = features.reshape(features.shape[0], -1).astype(np.float64)
  x = x - x.mean(0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  return x @ vt[:2].T


def embed_2d(features: np.ndarray, *, max_points: int = 1000,
             seed: int = 0):
  """``(xy, rows, how)``: a 2-D t-SNE of at most ``max_points`` rows (a
  seeded random subset, ``rows``) of ``features``, PCA for 2-D features.

  Clustering features often lie on near-orthogonal subspaces (MCR^2), which a
  linear projection piles on top of each other; t-SNE separates them. A
  thousand points show the clusters as well as all of them and keep the
  picture to about a second of CPU (all 1,797 digits took 8 s; t-SNE's
  cost grows with the number of points).
  """
  x = features.reshape(features.shape[0], -1)
  rows = np.arange(len(x))
  if len(x) > max_points:
    rows = np.sort(np.random.default_rng(seed).choice(len(x), max_points,
                                                      replace=False))
  x = x[rows]
  if x.shape[1] <= 2:
    return pca_2d(x), rows, "PCA"
  from sklearn import manifold  # pylint: disable=g-import-not-at-top
  xy = manifold.TSNE(2, init="pca", random_state=seed, max_iter=500,
                     perplexity=min(30.0, (len(x) - 1) / 3)).fit_transform(
                         x.astype(np.float32))
  subset = "" if len(rows) == len(features) else (
      f" of {len(rows):,} of {len(features):,}")
  return xy, rows, f"t-SNE{subset}"


def plot_run(workdir: str, records: list[dict], phases, *, features,
             clusters, labels, title: str):
  """Writes loss.png, embedding.png and (with labels) confusion.png."""
  # Figure objects without pyplot: no global backend switch (a notebook
  # that calls this keeps its inline plots), no display needed.
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top

  train = [r for r in records if "loss" in r]
  if train:
    keys = [k for k in train[-1] if k not in (
        "step", "phase", "steps_per_sec", "examples_per_sec", "learning_rate",
        "seconds")]
    keys = sorted(keys, key=lambda k: (k != "loss", k))  # loss first
    cols = min(4, len(keys))
    rows = -(-len(keys) // cols)
    fig = mpl_figure.Figure(figsize=(3.2 * cols, 2.7 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(keys):]:
      ax.axis("off")
    for ax, key in zip(axes.flat, keys):
      pts = [(r["step"], r[key]) for r in train if r.get(key) is not None]
      if pts:
        ax.plot(*zip(*pts), lw=1.2)
      for name, first, *_ in phases[1:]:
        ax.axvline(first, color="gray", ls="--", lw=0.8)
        ax.text(first, ax.get_ylim()[1], f" {name}", va="top", fontsize=7,
                color="gray")
      ax.set_title(key, fontsize=9)
      ax.set_xlabel("step", fontsize=8)
      ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "loss.png"), dpi=110)

  xy, rows, how = embed_2d(features)
  fig = mpl_figure.Figure(figsize=(4.5, 4.2))
  ax = fig.subplots()
  ax.scatter(xy[:, 0], xy[:, 1], c=np.asarray(clusters)[rows], s=4, alpha=0.8, linewidths=0,
             cmap="tab10" if np.max(clusters) < 10 else "tab20")
  ax.set_title(f"{title}: features ({how}), coloured by cluster", fontsize=9)
  ax.set_xticks([])
  ax.set_yticks([])
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "embedding.png"), dpi=110)

  if labels is not None:
    counts, classes, groups = metrics.matched_confusion(labels, clusters)
    fig = mpl_figure.Figure(figsize=(4.8, 4.2))
    ax = fig.subplots()
    im = ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(groups)), [str(g) for g in groups], fontsize=7)
    ax.set_yticks(range(len(classes)), [str(c) for c in classes], fontsize=7)
    ax.set_xlabel("cluster (matched order)", fontsize=8)
    ax.set_ylabel("label", fontsize=8)
    if counts.size <= 400:
      for (i, j), v in np.ndenumerate(counts):
        if v:
          ax.text(j, i, str(v), ha="center", va="center", fontsize=5,
                  color="white" if v > counts.max() / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(f"{title}: confusion", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "confusion.png"), dpi=110)
