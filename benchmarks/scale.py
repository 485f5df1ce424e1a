r"""How time and memory grow with the number of examples, stage by stage.

    python -m benchmarks.scale [--sizes=10000,60000,250000,1281167]
        [--dims=128,768] [--stages=...] [--cache=/tmp/scale] [--out=DIR]
        [--quick]

For each feature size ``d`` a seeded mixture on the sphere
(:mod:`benchmarks.sphere_mixture`) of the largest ``n`` is written once to
``--cache``; each size reads its first ``n`` rows by memory map. Every
(stage, n, d) runs in a fresh process (``--quick``: in this one), which
reports the stage's wall time (compilation included) and its peak memory:
the largest anonymous resident memory (``RssAnon``: the file's pages, which
the kernel can drop, are not counted) sampled every 10 ms while the stage
runs, less what the process held before it. Stages:

* ``train_step``: one step of the CPP recipe on frozen features
  (``configs/cpp.py:npy``, batch 1024, two views of each example: the
  recipe's neighbour pairs need the ``neighbours`` stage's search first):
  seconds per step, batches gathered from the memory map (should not grow
  with n);
* ``feature_pass``: the trained heads over every example, in sharded
  blocks (the evaluation pass);
* ``assignment``: MLC/CPP's assignment of the whole set (dense ``Gamma`` up
  to ``membership_anchors``, above on 4096 anchors);
* ``kmeans``: :class:`clustering.MiniBatchKMeans` (100 clusters) and, in
  the same process, scikit-learn's ``MiniBatchKMeans`` (time and inertia);
* ``neighbours``: exact 10-NN search over all pairs (``O(n^2)``; skipped
  above ``--max_knn``);
* ``neighbours_ivf``: the same by the inverted file
  (:func:`clustering.algorithms.neighbors.ivf_neighbors`, the default
  search above 100,000 examples), with its recall of the exact 10
  neighbours of 1,000 sampled examples (searched outside the timing);
* ``sinkhorn``: the equal-size assignment of every example among 100
  prototypes, 3 iterations, in blocks (:mod:`clustering.algorithms.balanced`).

The table gives each stage's seconds and MB per size and the growth
exponent ``log(t2/t1) / log(n2/n1)`` between the two largest sizes run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags
import numpy as np

from benchmarks import sphere_mixture

STAGES = ("train_step", "feature_pass", "assignment", "kmeans", "neighbours",
          "neighbours_ivf", "sinkhorn")
NUM_CLUSTERS = 100  # of the mixture, of k-means, CPP and the prototypes


# ------------------------------------------------------------------ memory


def _rss_anon_mb() -> float:
  """This process's anonymous resident memory (MB), or the whole RSS where
  /proc is missing (macOS)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("RssAnon:"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  import resource  # pylint: disable=g-import-not-at-top
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakMemory:
  """Samples :func:`_rss_anon_mb` every 10 ms in a thread; ``peak_mb`` is
  the largest value above the one at entry."""

  def __enter__(self):
    self.base = self.peak = _rss_anon_mb()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()
    return self

  def _sample(self):
    while not self._stop.wait(0.01):
      self.peak = max(self.peak, _rss_anon_mb())

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, _rss_anon_mb())

  @property
  def peak_mb(self) -> float:
    return self.peak - self.base


# ------------------------------------------------------------------ stages


def _data(path: str, n: int):
  x = np.load(path, mmap_mode="r")[:n]
  y = np.load(sphere_mixture.labels_path(path), mmap_mode="r")[:n]
  return x, np.asarray(y)


def _cpp_run(path: str, n: int, *, quick: bool):
  """The CPP recipe's run over the first n rows (``configs/cpp.py:npy``)."""
  from configs import cpp  # pylint: disable=g-import-not-at-top
  from experiments import train  # pylint: disable=g-import-not-at-top
  x, y = _data(path, n)
  # The first n rows as a features file of their own (the whole file is
  # its own): the recipe reads a file by memory map.
  view = path if n == len(np.load(path, mmap_mode="r")) else (
      path[:-4] + f"_first{n}.npy")
  if not os.path.exists(sphere_mixture.labels_path(view)):
    out = np.lib.format.open_memmap(view, mode="w+", dtype=np.float32,
                                    shape=x.shape)
    for start in range(0, n, 65536):
      out[start:start + 65536] = x[start:start + 65536]
    out.flush()
    np.save(sphere_mixture.labels_path(view), y)
  config = cpp.get_config("npy:quick" if quick else "npy")
  config.data.path = view
  config.data.labels_path = sphere_mixture.labels_path(view)
  config.num_clusters = 10 if quick else NUM_CLUSTERS
  config.data.batch_size = 128 if quick else 1024
  config.objective.warmup_steps = 0
  # The recipe's neighbour pairs are mined by an all-pairs search before
  # step 0: the `neighbours` stage times that search (up to --max_knn).
  config.objective.neighbors = "none"
  method, mesh = train.validated(config)
  return train.setup(config, method, mesh)


