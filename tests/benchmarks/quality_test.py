"""The quality leaderboard's quick mode: files, rows and metrics."""

import importlib
import json

import numpy as np
import pytest

from benchmarks import quality
from clustering.algorithms import metrics
from clustering.data import idx


@pytest.mark.slow  # minutes: the fast tier is -m 'not slow'
def test_quick_leaderboard_on_digits(tmp_path):
  out = str(tmp_path)
  rows = quality.benchmark(datasets=["digits"],
                           methods=["clam", "jax_kmeans", "sklearn_kmeans"],
                           seeds=[0, 1], out=out, quick=True)
  assert [(r["method"], r["seed"]) for r in rows] == [
      ("clam", 0), ("clam", 1), ("jax_kmeans", 0), ("jax_kmeans", 1),
      ("sklearn_kmeans", 0), ("sklearn_kmeans", 1)]
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk == json.loads(json.dumps(rows))
  for row in rows:
    for key in ("acc", "nmi", "ari", "silhouette", "silhouette_input",
                "silhouette_kmeans", "seconds", "seed"):
      assert key in row and np.isfinite(row[key]), (key, row)
  for method in ("clam", "jax_kmeans", "sklearn_kmeans"):
    arrays = np.load(tmp_path / "digits" / f"{method}.npz")
    assert set(arrays.files) == {"index", "cluster", "label"}
    np.testing.assert_array_equal(arrays["index"], np.arange(1797))
    # The stored assignment reproduces the reported (seed 0) numbers.
    row = rows[[r["method"] for r in rows].index(method)]
    assert metrics.hungarian_accuracy(arrays["label"], arrays["cluster"]) \
        == pytest.approx(row["acc"])
  # k-means on digits pixels: ACC ~0.79 (scikit-learn and ours agree).
  km = [r for r in rows if r["method"].endswith("kmeans")]
  assert all(r["acc"] > 0.7 for r in km), km
  # Our k-means refitted on its own space (the pixels) is the same fit.
  for r in rows:
    if r["method"] == "jax_kmeans":
      assert r["silhouette_kmeans"] == pytest.approx(r["silhouette"], abs=1e-6)
  table = (tmp_path / "results.md").read_text()
  assert "| sklearn_kmeans |" in table and " ± " in table
  assert (tmp_path / "digits.png").stat().st_size > 1000
  # A second call reuses the finished deep runs instead of training again.
  again = quality.benchmark(datasets=["digits"], methods=["clam"], seeds=[0],
                            out=out, quick=True)
  assert again[0]["seconds"] == rows[0]["seconds"]
  # A full-length request never reuses (or resumes) a --quick run.
  from experiments import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  with pytest.raises(workdir_lib.WorkdirError,
                     match=r"holds another run .*data.batch_size: 64 -> "):
    quality.benchmark(datasets=["digits"], methods=["clam"], seeds=[0],
                      out=out, quick=False)


@pytest.mark.slow
@pytest.mark.slow
def test_rows_of_a_recipe_with_heads_record_the_choice(tmp_path):
  rows = quality.benchmark(datasets=["digits"], methods=["swav", "jax_kmeans"],
                           seeds=[0], out=str(tmp_path), quick=True)
  swav, kmeans = rows
  run = json.loads((tmp_path / "digits" / "runs" / "swav" / "seed0"
                    / "results.json").read_text())
  assert len(swav["head_losses"]) == 5  # the config's default
  assert swav["head_losses"] == run["head_losses"]
  assert swav["head"] == int(np.argmin(swav["head_losses"]))
  assert kmeans["head"] is None and kmeans["head_losses"] is None


def test_missing_mnist_is_skipped_and_bad_names_are_errors(tmp_path, capsys):
  rows = quality.benchmark(datasets=["mnist_test"], methods=["jax_kmeans"],
                           seeds=[0], out=str(tmp_path),
                           mnist_dir=str(tmp_path / "nowhere"))
  assert rows == [] and "Skipping mnist_test" in capsys.readouterr().out
  with pytest.raises(ValueError, match="--methods"):
    quality.benchmark(datasets=["digits"], methods=["dbscan"], seeds=[0],
                      out=str(tmp_path))
  with pytest.raises(ValueError, match="--datasets"):
    quality.benchmark(datasets=["cifar"], methods=["clam"], seeds=[0],
                      out=str(tmp_path))


def test_idx_datasets_run_like_mnist_test(tmp_path, capsys):
  """``--idx=NAME=DIR``: another 28x28 IDX set, the recipes' :mnist preset
  with only the data path changed, baselines on its pixels."""
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(3), 20).astype(np.uint8)
  images = np.zeros((60, 28, 28), np.uint8)
  for c in range(3):  # each class lights its own band of rows
    images[labels == c, 9 * c: 9 * c + 9] = rng.integers(
        150, 256, ((labels == c).sum(), 9, 28))
  order = rng.permutation(60)
  idx.write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images[order])
  idx.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[order])
  extra = quality.parse_idx([f"bands={tmp_path}"])
  assert extra == {"bands": str(tmp_path)}
  rows = quality.benchmark(datasets=["bands"], methods=["jax_kmeans"],
                           seeds=[0], out=str(tmp_path / "out"),
                           extra_idx=extra)
  assert [(r["dataset"], r["method"]) for r in rows] == [
      ("bands", "jax_kmeans")]
  assert rows[0]["acc"] == 1.0
  np.testing.assert_array_equal(
      np.load(tmp_path / "out" / "bands" / "jax_kmeans.npz")["label"],
      labels[order])
  config = quality.method_config("cpp", "bands", mnist_dir="unused", seed=1,
                                 quick=False, extra_idx=extra)
  preset = importlib.import_module("configs.cpp").get_config("mnist")
  preset.data.path, preset.seed = str(tmp_path), 1
  assert config.to_dict() == preset.to_dict()
  # A missing folder is skipped with the flag to pass; bad specs are named.
  assert quality.benchmark(
      datasets=["bands"], methods=["jax_kmeans"], seeds=[0],
      out=str(tmp_path / "o2"), extra_idx={"bands": str(tmp_path / "no")}) \
      == []
  assert "Skipping bands" in capsys.readouterr().out
  for spec, match in [("fashion", "not NAME=DIR"), ("=/d", "not NAME=DIR"),
                      ("digits=/d", "'digits' is taken")]:
    with pytest.raises(ValueError, match=match):
      quality.parse_idx([spec])
  with pytest.raises(ValueError, match=r"--datasets.*--idx=NAME=DIR"):
    quality.benchmark(datasets=["bands"], methods=["jax_kmeans"], seeds=[0],
                      out=str(tmp_path / "o3"))


