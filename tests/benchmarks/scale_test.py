"""The scale benchmark at small sizes, and the mixture file it reads."""

import math

import numpy as np
import pytest

from benchmarks import scale
from benchmarks import sphere_mixture


def test_mixture_file_is_seeded_unit_rows_and_prefix_stable(tmp_path):
  big, big_labels = sphere_mixture.write(
      str(tmp_path / "big.npy"), num_examples=70000, dim=8, num_clusters=5,
      noise=0.5, seed=3)
  small, _ = sphere_mixture.write(str(tmp_path / "small.npy"),
                                  num_examples=66000, dim=8, num_clusters=5,
                                  noise=0.5, seed=3)
  x, y = np.load(big, mmap_mode="r"), np.load(big_labels)
  assert x.shape == (70000, 8) and x.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(x[:1000], axis=1), 1.0,
                             rtol=1e-5)
  np.testing.assert_array_equal(np.load(small), x[:66000])
  assert set(np.unique(y)) == set(range(5))
  # Each row is nearest to its own component's mean direction.
  means = np.stack([x[:5000][y[:5000] == j].mean(0) for j in range(5)])
  assert np.mean(np.argmax(x[:5000] @ means.T, 1) == y[:5000]) > 0.99


def test_exponent_between_the_two_largest_sizes():
  rows = [dict(stage="kmeans", n=n, seconds=1e-6 * n ** 2, peak_mb=n / 100)
          for n in (1000, 4000, 16000)]
  rows.append(dict(stage="kmeans", n=64000, skipped="O(n^2)"))
  assert scale.exponent(rows, "kmeans") == pytest.approx(2.0)
  assert scale.exponent(rows, "kmeans", "peak_mb") == pytest.approx(1.0)
  assert scale.exponent(rows, "sinkhorn") is None


def test_sampled_recall_against_scikit_learn(tmp_path):
  """The benchmark's recall of an IVF search: exact neighbours of sampled
  rows (scanned in blocks), checked against scikit-learn's."""
  from sklearn.neighbors import NearestNeighbors  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(7).standard_normal((700, 6)).astype(np.float32)
  exact = NearestNeighbors(n_neighbors=5, metric="cosine").fit(x).kneighbors(
      x, return_distance=False)[:, 1:]
  assert scale.sampled_recall(x, exact, num_queries=200) == 1.0
  wrong = exact.copy()
  wrong[:, 3] = (np.arange(700) + 350) % 700  # hardly ever a neighbour
  recall = scale.sampled_recall(x, wrong, num_queries=700)
  hits = np.mean(wrong[:, 3] == exact[:, 3])  # else column 3 is lost
  assert recall == pytest.approx((3 + hits) / 4)


@pytest.mark.slow  # (about a minute: the fast tier stays under 3 minutes)
def test_quick_table_has_every_stage_with_measured_figures(tmp_path):
  results = scale.benchmark(sizes=[1500, 3000], dims=[16],
                            cache=str(tmp_path), quick=True,
                            subprocesses=False, log=lambda _: None)
  rows = results[16]
  assert {(r["stage"], r["n"]) for r in rows} == {
      (s, n) for s in scale.STAGES for n in (1500, 3000)}
  for r in rows:
    assert r["seconds"] > 0 and math.isfinite(r["peak_mb"])
  kmeans = [r for r in rows if r["stage"] == "kmeans"]
  for r in kmeans:  # our inertia is that of our centres, close to sklearn's
    assert r["inertia"] <= 1.3 * r["sklearn_inertia"]
  table = scale.markdown(rows, 16)
  for stage in scale.STAGES:
    assert f"| {stage} |" in table
  assert "ratio (sklearn / ours)" in table
  for r in rows:  # the inverted file against exact neighbours of samples
    if r["stage"] == "neighbours_ivf":
      assert 0.8 <= r["recall"] <= 1.0, r
  assert "Inverted-file 10-NN recall" in table
  assert scale.exponent(rows, "neighbours") is not None  # measured, not
  # asserted: timings are the benchmark's output
  # A stage in its own process reports the same fields.
  child = scale._child("neighbours", str(tmp_path / "sphere_3000x16.npy"),
                       1500, False, 60000)
  assert child["n"] == 1500 and child["seconds"] > 0
  assert child["purity"] == pytest.approx(
      [r for r in rows if r["stage"] == "neighbours" and r["n"] == 1500][0][
          "purity"])
