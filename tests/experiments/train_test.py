"""The training pipeline end to end: configs, outputs, sharding, resume."""

import importlib
import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import train
from experiments import workdir as workdir_lib

pytestmark = pytest.mark.slow  # minutes: the fast tier is -m 'not slow'

METHODS = ("mcr2", "cpp", "swav", "soft_kmeans", "clam", "icon")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def get_config(method, arg="quick"):
  module = importlib.import_module(f"configs.{method}")
  return module.get_config(arg)


def losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return {r["step"]: r["loss"] for r in records if "loss" in r}


def final_state(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return ocp.StandardCheckpointer().restore(path)


@pytest.mark.parametrize("method", METHODS)
def test_quick_config_runs_end_to_end(method, tmp_path):
  config = get_config(method)
  results = train.train_and_evaluate(config, str(tmp_path),
                                     show_progress=False)
  for key in ("acc", "nmi", "ari", "silhouette"):
    assert 0.0 <= results[key] <= 1.0 or key == "silhouette", (key, results)
  assert results["num_steps"] == config.train.num_steps
  assert results["num_devices"] == jax.device_count()
  assert np.isfinite(results["final_loss"])
  on_disk = json.loads((tmp_path / "results.json").read_text())
  for key in ("acc", "nmi", "ari", "silhouette", "final_loss", "num_steps",
              "seconds", "num_devices"):
    assert key in on_disk
  preds = np.load(tmp_path / "predictions.npz")
  assert preds["index"].shape == preds["cluster"].shape == preds["label"].shape
  assert preds["cluster"].max() < config.num_clusters
  for plot in ("loss.png", "confusion.png", "embedding.png"):
    assert (tmp_path / plot).stat().st_size > 1000
  steps = sorted(losses(str(tmp_path)))
  assert steps[-1] == config.train.num_steps
  # Chance on 10 balanced classes is ACC ~0.1-0.2 with 10 clusters.
  assert results["acc"] > 0.2, results


@pytest.mark.parametrize("method", ["mcr2", "swav"])
def test_eight_devices_follow_the_one_device_trajectory(method, tmp_path):
  config = get_config(method)
  config.train.num_steps = 14  # mcr2: TCR warm-up, then clustering
  config.train.log_every = 1
  one = train.train_and_evaluate(config, str(tmp_path / "one"),
                                 show_progress=False,
                                 devices=jax.devices()[:1])
  eight = train.train_and_evaluate(config, str(tmp_path / "eight"),
                                   show_progress=False)
  assert (one["num_devices"], eight["num_devices"]) == (1, 8)
  a, b = losses(str(tmp_path / "one")), losses(str(tmp_path / "eight"))
  assert sorted(a) == list(range(1, 15))
  np.testing.assert_allclose([b[s] for s in sorted(a)],
                             [a[s] for s in sorted(a)], rtol=2e-3, atol=2e-3)


class Interrupt(Exception):
  pass


def stop_at(step, exc):
  def hook(done):
    if done == step:
      raise exc()
  return hook


@pytest.mark.parametrize("method,exc", [("mcr2", KeyboardInterrupt),
                                        ("swav+selflabel", Interrupt)])
def test_interrupted_and_resumed_equals_uninterrupted(method, exc, tmp_path):
  """A crash resumes from the last periodic checkpoint; Ctrl-C saves first.

  The crash resumes across a phase boundary (the self-label head's fit and
  its fresh optimizer) between the checkpoint and the interruption; the
  Ctrl-C'd MLC run was saved after its cluster-head copy. (DKM's k-means
  start is crossed by the SIGKILL tests of crash_test.py.)
  """
  config = get_config(method.split("+")[0])
  if method.endswith("+selflabel"):
    config.selflabel.update(steps=10, learning_rate=3e-4)  # from step 14
  config.train.num_steps = 24
  config.train.log_every = 1
  full = train.train_and_evaluate(config, str(tmp_path / "full"),
                                  show_progress=False)
  part = str(tmp_path / "part")
  with pytest.raises(exc):
    train.train_and_evaluate(config, part, show_progress=False,
                             on_step=stop_at(17, exc))
  resumed = train.train_and_evaluate(config, part, show_progress=False)
  assert resumed["resumed_from"] == (10 if exc is Interrupt else 17)
  a, b = final_state(str(tmp_path / "full"), 24), final_state(part, 24)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  pa = np.load(tmp_path / "full" / "predictions.npz")
  pb = np.load(os.path.join(part, "predictions.npz"))
  np.testing.assert_array_equal(pa["cluster"], pb["cluster"])
  assert losses(str(tmp_path / "full")) == losses(part)
  assert full["acc"] == resumed["acc"]
  if method.endswith("+selflabel"):
    _check_the_switch_to_the_self_label_head(str(tmp_path / "full"), full)


def _check_the_switch_to_the_self_label_head(workdir, results):
  """The run moves to the head at its step, trains it at the phase's own
  rate (a fresh optimizer, not the main schedule's), and assigns by it."""
  records = [r for r in map(json.loads, open(
      os.path.join(workdir, "metrics.jsonl")).read().splitlines())
             if "loss" in r]
  by_step = {r["step"]: r for r in records}
  assert by_step[14]["phase"] == "train" and "confident" not in by_step[14]
  assert by_step[15]["phase"] == "selflabel"
  assert all(by_step[s]["learning_rate"] == pytest.approx(3e-4)
             for s in range(15, 25))
  assert by_step[14]["learning_rate"] < 1e-3  # the cosine's tail
  assert 0 <= by_step[24]["confident"] <= 1
  preds = np.load(os.path.join(workdir, "predictions.npz"))
  assert results["num_clusters_used"] == len(np.unique(preds["cluster"]))


def test_a_finished_run_restarted_only_evaluates(tmp_path):
  config = get_config("clam")
  first = train.train_and_evaluate(config, str(tmp_path), show_progress=False)
  again = train.train_and_evaluate(config, str(tmp_path), show_progress=False)
  assert again["resumed_from"] == config.train.num_steps
  assert again["acc"] == first["acc"]


@pytest.mark.parametrize("change,message", [
    (dict(method="kmeans++"), "Unknown method 'kmeans\\+\\+'"),
    (dict(batch_size=60), "divisible by the number of devices, 8"),
    (dict(num_clusters=2000), "num_clusters=2000 exceeds the 1797"),
    (dict(batch_size=4096), "batch_size=4096 exceeds the 1797"),
    (dict(warmup=30), "warmup_steps=30 leaves no clustering steps"),
    (dict(optimizer="lamb"), "optimizer.name"),
    (dict(encoder="cnn", data="synthetic"), "needs images"),
    (dict(neighbor_search="faiss"), "data.neighbor_search must be one of"),
    (dict(neighbor_pairs="snn"), "data.neighbor_pairs must be one of"),
    (dict(self_pair_share=1.5), "data.self_pair_share must be in"),
    (dict(self_pair_share=0.5, neighbors="none"),
     "data.self_pair_share=0.5 needs neighbour pairs"),
])
def test_bad_configs_fail_before_training(change, message, tmp_path):
  config = get_config("mcr2")
  with config.unlocked():
    if "method" in change:
      config.method = change["method"]
    if "batch_size" in change:
      config.data.batch_size = change["batch_size"]
    if "num_clusters" in change:
      config.num_clusters = change["num_clusters"]
    if "warmup" in change:
      config.objective.warmup_steps = change["warmup"]
    if "optimizer" in change:
      config.optimizer.name = change["optimizer"]
    if "encoder" in change:
      config.model.encoder = change["encoder"]
      config.data.name = change["data"]
    if "neighbor_search" in change:
      config.data.neighbor_search = change["neighbor_search"]
    if "neighbor_pairs" in change:
      config.data.neighbor_pairs = change["neighbor_pairs"]
    if "self_pair_share" in change:
      config.data.self_pair_share = change["self_pair_share"]
    if "neighbors" in change:
      config.objective.neighbors = change["neighbors"]
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(tmp_path), show_progress=False)
  assert not (tmp_path / "metrics.jsonl").exists()


