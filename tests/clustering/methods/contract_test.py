"""The method contract: hyperparameters read once, phases, assignment."""

import numpy as np
import pytest
from scipy.special import logsumexp

import clustering
from clustering import methods
from clustering.algorithms import spectral
from clustering.methods import mcr2
from configs import clam as clam_config
from configs import mcr2 as mcr2_config


def test_hyperparameters_are_read_once_into_a_frozen_container():
  config = mcr2_config.get_config()
  method = methods.get("mcr2").from_config(config)
  assert method.hp.eta == config.objective.eta
  with pytest.raises(Exception):  # frozen
    method.hp.eta = 1.0
  assert [tuple(p[:2]) for p in method.phases] == [
      ("warmup", 0), ("cluster", config.objective.warmup_steps)]
  assert method.estimates_num_clusters
  assert not methods.get("swav").estimates_num_clusters


def test_unknown_missing_and_bad_hyperparameters_are_named():
  config = mcr2_config.get_config()
  with config.unlocked():
    config.objective.etaa = 0.1
  with pytest.raises(ValueError, match="objective.etaa is not a field"):
    methods.get("mcr2").from_config(config)
  config = mcr2_config.get_config()
  del config.objective["eta"]
  with pytest.raises(ValueError, match="objective.eta is missing"):
    methods.get("mcr2").from_config(config)
  config = mcr2_config.get_config()
  config.objective.differentiation = "backprop"
  with pytest.raises(ValueError, match="objective.differentiation"):
    methods.get("mcr2").from_config(config)
  config = mcr2_config.get_config()
  config.model.encoder = "vit"
  with pytest.raises(ValueError, match="Unknown model.encoder 'vit'"):
    methods.get("mcr2").from_config(config)
  config = clam_config.get_config("pixels")
  config.model.encoder = "resnet18"
  with pytest.raises(ValueError, match="clam runs on the inputs"):
    methods.get("clam").from_config(config)


def test_evaluation_membership_is_the_converged_plan_without_its_diagonal():
  rng = np.random.default_rng(0)
  c = rng.normal(size=(60, 5))
  c /= np.linalg.norm(c, axis=1, keepdims=True)
  m = mcr2.evaluation_membership(c.astype(np.float32), eta=0.1)
  assert m.converged and m.error < mcr2.MEMBERSHIP_TOL
  # Standalone float64 Sinkhorn on |C C^T| with marginals 1/n, to the end.
  log_k = np.abs(c @ c.T) / 0.1
  f, g = np.zeros(60), np.zeros(60)
  for _ in range(5000):
    f = -np.log(60) - logsumexp(log_k + g[None, :], axis=1)
    g = -np.log(60) - logsumexp(log_k + f[:, None], axis=0)
  gamma = 60 * np.exp(log_k + f[:, None] + g[None, :])
  np.fill_diagonal(gamma, 0.0)
  np.testing.assert_allclose(m.gamma, gamma, atol=2e-4)
  assert np.all(np.diag(m.gamma) == 0)


def test_nonconverged_membership_is_reported(monkeypatch):
  monkeypatch.setattr(mcr2, "MEMBERSHIP_MAX_ITERS", 2)
  rng = np.random.default_rng(1)
  c = rng.normal(size=(37, 3)).astype(np.float32)  # a fresh shape: retrace
  labels, info = mcr2.assign(c, 3, eta=0.01)
  assert info == dict(membership_converged=False, membership_iterations=2,
                      membership_error=pytest.approx(info["membership_error"]),
                      membership_eta=0.01, membership_anchors=37)
  assert info["membership_error"] > mcr2.MEMBERSHIP_TOL
  assert labels.shape == (37,)


def test_estimator_and_method_assign_by_the_same_rule():
  rng = np.random.default_rng(2)
  centres = rng.normal(size=(4, 8)) * 3
  x = (centres[np.arange(120) % 4] + rng.normal(size=(120, 8))).astype(
      np.float32)
  est = clustering.MCR2Clustering(n_clusters=4, eta=0.1, center=False,
                                  random_state=0).fit(x)
  labels, info = mcr2.assign(est.embedding_, 4, eta=0.1, seed=est._seed())
  np.testing.assert_array_equal(est.labels_, labels)
  assert est.converged_ == info["membership_converged"]
  # The rule itself: spectral clustering of Gamma of the unit rows.
  gamma = mcr2.evaluation_membership(est.embedding_, eta=0.1).gamma
  np.testing.assert_array_equal(
      labels, spectral.spectral_clustering(gamma, 4, seed=est._seed()))
