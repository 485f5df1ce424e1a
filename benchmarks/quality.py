r"""Clustering quality leaderboard: every recipe and the classical baselines.

    python -m benchmarks.quality --datasets=digits,mnist_test --out=DIR
    python -m benchmarks.quality --methods=mcr2,sklearn_kmeans --seeds=0
    python -m benchmarks.quality --quick --datasets=digits --methods=clam
    python -m benchmarks.quality --merge=A/results.json,B/results.json --out=C
    python -m benchmarks.quality --idx=fashion=DIR --datasets=fashion

Each deep method is trained from scratch by its config (``configs/<name>.py``
with the dataset's preset, ``:mnist`` on MNIST-test) and evaluated by its own
assignment rule, on every example of the dataset. In the same run the
baselines a scikit-learn user would pick instead are fitted on the raw pixels
(in [0, 1]): ``sklearn_kmeans`` (n_init=10), ``sklearn_spectral`` (kNN-10
affinity graph), ``sklearn_gmm`` (full covariances on a 50-d PCA), plus our
``jax_kmeans`` (:func:`clustering.kmeans`, n_init=10).

Writes to ``--out``:

* ``results.json``: one row per (dataset, method, seed): ``acc``, ``nmi``,
  ``ari``, ``silhouette`` (in the method's own feature space),
  ``silhouette_input`` (on the raw pixels, the same space for every method),
  ``silhouette_kmeans`` (k-means with 10 restarts fitted in the method's own
  space, the baselines' being the pixels: what k-means reaches on the same
  data, for ClAM's claim),
  ``seconds`` (training + assignment wall time), ``seed``, and the
  label-free model-selection measures of each run (``final_loss``,
  ``cluster_entropy``, ``coding_length_per_example`` for MLC/CPP,
  ``selflabel_agreement`` when the recipe self-labels), and for recipes
  with several heads the chosen one (``head``, lowest running loss) and
  every head's running loss (``head_losses``);
* ``<dataset>/<method>.npz``: ``index``, ``cluster``, ``label`` (first seed);
* ``results.md``: mean ± std over seeds (0, 1 and 2 by default), how well
  each label-free measure ranks a recipe's seeds against their ACC
  (:func:`selection_report`), and ``<dataset>.png`` bar charts of ACC/NMI
  per method;
* ``<dataset>/runs/<method>/seed<s>/``: each deep run's workdir (metrics,
  plots, checkpoints, ``config.json``). A finished run of the same config
  is not trained again and an interrupted one resumes, so an interrupted
  benchmark continues where it stopped; a folder that holds a run of
  another config (``--quick`` against a full run) is an error.

MNIST-test is read from ``--mnist_dir`` (default ``../shared/data/mnist_test``
next to the repository); it is skipped with a message when absent. Other
28x28 grayscale sets in MNIST's IDX format (Fashion-MNIST, KMNIST; see
``benchmarks/fashion_mnist.py``) are named with ``--idx=NAME=DIR`` and run
like MNIST-test: every recipe's ``:mnist`` (28x28) preset, changed only in
its data path, on the ``t10k`` files of ``DIR``.
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from clustering import data as data_lib
from clustering.data import idx as idx_lib
from clustering.algorithms import metrics as metrics_lib

DEEP_METHODS = ("mcr2", "cpp", "swav", "soft_kmeans", "clam", "icon")
BASELINES = ("jax_kmeans", "sklearn_kmeans", "sklearn_spectral",
             "sklearn_gmm")
ALL_METHODS = DEEP_METHODS + BASELINES
DATASETS = ("digits", "mnist_test")

_DATASETS = flags.DEFINE_list("datasets", list(DATASETS),
                              f"Datasets, from {DATASETS}.")
_METHODS = flags.DEFINE_list("methods", list(ALL_METHODS),
                             f"Methods, from {ALL_METHODS}.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"],
                           "Seeds; > 1 reports mean ± std.")
_OUT = flags.DEFINE_string("out", "runs/quality", "Output directory.")
_QUICK = flags.DEFINE_bool(
    "quick", False, "Each deep config's :quick variant (seconds; for tests).")
_MNIST = flags.DEFINE_string(
    "mnist_dir",
    str(pathlib.Path(__file__).resolve().parents[2] / "shared/data/mnist_test"),
    "Folder with the MNIST t10k IDX files.")
_IDX = flags.DEFINE_list(
    "idx", [], "More 28x28 IDX datasets as NAME=DIR (t10k files in DIR), "
    "run with the :mnist preset; name them in --datasets.")
_MERGE = flags.DEFINE_list(
    "merge", [], "results.json files of earlier runs: report them together "
    "in --out instead of running anything.")


# ------------------------------------------------------------------ data


def parse_idx(specs) -> dict[str, str]:
  """``['fashion=/data/fm']`` (``--idx``) -> ``{'fashion': '/data/fm'}``."""
  dirs = {}
  for spec in specs:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
      raise ValueError(f"--idx: {spec!r} is not NAME=DIR.")
    if name in DATASETS or name in dirs:
      raise ValueError(f"--idx: the name {name!r} is taken; pick another.")
    dirs[name] = path
  return dirs


def idx_dirs(mnist_dir: str, extra=None) -> dict[str, str]:
  """Each 28x28 IDX dataset's folder: MNIST-test's and ``--idx``'s."""
  return {"mnist_test": mnist_dir, **(extra or {})}


