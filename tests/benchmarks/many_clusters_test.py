"""CPP against k-means on frozen features with many clusters, at small size."""

import json

import numpy as np
import pytest
from sklearn import cluster

from benchmarks import many_clusters
from clustering.algorithms import metrics
from clustering.methods import mcr2


@pytest.mark.slow  # (trains CPP's quick recipe on two cases)
def test_quick_rows_are_the_runs_and_the_same_k_means(tmp_path):
  out = str(tmp_path)
  rows = many_clusters.benchmark(cases=["sphere20"], seeds=[0], out=out,
                                 quick=True, log=lambda _: None)
  (row,) = rows
  assert (row["n"], row["dim"], row["k"]) == (2000, 16, 20)
  # CPP's row is its run's results, at the entropy scaled for 20 clusters.
  with open(tmp_path / "sphere20" / "cpp_seed0" / "results.json") as f:
    res = json.load(f)
  assert row["cpp"]["acc"] == res["acc"]
  assert row["cpp"]["eta"] == pytest.approx(
      1 / (1 / 0.175 + np.log(19 / 9)))
  assert row["cpp"]["eta"] == pytest.approx(mcr2.membership_eta(0.175, 20))
  # The k-means figures are scikit-learn's on the same file and seed.
  x = np.load(tmp_path / "data" / "sphere20.npy")
  y = np.load(tmp_path / "data" / "sphere20_labels.npy")
  expected = cluster.KMeans(20, n_init=1, random_state=0).fit_predict(x)
  assert row["sklearn_kmeans"]["acc"] == pytest.approx(
      metrics.hungarian_accuracy(y, expected))
  summary = many_clusters.summarize(rows)[0]
  best = max(row[m]["acc"] for m in many_clusters.KMEANS)
  assert summary["cpp_minus_best_kmeans"] == pytest.approx(
      row["cpp"]["acc"] - best)
  assert f"{summary['cpp_minus_best_kmeans']:+.3f}" in (
      tmp_path / "results.md").read_text()
  # A second call reuses the finished run instead of training again.
  again = many_clusters.benchmark(cases=["sphere20"], seeds=[0], out=out,
                                  quick=True, log=lambda _: None)
  assert again[0]["cpp"] == row["cpp"]


def test_unknown_case_fails_before_any_run(tmp_path):
  with pytest.raises(ValueError, match="--cases"):
    many_clusters.benchmark(cases=["sphere100", "cifar"], seeds=[0],
                            out=str(tmp_path), log=lambda _: None)
  assert not (tmp_path / "data").exists()
