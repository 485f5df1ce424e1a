"""benchmarks.estimators: rows, table and the skip when MNIST is absent."""

import pytest

from benchmarks import estimators

pytestmark = pytest.mark.slow  # minutes: the fast tier is -m 'not slow'


def test_estimator_table_on_digits(tmp_path):
  rows = estimators.benchmark(datasets=["digits", "mnist_test"], seeds=[0],
                              names=["KMeans", "SinkhornKMeans"],
                              mnist_dir=str(tmp_path), log=lambda _: None)
  assert [r["estimator"] for r in rows] == [
      "sklearn KMeans", estimators.REFERENCE, "KMeans", "SinkhornKMeans"]
  assert {r["dataset"] for r in rows} == {"digits"}  # no MNIST files there
  by_name = {r["estimator"]: r for r in rows}
  assert by_name["KMeans"]["acc"] > 0.7
  assert by_name["SinkhornKMeans"]["acc"] >= by_name[estimators.REFERENCE][
      "acc"]
  table = estimators.markdown(rows)
  assert "| SinkhornKMeans |" in table and "ACC - KMeans(n_init=10)" in table