def dataset_config(dataset: str, mnist_dir: str, extra_idx=None):
  """The ``config.data`` fields that select ``dataset``."""
  if dataset == "digits":
    return dict(name="digits", path="")
  dirs = idx_dirs(mnist_dir, extra_idx)
  if dataset in dirs:  # the :mnist preset's source, from IDX files
    return dict(name="mnist", path=dirs[dataset], split="test")
  raise ValueError(f"Unknown dataset {dataset!r}; expected one of "
                   f"{DATASETS + tuple(extra_idx or ())}.")


def available(dataset: str, mnist_dir: str, extra_idx=None) -> bool:
  dirs = idx_dirs(mnist_dir, extra_idx)
  if dataset in dirs:
    return idx_lib.split_files(dirs[dataset], "t10k") == 2
  return True


def method_config(method: str, dataset: str, *, mnist_dir: str, seed: int,
                  quick: bool, extra_idx=None):
  """``configs/<method>.py`` with the dataset's preset (and ``quick``).

  Every IDX dataset gets the ``:mnist`` preset: one set of hyperparameters
  per recipe for all 28x28 grayscale data.
  """
  preset = "mnist" if dataset in idx_dirs(mnist_dir, extra_idx) else ""
  args = [a for a in (preset, "quick" if quick else "") if a]
  config = importlib.import_module(f"configs.{method}").get_config(
      ",".join(args))
  config.data.update(dataset_config(dataset, mnist_dir, extra_idx))
  config.seed = seed
  return config


# ------------------------------------------------------------- baselines


def run_baseline(method: str, x: np.ndarray, k: int, seed: int) -> np.ndarray:
  """Cluster ids ``[n]`` from a baseline fitted on flattened inputs ``x``."""
  if method == "jax_kmeans":
    from clustering.algorithms.kmeans import kmeans  # pylint: disable=g-import-not-at-top
    return np.asarray(kmeans(x, k, n_init=10, seed=seed).labels)
  from sklearn import cluster, decomposition, mixture  # pylint: disable=g-import-not-at-top
  if method == "sklearn_kmeans":
    return cluster.KMeans(k, n_init=10, random_state=seed).fit_predict(x)
  if method == "sklearn_spectral":
    return cluster.SpectralClustering(
        k, affinity="nearest_neighbors", n_neighbors=10, random_state=seed,
        n_jobs=-1).fit_predict(x)
  if method == "sklearn_gmm":
    z = decomposition.PCA(min(50, x.shape[1]), random_state=seed
                          ).fit_transform(x)
    return mixture.GaussianMixture(k, covariance_type="full",
                                   random_state=seed).fit(z).predict(z)
  raise ValueError(f"Unknown baseline {method!r}.")


# ------------------------------------------------------------------ runs


def silhouette_on(x: np.ndarray, clusters: np.ndarray, seed: int):
  if not 1 < len(np.unique(clusters)) < len(clusters):
    return float("nan")
  from sklearn.metrics import silhouette_score  # pylint: disable=g-import-not-at-top
  return float(silhouette_score(x, clusters, random_state=seed))


def kmeans_silhouette(features: np.ndarray, k: int, seed: int) -> float:
  """Silhouette of k-means (n_init=10) fitted on `features` themselves."""
  from clustering.algorithms.kmeans import kmeans  # pylint: disable=g-import-not-at-top
  labels = np.asarray(kmeans(features, k, n_init=10, seed=seed).labels)
  return silhouette_on(features, labels, seed)


_PIXEL_SILHOUETTES: dict[tuple[str, int], float] = {}


