r"""The scikit-learn estimators against `sklearn.cluster.KMeans`, same run.

    python -m benchmarks.estimators [--datasets=digits,mnist_test] [--seeds=0,1,2] [--out=DIR]

Fits every estimator in :mod:`clustering.estimators` (default parameters,
``n_clusters`` = the number of classes) and scikit-learn's ``KMeans`` (its
default ``n_init``, and ``n_init=10``) on the same raw features: digits'
pixels (1,797 x 64) and, when its files are present, MNIST-test's
(10,000 x 784). Prints one markdown table per dataset: ACC, NMI, ARI, fit
seconds (first fit, compilation included) and the ACC difference to
``KMeans(n_init=10)``; with ``--out`` writes ``results.json`` and
``results.md``.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from clustering import estimators as E
from clustering.data import idx
from clustering.algorithms import metrics

DEFAULT_MNIST_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
    "shared", "data", "mnist_test")
OURS = ("KMeans", "SoftKMeans", "SinkhornKMeans", "ClAM", "MCR2Clustering",
        "MCR2Clustering(learn_head=True)", "IConClustering")
# Rows that are an estimator with non-default parameters.
VARIANTS = {"MCR2Clustering(learn_head=True)": ("MCR2Clustering",
                                                dict(learn_head=True))}
REFERENCE = "sklearn KMeans(n_init=10)"


def load(dataset: str, mnist_dir: str = DEFAULT_MNIST_DIR):
  """``(x [n, d] float32, labels [n])`` or ``None`` when absent."""
  if dataset == "digits":
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    x, y = datasets.load_digits(return_X_y=True)
    return x.astype(np.float32), y
  if dataset == "mnist_test":
    try:
      x, y = idx.load_idx_dir(mnist_dir, "t10k")
    except ValueError:
      return None
    return x.reshape(len(x), -1), y
  raise ValueError(f"Unknown dataset {dataset!r}: 'digits' or 'mnist_test'.")


def make(name: str, k: int, seed: int, overrides: dict | None = None):
  from sklearn import cluster  # pylint: disable=g-import-not-at-top
  if name == "sklearn KMeans":
    return cluster.KMeans(k, random_state=seed)
  if name == REFERENCE:
    return cluster.KMeans(k, n_init=10, random_state=seed)
  cls, params = VARIANTS.get(name, (name, {}))
  est = getattr(E, cls)(n_clusters=k, random_state=seed, **params)
  return est.set_params(**(overrides or {}).get(name, {}))


def benchmark(*, datasets, seeds, names=None, overrides=None,
              mnist_dir=DEFAULT_MNIST_DIR, log=print) -> list[dict]:
  names = list(names or OURS)
  rows = []
  for dataset in datasets:
    data = load(dataset, mnist_dir)
    if data is None:
      log(f"{dataset}: files not found under {mnist_dir}; skipped.")
      continue
    x, y = data
    k = len(np.unique(y))
    for seed in seeds:
      for name in ["sklearn KMeans", REFERENCE] + names:
        est = make(name, k, seed, overrides)
        start = time.perf_counter()
        labels = np.asarray(est.fit_predict(x))
        seconds = time.perf_counter() - start
        m = metrics.clustering_metrics(y, labels)
        rows.append(dict(dataset=dataset, estimator=name, seed=int(seed),
                         acc=m["acc"], nmi=m["nmi"], ari=m["ari"],
                         seconds=seconds))
        log(f"{dataset} seed {seed} {name:28s} ACC {m['acc']:.3f} "
            f"NMI {m['nmi']:.3f} ({seconds:.1f} s)")
  return rows


def markdown(rows: list[dict]) -> str:
  out = []
  for dataset in dict.fromkeys(r["dataset"] for r in rows):
    sub = [r for r in rows if r["dataset"] == dataset]
    seeds = sorted({r["seed"] for r in sub})
    out += [f"**{dataset}** (seeds {', '.join(map(str, seeds))}; mean "
            "over seeds)", "",
            "| estimator | ACC | NMI | ARI | fit s | ACC - KMeans(n_init=10) |",
            "|---|---|---|---|---|---|"]
    ref = np.mean([r["acc"] for r in sub if r["estimator"] == REFERENCE])
    for name in dict.fromkeys(r["estimator"] for r in sub):
      mine = [r for r in sub if r["estimator"] == name]
      mean = {key: np.mean([r[key] for r in mine])
              for key in ("acc", "nmi", "ari", "seconds")}
      out.append(f"| {name} | {mean['acc']:.3f} | {mean['nmi']:.3f} | "
                 f"{mean['ari']:.3f} | {mean['seconds']:.1f} | "
                 f"{mean['acc'] - ref:+.3f} |")
    out.append("")
  return "\n".join(out)


def main(argv):
  del argv
  rows = benchmark(datasets=FLAGS.datasets, seeds=[int(s) for s in FLAGS.seeds],
                   mnist_dir=FLAGS.mnist_dir)
  table = markdown(rows)
  print(table)
  if FLAGS.out:
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, "results.json"), "w") as f:
      json.dump(rows, f, indent=1)
    with open(os.path.join(FLAGS.out, "results.md"), "w") as f:
      f.write(table)


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_list("datasets", ["digits"], "digits, mnist_test.")
  flags.DEFINE_list("seeds", ["0"], "random_state of every estimator.")
  flags.DEFINE_string("out", None, "Write results.json and results.md here.")
  flags.DEFINE_string("mnist_dir", DEFAULT_MNIST_DIR, "MNIST IDX folder.")
  FLAGS = flags.FLAGS
  app.run(main)