def run_stage(stage: str, path: str, n: int, *, quick: bool,
              max_knn: int) -> dict:
  """Runs ``stage`` on the first ``n`` rows of ``path``; seconds, MB and
  what the stage reached."""
  import jax  # pylint: disable=g-import-not-at-top
  from clustering.algorithms import balanced  # pylint: disable=g-import-not-at-top
  from clustering.algorithms import metrics  # pylint: disable=g-import-not-at-top
  from clustering.algorithms import neighbors  # pylint: disable=g-import-not-at-top
  import clustering  # pylint: disable=g-import-not-at-top
  from clustering import methods  # pylint: disable=g-import-not-at-top
  row = dict(stage=stage, n=n)
  if stage == "neighbours" and n > max_knn:
    return dict(row, skipped=f"O(n^2): n > --max_knn={max_knn}")
  if stage in ("train_step", "feature_pass", "assignment"):
    run = _cpp_run(path, n, quick=quick)
    phase = methods.phase_at(run.method.phases, 0)
    run.trainer.start_phase(phase, run.train_ds)
    for step in range(2):  # compiled and warm
      run.trainer.train_step(phase.name, *run.batches(step))
    outputs = (run.trainer.outputs(run.train_ds)[0]
               if stage == "assignment" else None)
    with PeakMemory() as mem:
      t = time.perf_counter()
      if stage == "train_step":
        steps = 5 if quick else 20
        for step in range(2, 2 + steps):
          loss = run.trainer.train_step(phase.name, *run.batches(step))
        jax.block_until_ready(loss)
        seconds = (time.perf_counter() - t) / steps
      elif stage == "feature_pass":
        outputs, labels = run.trainer.outputs(run.train_ds)
        seconds = time.perf_counter() - t
      else:
        clusters, info = run.method.assign(outputs)
        seconds = time.perf_counter() - t
        row.update(acc=metrics.hungarian_accuracy(_data(path, n)[1],
                                                  clusters),
                   anchors=info["membership_anchors"])
    return dict(row, seconds=seconds, peak_mb=mem.peak_mb)
  x, y = _data(path, n)
  with PeakMemory() as mem:
    t = time.perf_counter()
    if stage == "kmeans":
      est = clustering.MiniBatchKMeans(10 if quick else NUM_CLUSTERS,
                                       random_state=0).fit(x)
      row.update(inertia=est.inertia_, steps=est.n_steps_)
    elif stage == "neighbours":
      found = neighbors.nearest_neighbors(x, 10)
      row.update(purity=neighbors.neighbor_purity(found, y))
    elif stage == "neighbours_ivf":
      found = neighbors.ivf_neighbors(x, 10)
      row.update(purity=neighbors.neighbor_purity(found, y))
    elif stage == "sinkhorn":
      rows = np.random.default_rng(0).choice(n, 10 if quick else NUM_CLUSTERS,
                                             replace=False)
      labels, _ = balanced.balanced_assignment(
          x, np.asarray(x[np.sort(rows)]), epsilon=0.05, num_iters=3)
      sizes = np.bincount(labels, minlength=len(rows))
      row.update(size_ratio=float(sizes.max() / max(sizes.min(), 1)))
    else:
      raise ValueError(f"Unknown stage {stage!r}; expected one of {STAGES}.")
    seconds = time.perf_counter() - t
  row.update(seconds=seconds, peak_mb=mem.peak_mb)
  if stage == "neighbours_ivf":
    row.update(recall=sampled_recall(x, found, num_queries=100 if quick
                                     else 1000))
  if stage == "kmeans":  # the alternative, same data, same process
    from sklearn import cluster  # pylint: disable=g-import-not-at-top
    with PeakMemory() as sk_mem:
      t = time.perf_counter()
      sk = cluster.MiniBatchKMeans(10 if quick else NUM_CLUSTERS, n_init=1,
                                   random_state=0).fit(x)
      row.update(sklearn_seconds=time.perf_counter() - t,
                 sklearn_peak_mb=sk_mem.peak_mb,
                 sklearn_inertia=float(sk.inertia_))
  return row


