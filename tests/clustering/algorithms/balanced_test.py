"""Equal-size assignment of a whole data set in row blocks, against
Sinkhorn written out in NumPy on the whole [n, k] plan."""

import jax
import numpy as np
import pytest
from scipy.special import logsumexp

from clustering.algorithms import balanced


def _numpy_sinkhorn(x, prototypes, epsilon, iters):
  n, k = len(x), len(prototypes)
  s = (x.astype(np.float64) @ prototypes.T) / epsilon
  g = np.zeros(k)
  for _ in range(iters):
    f = -np.log(n) - logsumexp(s + g[None, :], axis=1)
    g = -np.log(k) - logsumexp(s + f[:, None], axis=0)
  return s, g


def _data(n=500, k=6, d=8, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d))
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  p = rng.normal(size=(k, d))
  p /= np.linalg.norm(p, axis=1, keepdims=True)
  return x.astype(np.float32), p.astype(np.float32)


@pytest.mark.parametrize("iters", [1, 3, 30])
def test_potentials_and_labels_equal_sinkhorn_on_the_whole_plan(iters):
  x, p = _data()
  labels, g = balanced.balanced_assignment(x, p, epsilon=0.05,
                                           num_iters=iters, block_size=96)
  s, g_ref = _numpy_sinkhorn(x, p, 0.05, iters)
  np.testing.assert_allclose(g, g_ref, atol=2e-3)
  scores = s + g_ref[None, :]
  top_two = np.sort(scores, axis=1)[:, -2:]
  clear = top_two[:, 1] - top_two[:, 0] > 1e-2
  np.testing.assert_array_equal(labels[clear], np.argmax(scores, 1)[clear])


def test_converged_clusters_are_equally_large():
  x, p = _data(n=600, k=6)
  rng = np.random.default_rng(1)
  crowd = p[0] + 0.3 * rng.normal(size=(400, 8))  # around prototype 0
  x[:400] = crowd / np.linalg.norm(crowd, axis=1, keepdims=True)
  labels, _ = balanced.balanced_assignment(x, p, epsilon=0.01, num_iters=300)
  nearest = np.argmax(x @ p.T, axis=1)
  assert np.bincount(nearest, minlength=6).max() > 300
  np.testing.assert_allclose(np.bincount(labels, minlength=6), 100, atol=10)


def test_blocks_over_eight_devices_equal_one_block_on_one():
  x, p = _data(n=333)
  one = balanced.balanced_assignment(x, p, epsilon=0.1, block_size=4096,
                                     devices=jax.devices()[:1])
  eight = balanced.balanced_assignment(x, p, epsilon=0.1, block_size=40,
                                       devices=jax.devices()[:8])
  np.testing.assert_array_equal(one[0], eight[0])
  np.testing.assert_allclose(one[1], eight[1], atol=1e-5)


def test_bad_inputs():
  x, p = _data()
  with pytest.raises(ValueError, match="share d"):
    balanced.balanced_assignment(x, p[:, :3], epsilon=0.1)
  with pytest.raises(ValueError, match="`epsilon`"):
    balanced.balanced_assignment(x, p, epsilon=0.0)