def test_selection_report_ranks_seeds_against_acc():
  def row(method, seed, acc, loss, entropy):
    return dict(dataset="d", method=method, seed=seed, acc=acc,
                final_loss=loss, silhouette=0.1, cluster_entropy=entropy,
                coding_length_per_example=None)
  rows = [row("swav", 0, 0.9, 1.0, 0.99), row("swav", 1, 0.7, 2.0, 0.90),
          row("swav", 2, 0.8, 3.0, 0.95),
          row("icon", 0, 0.5, 0.5, 0.80), row("icon", 1, 0.6, 0.4, 0.70),
          row("icon", 2, 0.7, 0.3, 0.60),
          row("jax_kmeans", 0, 0.1, None, 0.1)]  # baselines are left out
  report = {r["measure"]: r for r in quality.selection_report(rows)}
  # Loss (lower is better): swav's ranks are (1, 3, 2) for ACC (1, 3, 2):
  # rho = 0.5 by hand; icon's agree fully: 1. Both pick the best seed.
  assert report["final_loss"]["spearman"] == pytest.approx((0.5 + 1) / 2)
  assert report["final_loss"]["best_seed_found"] == 2
  # Entropy: swav rho = 1, icon rho = -1; it finds swav's best seed only.
  assert report["cluster_entropy"]["spearman"] == pytest.approx(0.0)
  assert report["cluster_entropy"]["best_seed_found"] == 1
  assert report["silhouette"]["spearman"] is None  # constant: no ranking
  assert "coding_length_per_example" not in report  # no recipe has it
  table = quality.selection_markdown(list(report.values()))
  assert "| final_loss (lower) | +0.75 | 2 of 2 recipes |" in table


def _row(method, seed, acc, dataset="d"):
  return dict(dataset=dataset, method=method, seed=seed, acc=acc, nmi=acc / 2,
              ari=0.5, silhouette=0.2, silhouette_input=0.1,
              silhouette_kmeans=0.3, seconds=10.0 * (seed + 1),
              final_loss=1.0 - acc, cluster_entropy=0.9,
              coding_length_per_example=None)


def test_merge_reports_runs_of_several_sessions_together(tmp_path):
  first, second = tmp_path / "a.json", tmp_path / "b.json"
  first.write_text(json.dumps([_row("swav", 0, 0.9), _row("swav", 1, 0.7),
                               _row("jax_kmeans", 0, 0.5, dataset="e")]))
  second.write_text(json.dumps([_row("swav", 2, 0.8)]))
  out = tmp_path / "merged"
  rows = quality.merge([str(first), str(second)], str(out))
  assert [(r["dataset"], r["method"], r["seed"]) for r in rows] == [
      ("d", "swav", 0), ("d", "swav", 1), ("e", "jax_kmeans", 0),
      ("d", "swav", 2)]
  assert json.loads((out / "results.json").read_text()) == rows
  table = (out / "results.md").read_text()
  # ACC 0.9, 0.7, 0.8: mean 0.8, population std sqrt(0.02 / 3) = 0.0816;
  # seconds 10, 20, 30: 20 +- 8.
  assert ("| swav | 0.800 ± 0.082 | 0.400 ± 0.041 | 0.500 ± 0.000 | "
          "0.200 ± 0.000 | 0.300 ± 0.000 | 0.100 ± 0.000 | 20 ± 8 |") in table
  assert "### d (seeds 0, 1, 2)" in table and "| jax_kmeans | 0.500 |" in table
  # A method run on fewer seeds than its table says so, without a std.
  third = tmp_path / "c.json"
  third.write_text(json.dumps([_row("clam", 1, 0.6)]))
  quality.merge([str(first), str(second), str(third)], str(out))
  table = (out / "results.md").read_text()
  assert "### d (seeds 0, 1, 2)" in table
  assert "| clam (seed 1) | 0.600 | 0.300 |" in table
  assert "| swav | 0.800 ± 0.082 |" in table
  # Loss 0.1, 0.3, 0.2 ranks the seeds exactly as ACC does.
  assert "| final_loss (lower) | +1.00 | 1 of 1 recipes |" in table
  assert (out / "d.png").stat().st_size > 1000
  with pytest.raises(ValueError, match=r"d/swav seed 2 is in both .*b\.json "
                     r"and .*b\.json"):
    quality.merge([str(first), str(second), str(second)], str(out))
