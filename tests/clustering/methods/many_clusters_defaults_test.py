"""MLC/CPP's defaults for many clusters: ``eta`` is set at 10 clusters and
sharpened so that a row of ``Gamma`` keeps the same share of its mass on its
own cluster at any ``k``, and the assignment's anchors grow with ``k``."""

import numpy as np
import pytest
from scipy.special import logsumexp

import objectives as O
from clustering.algorithms import metrics
from clustering.methods import mcr2
from configs import cpp as cpp_config
from configs import mcr2 as mcr2_config


def _own_cluster_mass(num_clusters, per_cluster, eta, iters=20):
  """Float64 Sinkhorn (uniform marginals) on ``|C C^T| / eta`` for one-hot
  cluster features: the mean share of a row's mass on its own cluster."""
  truth = np.repeat(np.arange(num_clusters), per_cluster)
  c = np.eye(num_clusters)[truth]
  n = len(c)
  log_k = np.abs(c @ c.T) / eta
  f, g = np.zeros(n), np.zeros(n)
  for _ in range(iters):
    f = -np.log(n) - logsumexp(log_k + g[None, :], axis=1)
    g = -np.log(n) - logsumexp(log_k + f[:, None], axis=0)
  gamma = n * np.exp(log_k + f[:, None] + g[None, :])
  same = truth[:, None] == truth[None, :]
  return float((gamma * same).sum(1).mean()), gamma


@pytest.mark.parametrize("eta", [0.175, 0.15])
def test_rows_keep_the_reference_share_on_their_own_cluster(eta):
  reference, _ = _own_cluster_mass(10, 4, eta)
  # CPP's 0.175 puts 97% of a row on its own cluster at 10 clusters.
  if eta == 0.175:
    assert reference == pytest.approx(0.9712, abs=1e-4)
  for k in (30, 100, 300):
    scaled, _ = _own_cluster_mass(k, 3, mcr2.membership_eta(eta, k))
    assert scaled == pytest.approx(reference, abs=1e-9)
    fixed, _ = _own_cluster_mass(k, 3, eta)
    # What the scaling prevents: at a fixed eta the blocks blur with k.
    assert fixed < reference - (0.2 if k == 300 else 1e-3)


def test_the_library_membership_has_the_same_share():
  # The training membership (CPP's 5 half-steps) and the float64 one agree
  # for balanced clusters, so the share holds in training too.
  k, per = 100, 4
  eta = mcr2.membership_eta(0.175, k)
  c = np.eye(128, dtype=np.float32)[np.repeat(np.arange(k), per)]
  gamma = np.asarray(O.doubly_stochastic_membership(c, eta=eta,
                                                    num_iters=5))
  _, expected = _own_cluster_mass(k, per, eta)
  np.testing.assert_allclose(gamma, expected, atol=1e-4)


def test_values_by_hand():
  assert mcr2.membership_eta(0.175, 10) == 0.175
  assert mcr2.membership_eta(0.175, 3) == 0.175  # never blurred below 10
  assert mcr2.membership_eta(0.175, 100) == pytest.approx(
      1 / (1 / 0.175 + np.log(11)))
  assert mcr2.membership_eta(0.175, 100) == pytest.approx(0.1233, abs=1e-4)
  assert mcr2.membership_eta(0.175, 1000) == pytest.approx(0.0959, abs=1e-4)
  assert mcr2.membership_eta(0.2, 21, reference_clusters=5) == pytest.approx(
      1 / (5 + np.log(5)))


@pytest.mark.parametrize("eta,reference", [(0.0, 10), (-1.0, 10),
                                           (0.1, 1)])
def test_bad_arguments(eta, reference):
  with pytest.raises(ValueError, match="eta"):
    mcr2.membership_eta(eta, 100, reference_clusters=reference)


@pytest.mark.parametrize("module,eta", [(cpp_config, 0.175),
                                        (mcr2_config, 0.15)])
