r"""CPP on frozen features with many clusters, against k-means on them.

    python -m benchmarks.many_clusters --out=runs/many_clusters
    python -m benchmarks.many_clusters --cases=sphere100 --seeds=0
    python -m benchmarks.many_clusters --quick            # seconds, tests

CPP's claim is that its heads, trained on frozen (CLIP) features, cluster
them better than k-means does (57% -> 66% on ImageNet's 1,000 classes). Each
case is a features file with known labels:

* ``sphere100``: 20,000 x 128, 100 clusters, and ``sphere1000``: 100,000 x
  128, 1,000 clusters (:mod:`benchmarks.sphere_mixture`, noise 1.0, seed 0);
* ``digits``: the 1,797 8x8 digits' pixels in [0, 1]; ``mnist_test``:
  MNIST-test's 10,000 images' pixels in [0, 1] (from ``--mnist_dir``,
  skipped when absent). 10 classes each.

CPP is ``configs/cpp.py:npy`` as it is, with ``--config.num_clusters=k`` and
the seed (its membership entropy scales with ``k``:
:func:`clustering.methods.mcr2.membership_eta`). In the same run, on the same
features: scikit-learn's ``KMeans`` (k-means++, ``n_init=1``) and
``MiniBatchKMeans`` (its defaults, ``batch_size=1024``) and our
:class:`clustering.KMeans`, each with the same seed. ``results.md`` gives
mean ± std over seeds and CPP's ACC minus the best k-means'. A finished CPP
run of the same config is reused, an interrupted one resumes.
"""

from __future__ import annotations

import json
import os
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from benchmarks import estimators
from benchmarks import sphere_mixture
from clustering.algorithms import metrics as metrics_lib

# name: (num_examples, dim, num_clusters) of a sphere mixture, or a dataset.
CASES = {"sphere100": (20_000, 128, 100), "sphere1000": (100_000, 128, 1000),
         "digits": "digits", "mnist_test": "mnist_test"}
QUICK_CASES = {"sphere20": (2_000, 16, 20), "digits": "digits"}
KMEANS = ("sklearn_kmeans", "sklearn_minibatch", "jax_kmeans")



def define_flags():
  flags.DEFINE_list("cases", list(CASES), f"From {list(CASES)}.")
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
  flags.DEFINE_string("out", "runs/many_clusters", "Output directory.")
  flags.DEFINE_bool("quick", False, f"Small cases {list(QUICK_CASES)} and "
                    "CPP's :quick variant (for tests).")
  flags.DEFINE_string("mnist_dir", estimators.DEFAULT_MNIST_DIR,
                      "Folder with the MNIST t10k IDX files.")


def features_file(case: str, out: str, mnist_dir: str, *, quick: bool = False
                  ) -> tuple[str, str] | None:
  """Writes (once) the case's features ``.npy`` and labels; their paths, or
  None when the data set is absent."""
  spec = (QUICK_CASES if quick else CASES)[case]
  path = os.path.join(out, "data", f"{case}.npy")
  labels = sphere_mixture.labels_path(path)
  if os.path.exists(path) and os.path.exists(labels):
    return path, labels
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if isinstance(spec, tuple):
    n, dim, k = spec
    return sphere_mixture.write(path, num_examples=n, dim=dim,
                                num_clusters=k)
  loaded = estimators.load(spec, mnist_dir)
  if loaded is None:
    return None
  x, y = loaded
  np.save(path, (x / x.max()).astype(np.float32))  # pixels in [0, 1]
  np.save(labels, y.astype(np.int32))
  return path, labels


def cpp_config(path: str, labels: str, k: int, seed: int, *, quick: bool):
  from configs import cpp  # pylint: disable=g-import-not-at-top
  config = cpp.get_config("npy,quick" if quick else "npy")
  config.data.update(dict(path=path, labels_path=labels))
  config.num_clusters = k
  config.seed = seed
  return config


def run_cpp(case: str, path: str, labels: str, k: int, seed: int, *,
            out: str, quick: bool) -> dict:
  from experiments import train  # pylint: disable=g-import-not-at-top
  from experiments import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  config = cpp_config(path, labels, k, seed, quick=quick)
  workdir = os.path.join(out, case, f"cpp_seed{seed}")
  done = os.path.join(workdir, "results.json")
  if os.path.exists(done) and workdir_lib.holds_run_of(workdir, config):
    logging.info("%s seed %d: reusing %s", case, seed, done)
    with open(done) as f:
      res = json.load(f)
  else:  # resumes the run, or refuses a workdir of another config
    res = train.train_and_evaluate(config, workdir, show_progress=False)
  return dict(acc=res["acc"], nmi=res["nmi"], seconds=res["seconds"],
              eta=res.get("membership_eta"),
              num_clusters_used=res["num_clusters_used"])


def run_kmeans(method: str, x: np.ndarray, k: int, seed: int) -> np.ndarray:
  """Cluster ids ``[n]`` of one k-means on ``x``."""
  from sklearn import cluster  # pylint: disable=g-import-not-at-top
  if method == "sklearn_kmeans":
    return cluster.KMeans(k, n_init=1, random_state=seed).fit_predict(x)
  if method == "sklearn_minibatch":
    return cluster.MiniBatchKMeans(k, random_state=seed).fit_predict(x)
  if method == "jax_kmeans":
    import clustering  # pylint: disable=g-import-not-at-top
    return clustering.KMeans(k, n_init=1, random_state=seed).fit_predict(x)
  raise ValueError(f"Unknown k-means {method!r}; expected one of {KMEANS}.")


