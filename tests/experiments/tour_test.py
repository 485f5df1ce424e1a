"""The README's main job, in a quick variant (few restarts and steps)."""

import pytest

from experiments import tour

pytestmark = pytest.mark.slow  # minutes: the fast tier is -m 'not slow'


def test_tour_runs_and_reports_sane_numbers():
  lines = []
  out = tour.run(restarts=3, anneal_steps=60, clam_steps=20, log=lines.append)
  by_name = {name: m for name, m, _ in out["rows"]}
  # k-means-level clustering on digits (sklearn KMeans: ACC ~0.79).
  assert by_name["soft k-means (DKM annealing)"]["acc"] > 0.6
  assert by_name["Sinkhorn balanced assignment"]["acc"] > 0.6
  assert set(out["coding_length"]) == {5, 8, 10, 12, 15}
  assert out["icon"] < out["icon_uniform"]
  assert any("MCR^2" in line for line in lines)