def _pixel_kmeans_silhouette(dataset, x, k, seed):
  """`kmeans_silhouette` of the pixels, once per (dataset, seed)."""
  if (dataset, seed) not in _PIXEL_SILHOUETTES:
    _PIXEL_SILHOUETTES[dataset, seed] = kmeans_silhouette(x, k, seed)
  return _PIXEL_SILHOUETTES[dataset, seed]


def run_one(method: str, dataset: str, seed: int, *, out: str, x: np.ndarray,
            labels: np.ndarray, quick: bool, mnist_dir: str,
            extra_idx=None) -> dict:
  """Trains/fits one (method, dataset, seed); returns its results row."""
  k = int(len(np.unique(labels)))
  if method in DEEP_METHODS:
    from experiments import train  # pylint: disable=g-import-not-at-top
    from experiments import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
    workdir = os.path.join(out, dataset, "runs", method, f"seed{seed}")
    done = os.path.join(workdir, "results.json")
    config = method_config(method, dataset, mnist_dir=mnist_dir, seed=seed,
                           quick=quick, extra_idx=extra_idx)
    if os.path.exists(done) and workdir_lib.holds_run_of(workdir, config):
      logging.info("%s/%s seed %d: reusing %s", dataset, method, seed, done)
      with open(done) as f:
        res = json.load(f)
    else:  # resumes the run, or refuses a workdir of another config
      res = train.train_and_evaluate(config, workdir, show_progress=False)
    pred = np.load(os.path.join(workdir, "predictions.npz"))
    clusters = pred["cluster"]
    features = pred["features"].reshape(len(clusters), -1)
    scores = {key: res[key] for key in ("acc", "nmi", "ari", "silhouette")}
    seconds = res["seconds"]
    label_free = {key: res.get(key) for key in (
        "final_loss", "cluster_entropy", "coding_length_per_example",
        "selflabel_agreement", "head", "head_losses")}
  else:
    t0 = time.perf_counter()
    clusters = np.asarray(run_baseline(method, x, k, seed)).astype(np.int32)
    seconds = time.perf_counter() - t0
    scores = metrics_lib.clustering_metrics(labels, clusters, x)
    label_free = dict(final_loss=None, coding_length_per_example=None,
                      selflabel_agreement=None, head=None, head_losses=None,
                      cluster_entropy=metrics_lib.cluster_size_entropy(
                          clusters, k))
  row = dict(dataset=dataset, method=method, seed=seed, seconds=seconds,
             **{key: float(v) for key, v in scores.items()}, **label_free,
             silhouette_input=silhouette_on(x, clusters, seed),
             silhouette_kmeans=(
                 kmeans_silhouette(features, k, seed) if method in DEEP_METHODS
                 else _pixel_kmeans_silhouette(dataset, x, k, seed)),
             num_clusters_used=int(len(np.unique(clusters))))
  return row, clusters


def summarize(rows: list[dict]) -> list[dict]:
  """Mean and std over seeds per (dataset, method), in run order."""
  groups: dict[tuple[str, str], list[dict]] = {}
  for r in rows:
    groups.setdefault((r["dataset"], r["method"]), []).append(r)
  out = []
  for (dataset, method), rs in groups.items():
    s = dict(dataset=dataset, method=method, seeds=[r["seed"] for r in rs])
    for key in ("acc", "nmi", "ari", "silhouette", "silhouette_input",
                "silhouette_kmeans", "seconds"):
      vals = np.array([r[key] for r in rs], np.float64)
      s[key], s[key + "_std"] = float(np.mean(vals)), float(np.std(vals))
    out.append(s)
  return out


# Label-free measures and the direction in which a run is better.
SELECTION = (("final_loss", -1), ("silhouette", 1), ("cluster_entropy", 1),
             ("coding_length_per_example", -1))