def summarize(rows: list[dict]) -> list[dict]:
  """Per case: mean and std over seeds of every method's ACC, NMI, seconds,
  and CPP's ACC minus the best k-means' (mean over seeds)."""
  out = []
  for case in dict.fromkeys(r["case"] for r in rows):
    rs = [r for r in rows if r["case"] == case]
    s = dict(case=case, n=rs[0]["n"], dim=rs[0]["dim"], k=rs[0]["k"],
             seeds=sorted({r["seed"] for r in rs}))
    for method in ("cpp",) + KMEANS:
      for key in ("acc", "nmi", "seconds"):
        vals = np.array([r[method][key] for r in rs], np.float64)
        s[f"{method}_{key}"] = float(vals.mean())
        s[f"{method}_{key}_std"] = float(vals.std())
    best = max(KMEANS, key=lambda m: s[f"{m}_acc"])
    s["best_kmeans"] = best
    s["cpp_minus_best_kmeans"] = s["cpp_acc"] - s[f"{best}_acc"]
    s["cpp_eta"] = rs[0]["cpp"]["eta"]
    out.append(s)
  return out


def markdown(summary: list[dict]) -> str:
  def cell(s, method, key, digits=3):
    mean = f"{s[f'{method}_{key}']:.{digits}f}"
    if len(s["seeds"]) == 1:
      return mean
    return f"{mean} ± {s[f'{method}_{key}_std']:.{digits}f}"
  lines = ["| case | n x d | k | seeds | CPP ACC | CPP NMI | sklearn KMeans ACC | "
           "sklearn MiniBatchKMeans ACC | our KMeans ACC | CPP - best "
           "k-means | CPP eta | CPP s | KMeans s | MiniBatch s | ours s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for s in summary:
    lines.append(
        f"| {s['case']} | {s['n']:,} x {s['dim']} | {s['k']:,} | "
        f"{', '.join(map(str, s['seeds']))} | {cell(s, 'cpp', 'acc')} | {cell(s, 'cpp', 'nmi')} | "
        f"{cell(s, 'sklearn_kmeans', 'acc')} | "
        f"{cell(s, 'sklearn_minibatch', 'acc')} | "
        f"{cell(s, 'jax_kmeans', 'acc')} | "
        f"{s['cpp_minus_best_kmeans']:+.3f} | {s['cpp_eta']:.4f} | "
        f"{s['cpp_seconds']:.0f} | {s['sklearn_kmeans_seconds']:.1f} | "
        f"{s['sklearn_minibatch_seconds']:.1f} | "
        f"{s['jax_kmeans_seconds']:.1f} |")
  lines.append("\nMean ± std over the seeds; seconds include JAX "
               "compilation and, for CPP, training and assignment.")
  return "\n".join(lines)


def benchmark(*, cases, seeds, out, quick=False,
              mnist_dir=estimators.DEFAULT_MNIST_DIR, log=print) -> list[dict]:
  """Runs every (case, seed); writes ``results.json`` and ``results.md``
  under ``out`` and returns the per-run rows."""
  known = QUICK_CASES if quick else CASES
  for case in cases:
    if case not in known:
      raise ValueError(f"Unknown case {case!r} in --cases; expected some of "
                       f"{list(known)}.")
  os.makedirs(out, exist_ok=True)
  rows = []
  for case in cases:
    files = features_file(case, out, mnist_dir, quick=quick)
    if files is None:
      log(f"Skipping {case}: no MNIST test files in {mnist_dir} (pass "
          "--mnist_dir).")
      continue
    x = np.load(files[0], mmap_mode="r")
    labels = np.load(files[1])
    k = int(len(np.unique(labels)))
    for seed in seeds:
      row = dict(case=case, seed=seed, n=int(x.shape[0]), dim=int(x.shape[1]),
                 k=k, cpp=run_cpp(case, *files, k, seed, out=out,
                                  quick=quick))
      for method in KMEANS:
        t0 = time.perf_counter()
        clusters = run_kmeans(method, np.asarray(x), k, seed)
        seconds = time.perf_counter() - t0
        row[method] = dict(
            acc=metrics_lib.hungarian_accuracy(labels, clusters),
            nmi=metrics_lib.normalized_mutual_info(labels, clusters), seconds=seconds)
      rows.append(row)
      log(f"{case} seed {seed}: CPP ACC {row['cpp']['acc']:.3f} "
          f"({row['cpp']['seconds']:.0f} s); k-means ACC "
          + ", ".join(f"{m} {row[m]['acc']:.3f}" for m in KMEANS))
      with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
  table = markdown(summarize(rows))
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(table + "\n")
  log(table)
  return rows


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  cases = f.cases
  if f.quick and cases == list(CASES):
    cases = list(QUICK_CASES)
  benchmark(cases=cases, seeds=[int(s) for s in f.seeds], out=f.out,
            quick=f.quick, mnist_dir=f.mnist_dir)


if __name__ == "__main__":
  define_flags()
  app.run(main)