def sampled_recall(x, found: np.ndarray, *, num_queries: int,
                   seed: int = 0) -> float:
  """Recall of ``found [n, k]`` (cosine neighbours) against the exact
  neighbours of ``num_queries`` sampled rows, scanned over ``x`` in
  blocks."""
  from clustering.algorithms import neighbors  # pylint: disable=g-import-not-at-top
  n, k = found.shape
  rows = np.sort(np.random.default_rng(seed).choice(
      n, min(n, num_queries), replace=False))

  def unit(a):
    a = np.asarray(a, np.float32).reshape(len(a), -1)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

  queries = unit(x[rows])
  best = np.full((len(rows), k), -np.inf, np.float32)
  best_ids = np.zeros((len(rows), k), np.int64)
  for start in range(0, n, 65536):
    scores = queries @ unit(x[start:start + 65536]).T
    ids = np.arange(start, start + scores.shape[1])
    scores[rows[:, None] == ids[None, :]] = -np.inf
    merged = np.concatenate([best, scores], axis=1)
    merged_ids = np.concatenate(
        [best_ids, np.broadcast_to(ids, scores.shape)], axis=1)
    top = np.argpartition(-merged, k - 1, axis=1)[:, :k]
    best = np.take_along_axis(merged, top, axis=1)
    best_ids = np.take_along_axis(merged_ids, top, axis=1)
  return neighbors.neighbor_recall(found[rows], best_ids)


# ------------------------------------------------------------------ driver


def _child(stage, path, n, quick, max_knn) -> dict:
  """``run_stage`` in a fresh process: its memory is the stage's alone."""
  cmd = [sys.executable, "-m", "benchmarks.scale", "--child", f"--stage={stage}",
         f"--path={path}", f"--n={n}", f"--max_knn={max_knn}"]
  out = subprocess.run(cmd, capture_output=True, text=True, check=False)
  lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
  if out.returncode or not lines:
    return dict(stage=stage, n=n, skipped=f"failed: {out.stderr[-300:]}")
  return json.loads(lines[-1])


def exponent(rows: list[dict], stage: str, key: str = "seconds"):
  """``log(t2/t1) / log(n2/n1)`` between the two largest sizes run."""
  done = sorted((r["n"], r[key]) for r in rows
                if r["stage"] == stage and key in r and r[key] > 0)
  if len(done) < 2:
    return None
  (n1, t1), (n2, t2) = done[-2:]
  return math.log(t2 / t1) / math.log(n2 / n1)


def markdown(rows: list[dict], dim: int) -> str:
  sizes = sorted({r["n"] for r in rows})
  head = ("| stage | " + " | ".join(f"n={n:,}" for n in sizes)
          + " | exponent (time) | exponent (memory) |")
  lines = [f"### d = {dim}: seconds / peak MB", "", head,
           "|" + "---|" * (len(sizes) + 3)]

  def cell(r):
    if r is None:
      return ""
    if "skipped" in r:
      return "skipped"
    return f"{r['seconds']:.3g} s / {r['peak_mb']:.0f} MB"

  for stage in STAGES:
    by_n = {r["n"]: r for r in rows if r["stage"] == stage}
    if not by_n:  # not among --stages
      continue
    e, m = exponent(rows, stage), exponent(rows, stage, "peak_mb")
    lines.append(f"| {stage} | " + " | ".join(cell(by_n.get(n)) for n in sizes)
                 + f" | {'' if e is None else f'{e:.2f}'} | "
                 f"{'' if m is None else f'{m:.2f}'} |")
  km = [r for r in rows if r["stage"] == "kmeans" and "sklearn_seconds" in r]
  if km:
    lines += ["", "MiniBatchKMeans, ours against scikit-learn's (same data, "
              "same process):", "",
              "| n | ours s | sklearn s | ratio (sklearn / ours) | ours "
              "inertia | sklearn inertia |", "|---|---|---|---|---|---|"]
    for r in km:
      lines.append(f"| {r['n']:,} | {r['seconds']:.3g} | "
                   f"{r['sklearn_seconds']:.3g} | "
                   f"{r['sklearn_seconds'] / r['seconds']:.2f} | "
                   f"{r['inertia']:.6g} | {r['sklearn_inertia']:.6g} |")
  ivf = [r for r in rows if r["stage"] == "neighbours_ivf" and "recall" in r]
  if ivf:
    lines += ["", "Inverted-file 10-NN recall (1,000 sampled examples) and "
              "purity (mixture labels; exact where run): " + ", ".join(
                  f"n={r['n']:,}: {r['recall']:.3f} / {r['purity']:.3f}"
                  for r in ivf)]
  notes = [r for r in rows if r["stage"] == "assignment" and "acc" in r]
  if notes:
    lines += ["", "Assignment ACC (mixture labels): " + ", ".join(
        f"n={r['n']:,}: {r['acc']:.3f} ({r['anchors']} anchors)"
        for r in notes)]
  return "\n".join(lines)