def selection_report(rows: list[dict]) -> list[dict]:
  """How well each label-free measure ranks a recipe's seeds by ACC.

  For each (dataset, measure): over the deep recipes with >= 2 seeds (and
  the measure), the mean Spearman correlation between the measure (signed
  so that larger is better) and ACC across the recipe's seeds, and in how
  many recipes the seed it ranks first is the seed with the best ACC.
  """
  from scipy import stats  # pylint: disable=g-import-not-at-top
  groups: dict[tuple[str, str], list[dict]] = {}
  for r in rows:
    if r["method"] in DEEP_METHODS:
      groups.setdefault((r["dataset"], r["method"]), []).append(r)
  out = []
  for dataset in dict.fromkeys(d for d, _ in groups):
    for measure, sign in SELECTION:
      rhos, picks = [], []
      for (d, _), rs in groups.items():
        vals = [r.get(measure) for r in rs]
        if d != dataset or len(rs) < 2 or any(v is None for v in vals):
          continue
        score, acc = sign * np.asarray(vals, float), [r["acc"] for r in rs]
        if np.ptp(score) > 0 and np.ptp(acc) > 0:
          rhos.append(stats.spearmanr(score, acc).statistic)
        # A constant measure picks nothing.
        picks.append(np.ptp(score) > 0
                     and acc[int(np.argmax(score))] == max(acc))
      if picks:
        out.append(dict(dataset=dataset, measure=measure,
                        spearman=float(np.mean(rhos)) if rhos else None,
                        best_seed_found=int(sum(picks)),
                        recipes=len(picks)))
  return out


def selection_markdown(report: list[dict]) -> str:
  lines = []
  for dataset in dict.fromkeys(r["dataset"] for r in report):
    lines += [f"Label-free ranking of the seeds' runs on {dataset}:", "",
              "| measure (better when) | mean Spearman with ACC | "
              "picks the best-ACC seed |", "|---|---|---|"]
    for r in (r for r in report if r["dataset"] == dataset):
      better = "lower" if dict(SELECTION)[r["measure"]] < 0 else "higher"
      rho = "n/a" if r["spearman"] is None else f"{r['spearman']:+.2f}"
      lines.append(f"| {r['measure']} ({better}) | {rho} | "
                   f"{r['best_seed_found']} of {r['recipes']} recipes |")
    lines.append("")
  return "\n".join(lines)


def _fmt(s, key, digits=3):
  if len(s["seeds"]) > 1:
    return f"{s[key]:.{digits}f} ± {s[key + '_std']:.{digits}f}"
  return f"{s[key]:.{digits}f}"


def _name(s, seeds):
  """The method, with its own seeds where they are not the table's."""
  if s["seeds"] == seeds:
    return s["method"]
  plural = "s" if len(s["seeds"]) > 1 else ""
  return f"{s['method']} (seed{plural} {', '.join(map(str, s['seeds']))})"


def markdown(summary: list[dict]) -> str:
  lines = []
  for dataset in dict.fromkeys(s["dataset"] for s in summary):
    rows = [s for s in summary if s["dataset"] == dataset]
    seeds = max((s["seeds"] for s in rows), key=len)
    lines += [f"### {dataset} (seeds {', '.join(map(str, seeds))})", "",
              "| method | ACC | NMI | ARI | silhouette (own space) | "
              "k-means silhouette (own space) | silhouette (pixels) | "
              "seconds |",
              "|---|---|---|---|---|---|---|---|"]
    for s in rows:
      lines.append(
          f"| {_name(s, seeds)} | {_fmt(s, 'acc')} | {_fmt(s, 'nmi')} | "
          f"{_fmt(s, 'ari')} | {_fmt(s, 'silhouette')} | "
          f"{_fmt(s, 'silhouette_kmeans')} | "
          f"{_fmt(s, 'silhouette_input')} | {_fmt(s, 'seconds', 0)} |")
    lines.append("")
  return "\n".join(lines)


def plot(summary: list[dict], out: str) -> list[str]:
  """One bar chart of ACC and NMI per method for each dataset."""
  # Figure objects without pyplot: no global backend switch.
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  paths = []
  for dataset in dict.fromkeys(s["dataset"] for s in summary):
    rows = [s for s in summary if s["dataset"] == dataset]
    names = [s["method"] for s in rows]
    pos = np.arange(len(rows))
    fig = mpl_figure.Figure(figsize=(max(6, 0.8 * len(rows) + 2), 3.8))
    ax = fig.subplots()
    for offset, key, colour in ((-0.2, "acc", "tab:blue"),
                                (0.2, "nmi", "tab:orange")):
      ax.bar(pos + offset, [s[key] for s in rows], 0.4,
             yerr=[s[key + "_std"] for s in rows], label=key.upper(),
             color=colour, capsize=2)
    ax.set_xticks(pos, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title(f"Clustering quality on {dataset}", pad=22)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2,
              frameon=False)
    fig.tight_layout()
    path = os.path.join(out, f"{dataset}.png")
    fig.savefig(path, dpi=120)
    paths.append(path)
  return paths