def test_tfds_dataset_trains_under_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  config = get_config("swav")
  config.data.name = "tfds:mnist"
  config.model.encoder = "cnn"
  config.train.num_steps = 6
  with tfds.testing.mock_data(num_examples=128):
    results = train.train_and_evaluate(config, str(tmp_path),
                                       show_progress=False)
  assert results["data"] == "tfds:mnist:train"
  assert results["num_examples"] == 128


def test_main_command_line(tmp_path):
  """The README's command, with a quick config and an override."""
  out = subprocess.run(
      [sys.executable, "-m", "experiments.main",
       "--config=configs/clam.py:quick", "--config.train.num_steps=12",
       f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
      timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "clam on digits: acc" in out.stdout
  assert "step 12/12" in out.stderr
  assert json.loads((tmp_path / "results.json").read_text())["num_steps"] == 12


def test_cpp_on_precomputed_features(tmp_path):
  """``configs/cpp.py:npy``: CPP's heads on frozen features from a .npz."""
  from clustering import data
  x, y = data.union_of_subspaces(num_examples=400, num_clusters=4, dim=24,
                                 subspace_dim=2, noise=0.02)
  np.savez(tmp_path / "feats.npz", features=x, labels=y)
  config = get_config("cpp", "quick,npy")
  config.data.path = str(tmp_path / "feats.npz")
  config.num_clusters = 4
  results = train.train_and_evaluate(config, str(tmp_path / "run"),
                                     show_progress=False)
  assert results["data"] == "npy:feats.npz" and results["num_examples"] == 400
  assert results["acc"] > 0.5, results  # chance is ~0.25-0.3


def test_icon_on_training_set_neighbour_pairs_and_clam_in_a_latent(tmp_path):
  # I-Con supervised by kNN pairs mined over the whole training set (150
  # steps: after the quick config's 30 its ACC is 0.24-0.31 by seed).
  config = get_config("icon")
  config.objective.neighbors = "input"
  config.train.update(dict(num_steps=150, eval_every=150))
  res = train.train_and_evaluate(config, str(tmp_path / "icon"),
                                 show_progress=False)
  assert res["acc"] > 0.3, res
  # ClAM's memories in an autoencoder latent, after a reconstruction phase.
  config = get_config("clam")
  config.model.update(dict(encoder="mlp", hidden=(64,), z_dim=8))
  config.objective.update(dict(warmup_steps=10, standardize=False,
                               representation="autoencoder",
                               neighbors="none", clam_weight=1.0))
  res = train.train_and_evaluate(config, str(tmp_path / "clam"),
                                 show_progress=False)
  assert res["acc"] > 0.3, res
  records = [json.loads(line) for line in
             (tmp_path / "clam" / "metrics.jsonl").read_text().splitlines()]
  phases = {r["phase"] for r in records if "phase" in r}
  assert phases == {"pretrain", "cluster"}


@pytest.mark.parametrize("method,cluster_term", [
    ("soft_kmeans", "soft_kmeans"), ("clam", "completion_mse")])
def test_prototypes_in_a_tcr_embedding(method, cluster_term, tmp_path):
  # DKM / ClAM with their space learned by MLC's TCR on augmented views.
  config = get_config(method)
  config.model.encoder = "mlp"
  config.objective.update(dict(representation="tcr", warmup_steps=10))
  res = train.train_and_evaluate(config, str(tmp_path), show_progress=False)
  assert res["acc"] > 0.3, res
  records = [json.loads(line) for line in
             (tmp_path / "metrics.jsonl").read_text().splitlines()]
  by_phase = {r["phase"]: r for r in records if "phase" in r}
  assert set(by_phase) == {"pretrain", "cluster"}
  assert "tcr" in by_phase["pretrain"] and cluster_term not in by_phase[
      "pretrain"]
  assert {"tcr", cluster_term} <= set(by_phase["cluster"])
  features = np.load(tmp_path / "predictions.npz")["features"]
  np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-4)
  config.objective.representation = "pixels"
  with pytest.raises(ValueError, match="objective.representation"):
    train.train_and_evaluate(config, str(tmp_path / "bad"),
                             show_progress=False)


def test_neighbour_pairs_resume_exactly(tmp_path):
  """A crash after the checkpoint at step 10 replays steps 11-17 with the
  same neighbour pairs: the pairs are a function of (seed, step)."""
  config = get_config("icon")
  config.objective.neighbors = "input"
  config.train.update(dict(num_steps=20, log_every=1))
  train.train_and_evaluate(config, str(tmp_path / "ref"), show_progress=False)
  with pytest.raises(Interrupt):
    train.train_and_evaluate(config, str(tmp_path / "cut"),
                             on_step=stop_at(17, Interrupt),
                             show_progress=False)
  res = train.train_and_evaluate(config, str(tmp_path / "cut"),
                                 show_progress=False)
  assert res["resumed_from"] == 10
  assert losses(str(tmp_path / "cut")) == losses(str(tmp_path / "ref"))
  jax.tree.map(np.testing.assert_array_equal,
               final_state(str(tmp_path / "ref"), 20),
               final_state(str(tmp_path / "cut"), 20))


def test_a_run_stored_with_exact_search_resumes_under_auto(tmp_path,
                                                          monkeypatch):
  """'auto' is 'exact' on a data set this small: the run resumes and ends
  as the uninterrupted one. Where 'auto' means 'ivf' (the limit lowered)
  the same resume is refused after the data are loaded, leaving the
  workdir as it was."""
  from clustering.data import pipeline  # pylint: disable=g-import-not-at-top
  config = get_config("icon")
  config.objective.neighbors = "input"
  config.data.neighbor_search = "exact"
  config.train.update(dict(num_steps=20, log_every=1))
  train.train_and_evaluate(config, str(tmp_path / "ref"), show_progress=False)
  with pytest.raises(Interrupt):
    train.train_and_evaluate(config, str(tmp_path / "cut"),
                             on_step=stop_at(12, Interrupt),
                             show_progress=False)
  config.data.neighbor_search = "auto"
  monkeypatch.setattr(pipeline, "AUTO_EXACT_MAX", 100)
  files = sorted(p.name for p in (tmp_path / "cut").iterdir())
  with pytest.raises(workdir_lib.WorkdirError,
                     match="data.neighbor_search: 'exact' -> 'ivf'"):
    train.train_and_evaluate(config, str(tmp_path / "cut"),
                             show_progress=False)
  assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == files
  monkeypatch.undo()
  res = train.train_and_evaluate(config, str(tmp_path / "cut"),
                                 show_progress=False)
  assert res["resumed_from"] == 10
  assert losses(str(tmp_path / "cut")) == losses(str(tmp_path / "ref"))