def benchmark(*, sizes, dims, cache, quick=False, max_knn=60000,
              subprocesses=True, stages=STAGES, log=print) -> dict:
  """Runs ``stages`` for every size and dim; ``{dim: rows}``."""
  unknown = sorted(set(stages) - set(STAGES))
  if unknown:
    raise ValueError(f"Unknown stages {unknown}; expected some of {STAGES}.")
  os.makedirs(cache, exist_ok=True)
  results = {}
  for dim in dims:
    path = os.path.join(cache, f"sphere_{max(sizes)}x{dim}.npy")
    if not os.path.exists(sphere_mixture.labels_path(path)):
      log(f"writing {path} ...")
      sphere_mixture.write(path, num_examples=max(sizes), dim=dim,
                           num_clusters=10 if quick else NUM_CLUSTERS)
    rows = []
    for n in sizes:
      for stage in (s for s in STAGES if s in stages):
        row = (_child(stage, path, n, quick, max_knn) if subprocesses else
               run_stage(stage, path, n, quick=quick, max_knn=max_knn))
        log(json.dumps(dict(row, dim=dim)))
        rows.append(row)
    results[dim] = rows
  return results


def define_flags():
  flags.DEFINE_list("sizes", ["10000", "60000", "250000", "1281167"],
                    "numbers of examples")
  flags.DEFINE_list("dims", ["128", "768"], "feature sizes")
  flags.DEFINE_list("stages", list(STAGES), "stages to run")
  flags.DEFINE_string("cache", "/tmp/clustering_scale", "where the mixtures go")
  flags.DEFINE_string("out", "", "write results.json and results.md here")
  flags.DEFINE_bool("quick", False, "small sizes, in this process (tests)")
  flags.DEFINE_integer("max_knn", 60000, "largest n for the exact kNN stage")
  flags.DEFINE_bool("child", False, "internal: run one stage and print it")
  flags.DEFINE_string("stage", "", "internal")
  flags.DEFINE_string("path", "", "internal")
  flags.DEFINE_integer("n", 0, "internal")


def main(argv):
  del argv
  f = flags.FLAGS
  if f.child:
    print(json.dumps(run_stage(f.stage, f.path, f.n, quick=False,
                               max_knn=f.max_knn)))
    return
  sizes = [2000, 4000] if f.quick else [int(s) for s in f.sizes]
  dims = [16] if f.quick else [int(d) for d in f.dims]
  results = benchmark(sizes=sizes, dims=dims, cache=f.cache, quick=f.quick,
                      max_knn=f.max_knn, subprocesses=not f.quick,
                      stages=f.stages)
  text = "\n\n".join(markdown(rows, dim) for dim, rows in results.items())
  print(text)
  if f.out:
    os.makedirs(f.out, exist_ok=True)
    with open(os.path.join(f.out, "results.json"), "w") as fh:
      json.dump({str(k): v for k, v in results.items()}, fh, indent=1)
    with open(os.path.join(f.out, "results.md"), "w") as fh:
      fh.write(text + "\n")


if __name__ == "__main__":
  define_flags()
  app.run(main)