def benchmark(*, datasets, methods, seeds, out, quick=False,
              mnist_dir=_MNIST.default, extra_idx=None) -> list[dict]:
  """Runs the leaderboard; writes and returns the per-run rows.

  ``extra_idx`` maps more dataset names to IDX folders (``--idx``).
  """
  known = DATASETS + tuple(extra_idx or ())
  for m in methods:
    if m not in ALL_METHODS:
      raise ValueError(f"Unknown method {m!r} in --methods; expected some "
                       f"of {ALL_METHODS}.")
  for d in datasets:
    if d not in known:
      raise ValueError(f"Unknown dataset {d!r} in --datasets; expected some "
                       f"of {known} (more with --idx=NAME=DIR).")
  os.makedirs(out, exist_ok=True)
  rows = []
  dirs = idx_dirs(mnist_dir, extra_idx)
  jobs = [(d, m, s) for d in datasets if available(d, mnist_dir, extra_idx)
          for m in methods for s in seeds]
  for d in datasets:
    if not available(d, mnist_dir, extra_idx):
      flag = "--mnist_dir" if d == "mnist_test" else f"--idx={d}=DIR"
      print(f"Skipping {d}: no t10k IDX files in {dirs[d]} (pass {flag}).",
            flush=True)
  t_start, loaded = time.perf_counter(), {}
  for i, (dataset, method, seed) in enumerate(jobs):
    if dataset not in loaded:
      ds = data_lib.load(
          _data_config(dataset, mnist_dir, extra_idx), num_clusters=10)
      x, labels = ds.all()
      loaded[dataset] = (x.reshape(len(x), -1).astype(np.float32),
                         labels.astype(np.int64))
    x, labels = loaded[dataset]
    row, clusters = run_one(method, dataset, seed, out=out, x=x,
                            labels=labels, quick=quick, mnist_dir=mnist_dir,
                            extra_idx=extra_idx)
    rows.append(row)
    if seed == seeds[0]:
      os.makedirs(os.path.join(out, dataset), exist_ok=True)
      np.savez(os.path.join(out, dataset, f"{method}.npz"),
               index=np.arange(len(labels)), cluster=clusters, label=labels)
    elapsed = time.perf_counter() - t_start
    eta = elapsed / (i + 1) * (len(jobs) - i - 1)
    print(f"[{i + 1}/{len(jobs)}] {dataset:10s} {method:16s} seed {seed}: "
          f"ACC {row['acc']:.3f} NMI {row['nmi']:.3f} ARI {row['ari']:.3f} "
          f"({row['seconds']:.0f} s; elapsed {elapsed / 60:.1f} min, "
          f"ETA {eta / 60:.1f} min)", flush=True)
    with open(os.path.join(out, "results.json"), "w") as f:
      json.dump(rows, f, indent=1)
  print(write_report(rows, out))
  return rows


def write_report(rows: list[dict], out: str) -> str:
  """Writes ``results.md`` and the charts for ``rows``; returns the table."""
  summary = summarize(rows)
  table = markdown(summary)
  selection = selection_report(rows)
  if selection:
    table += "\n" + selection_markdown(selection)
  charts = plot(summary, out) if summary else []
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(table)
    for path in charts:
      f.write(f"\n![{os.path.basename(path)}]({os.path.basename(path)})\n")
  return table


def merge(paths: list[str], out: str) -> list[dict]:
  """One report from the ``results.json`` of several benchmark runs.

  For runs split over machines or sessions (say digits on one, MNIST-test on
  another): no training, the rows are read, checked and reported together
  in ``out`` (``results.json``, ``results.md``, charts).
  """
  rows, source = [], {}
  for path in paths:
    with open(path) as f:
      for row in json.load(f):
        key = (row["dataset"], row["method"], row["seed"])
        if key in source:
          raise ValueError(
              f"--merge: {key[0]}/{key[1]} seed {key[2]} is in both "
              f"{source[key]} and {path}; keep one of them.")
        source[key] = path
        rows.append(row)
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(rows, f, indent=1)
  print(write_report(rows, out))
  return rows


def _data_config(dataset, mnist_dir, extra_idx=None):
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config().data
  config.update(dataset_config(dataset, mnist_dir, extra_idx))
  return config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _MERGE.value:
    merge(_MERGE.value, _OUT.value)
    return
  benchmark(datasets=_DATASETS.value, methods=_METHODS.value,
            seeds=[int(s) for s in _SEEDS.value], out=_OUT.value,
            quick=_QUICK.value, mnist_dir=_MNIST.value,
            extra_idx=parse_idx(_IDX.value))


if __name__ == "__main__":
  app.run(main)
