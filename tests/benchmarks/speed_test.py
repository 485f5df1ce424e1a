"""The speed benchmark's quick mode: every case runs and its rows add up.

Timings are printed by the benchmark, never asserted here.
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import speed

pytestmark = pytest.mark.slow  # minutes: the fast tier is -m 'not slow'

MNIST = pathlib.Path(speed.DEFAULT_MNIST_DIR)


def _check_row(row):
  assert row["ours_s"] > 0 and np.isfinite(row["ours_s"]), row
  assert row["case"] in speed.to_markdown([row])


def test_sinkhorn_rows_reach_the_threshold_and_match_ott():
  rows = speed.sinkhorn_case(quick=True, repeats=1)
  assert len(rows) == 4
  for row in rows:
    _check_row(row)
    assert row["alternative"] == "ott-jax" and row["alt_s"] > 0
  for row in rows[:2]:  # tolerance mode: both stop below the threshold
    assert row["ours_error"] < row["tol"] and row["alt_error"] < row["tol"]
  for row in rows[2:]:  # fixed iterations: the same plan as ott-jax
    assert row["rel_diff"] < 1e-3, row


def test_mcr2_rows_equal_the_reference_formulations():
  rows = speed.mcr2_case(quick=True, repeats=1)
  assert [r["case"].split(" (")[-1] for r in rows[:2]] == ["hard)", "soft)"]
  for row in rows:
    _check_row(row)
    np.testing.assert_allclose(row["ours_loss"], row["alt_loss"], rtol=1e-4,
                               atol=1e-4)


@pytest.mark.skipif(not MNIST.exists(), reason="MNIST-test IDX not present")
def test_kmeans_row_on_mnist_subset():
  (row,) = speed.kmeans_case(quick=True, repeats=1, mnist_dir=str(MNIST))
  _check_row(row)
  # Both are local optima of the same objective from different seeds.
  assert row["ours_inertia"] <= 1.02 * row["alt_inertia"], row


def test_kmeans_case_skips_without_data(tmp_path, capsys):
  assert speed.kmeans_case(quick=True, repeats=1,
                           mnist_dir=str(tmp_path)) == []
  assert "skipped" in capsys.readouterr().out


def test_throughput_row_and_written_table(tmp_path):
  (row,) = speed.throughput_case(quick=True, repeats=1)
  _check_row(row)
  assert "configs/mcr2.py" in row["case"]
  assert "examples/s" in row["ours_accuracy"]
  table = speed.to_markdown([row])
  assert table.count("\n") == 3 and "| - |" in table
  json.dumps(row)  # the results.json row is serialisable


def test_command_line_quick_writes_tables(tmp_path):
  # benchmarks.speed defines its flags only when run as a program, so it
  # can be imported next to benchmarks.quality (both have --quick, --out).
  root = pathlib.Path(__file__).resolve().parents[2]
  subprocess.run([sys.executable, "-m", "benchmarks.speed", "--quick",
                  "--cases=mcr2", "--repeats=1", f"--out={tmp_path}"],
                 check=True, cwd=root, timeout=300)
  rows = json.loads((tmp_path / "results.json").read_text())
  assert rows and all(r["ours_s"] > 0 for r in rows)
  assert "| MLC Rc" in (tmp_path / "results.md").read_text()