def test_the_recipes_scale_eta_with_num_clusters(module, eta):
  config = module.get_config("quick")
  config.num_clusters = 1000
  method = mcr2.MCR2.from_config(config)
  assert method.hp.eta == eta
  assert method.eta == pytest.approx(1 / (1 / eta + np.log(999 / 9)))
  config.objective.eta_scaling = "none"
  assert mcr2.MCR2.from_config(config).eta == eta
  config.num_clusters = 10
  config.objective.eta_scaling = "num_clusters"
  assert mcr2.MCR2.from_config(config).eta == eta


def test_assignment_reports_the_eta_it_used():
  rng = np.random.default_rng(0)
  c = rng.normal(size=(60, 8)).astype(np.float32)
  c /= np.linalg.norm(c, axis=1, keepdims=True)
  _, info = mcr2.assign(c, 3, eta=0.123)
  assert info["membership_eta"] == pytest.approx(0.123)
  _, info = mcr2.assign(c, 3, eta=0.123, num_anchors=20)
  assert info["membership_eta"] == pytest.approx(0.123)


def test_unknown_eta_scaling_fails_before_training():
  config = cpp_config.get_config("quick")
  config.objective.eta_scaling = "log"
  with pytest.raises(ValueError, match="objective.eta_scaling"):
    mcr2.MCR2.from_config(config)


def test_anchors_grow_with_the_number_of_clusters():
  config = cpp_config.get_config("quick")
  assert mcr2.MCR2.from_config(config).num_anchors == 4096  # 10 clusters
  config.num_clusters = 1000
  assert mcr2.MCR2.from_config(config).num_anchors == 8000
  config.objective.anchors_per_cluster = 0
  assert mcr2.MCR2.from_config(config).num_anchors == 4096
  config.objective.anchors_per_cluster = -1
  with pytest.raises(ValueError, match="objective.anchors_per_cluster"):
    mcr2.MCR2.from_config(config)


def test_eight_anchors_per_cluster_keep_clusters_two_merge_them():
  # 60 separated clusters: with two anchors a cluster is often merged by
  # the anchors' cut, with eight it is found.
  rng = np.random.default_rng(0)
  k, n = 60, 3000
  truth = np.arange(n) % k
  c = rng.normal(size=(k, 64))[truth] + 0.8 * rng.normal(size=(n, 64))
  c = (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)
  eta = mcr2.membership_eta(0.175, k)
  few, _ = mcr2.assign(c, k, eta=eta, num_anchors=2 * k)
  enough, _ = mcr2.assign(c, k, eta=eta, num_anchors=8 * k)
  assert metrics.hungarian_accuracy(truth, few) < 0.9
  assert metrics.hungarian_accuracy(truth, enough) > 0.98


@pytest.mark.parametrize("head_eta,expected", [
    (None, 1 / (1 / 0.175 + np.log(29 / 9))), (0.2, 0.2)])
def test_estimator_head_eta_default_scales_too(monkeypatch, head_eta,
                                               expected):
  import clustering  # pylint: disable=g-import-not-at-top
  seen = []
  loss = mcr2.mlc_loss

  def recording_loss(*args, **kwargs):
    seen.append(kwargs["eta"])
    return loss(*args, **kwargs)

  monkeypatch.setattr(mcr2, "mlc_loss", recording_loss)
  x = np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)
  clustering.MCR2Clustering(n_clusters=30, learn_head=True, max_iter=2,
                            batch_size=32, head_eta=head_eta,
                            random_state=0).fit(x)
  assert seen and seen[0] == pytest.approx(expected)


def test_estimator_cuts_at_least_eight_anchors_per_cluster(monkeypatch):
  import clustering  # pylint: disable=g-import-not-at-top
  seen = []
  assign = mcr2.assign

  def recording_assign(*args, **kwargs):
    seen.append(kwargs["num_anchors"])
    return assign(*args, **kwargs)

  monkeypatch.setattr(mcr2, "assign", recording_assign)
  x = np.random.default_rng(0).normal(size=(400, 6)).astype(np.float32)
  for k, n_anchors in ((20, 100), (5, 100), (20, None)):
    clustering.MCR2Clustering(n_clusters=k, n_anchors=n_anchors,
                              random_state=0).fit(x)
  assert seen == [160, 100, None]
