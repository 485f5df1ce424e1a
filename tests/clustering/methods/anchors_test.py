"""MLC/CPP's assignment above ``membership_anchors`` samples: the anchors'
``Gamma`` cut and carried to every sample, without an ``n x n`` matrix."""

import jax
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.special import softmax

from clustering.algorithms import metrics
from clustering.methods import mcr2


def _unit(x):
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clusters(n, k, dim, *, noise, seed):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(k, dim))
  truth = np.arange(n) % k
  return _unit(centres[truth] + noise * rng.normal(size=(n, dim))), truth


def _numpy_column_potentials(c, eta, iters=5000):
  """Float64 Sinkhorn on ``|C C^T| / eta`` with uniform marginals."""
  m = len(c)
  log_k = np.abs(c @ c.T).astype(np.float64) / eta
  f, g = np.zeros(m), np.zeros(m)
  for _ in range(iters):
    f = -np.log(m) - logsumexp(log_k + g[None, :], axis=1)
    g = -np.log(m) - logsumexp(log_k + f[:, None], axis=0)
  f = -np.log(m) - logsumexp(log_k + g[None, :], axis=1)  # rows exact
  return log_k, f, g


def test_each_sample_joins_the_anchor_cluster_holding_most_of_its_row():
  c, _ = _clusters(90, 3, 6, noise=1.0, seed=0)
  eta = 0.2
  anchored = mcr2.anchored_membership(c, eta=eta, num_anchors=40, seed=3)
  assert anchored.anchors.shape == (40,)
  assert len(np.unique(anchored.anchors)) == 40
  anchor_c = c[anchored.anchors]
  log_k, f, g = _numpy_column_potentials(anchor_c, eta)
  # A sample's row of the plan against the anchors: its potential is set by
  # its own marginal, the columns' by the anchors' Sinkhorn.
  rows = softmax(np.abs(c.astype(np.float64) @ anchor_c.T) / eta + g, axis=1)
  anchor_labels = np.random.default_rng(0).integers(0, 3, size=40)
  mass = rows @ np.eye(3)[anchor_labels]
  top_two = np.sort(mass, axis=1)[:, -2:]
  clear = top_two[:, 1] - top_two[:, 0] > 1e-3  # no float32 ties
  labels = mcr2.extend_to_all(c, anchored, anchor_labels, 3, eta=eta,
                              block_size=32)
  assert clear.sum() > 60
  np.testing.assert_array_equal(labels[clear], np.argmax(mass, 1)[clear])
  # The anchors' own rows are their rows of the dense plan, m P (diagonal
  # included): the extension agrees with the Sinkhorn it extends.
  plan_rows = 40 * np.exp(log_k + f[:, None] + g[None, :])
  np.testing.assert_allclose(rows[anchored.anchors], plan_rows, atol=1e-6)
  np.fill_diagonal(plan_rows, 0.0)
  np.testing.assert_allclose(anchored.membership.gamma, plan_rows, atol=2e-4)


def test_blocks_sharded_over_eight_devices_equal_one_device():
  c, _ = _clusters(301, 4, 8, noise=1.5, seed=1)
  anchored = mcr2.anchored_membership(c, eta=0.1, num_anchors=64, seed=0)
  anchor_labels = np.arange(64) % 4
  one = mcr2.extend_to_all(c, anchored, anchor_labels, 4, eta=0.1,
                           block_size=100, devices=jax.devices()[:1])
  eight = mcr2.extend_to_all(c, anchored, anchor_labels, 4, eta=0.1,
                             block_size=100, devices=jax.devices()[:8])
  assert len(jax.devices()) == 8
  np.testing.assert_array_equal(one, eight)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_anchored_assignment_matches_the_dense_one():
  c, truth = _clusters(1500, 6, 12, noise=0.4, seed=2)
  dense, dense_info = mcr2.assign(c, 6, eta=0.1, seed=0)
  anchored, info = mcr2.assign(c, 6, eta=0.1, seed=0, num_anchors=300)
  assert dense_info["membership_anchors"] == 1500
  assert info["membership_anchors"] == 300 and info["membership_converged"]
  acc_dense = metrics.hungarian_accuracy(truth, dense)
  assert acc_dense > 0.95
  assert metrics.hungarian_accuracy(truth, anchored) >= acc_dense - 0.01
  assert metrics.hungarian_accuracy(dense, anchored) >= 0.995
  # Up to num_anchors samples the cut is the dense one, exactly.
  same, _ = mcr2.assign(c, 6, eta=0.1, seed=0, num_anchors=1500)
  np.testing.assert_array_equal(same, dense)


@pytest.mark.slow
def test_number_of_clusters_estimate_on_anchors():
  rng = np.random.default_rng(4)
  centres = rng.normal(size=(4, 16))
  truth = np.arange(600) % 4
  c = _unit(centres[truth] + 0.15 * rng.normal(size=(600, 16)))
  z = _unit(centres[truth] @ rng.normal(size=(16, 16))
            + 0.3 * rng.normal(size=(600, 16)))
  membership = mcr2.membership_of(c, eta=0.1, num_anchors=150, seed=0)
  assert isinstance(membership, mcr2.AnchoredMembership)
  estimate = mcr2.estimate_num_clusters(membership, c, z, (3, 4, 6),
                                        eta=0.1, eps_sq=0.1)
  assert estimate["num_clusters"] == 4
  lengths = estimate["coding_length"]
  # A cut of the anchors into more clusters than the data has can leave
  # some empty once carried to every sample: the same partition, the same
  # length, and the smaller k is chosen.
  assert lengths[4] < lengths[3] and lengths[4] <= lengths[6]


def test_membership_anchors_must_be_at_least_two():
  from configs import mcr2 as mcr2_config  # pylint: disable=g-import-not-at-top
  from clustering import methods  # pylint: disable=g-import-not-at-top
  config = mcr2_config.get_config()
  config.objective.membership_anchors = 1
  with pytest.raises(ValueError, match="membership_anchors"):
    methods.get("mcr2").from_config(config)
