import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import objectives as O
from tests.objectives import helpers


def _log_softmax_np(m):
  m = m - m.max(1, keepdims=True)
  return m - np.log(np.exp(m).sum(1, keepdims=True))


def _sq(x):
  x = np.float64(x)
  return ((x[:, None] - x[None]) ** 2).sum(-1)


def _masked(m):
  m = m.copy()
  np.fill_diagonal(m, -np.inf)
  return m


def _kl(p, q):
  p, q = np.float64(p), np.float64(q)
  mask = p > 0
  return np.sum(np.where(mask, p * (np.log(np.where(mask, p, 1)) - np.log(np.where(mask, q, 1))), 0)) / p.shape[0]


def test_sne_is_gaussian_p_gaussian_q():
  x, y = helpers.normal(0, (20, 6)), helpers.normal(1, (20, 2))
  sigma = np.linspace(0.8, 1.5, 20).astype(np.float32)
  p = np.exp(_log_softmax_np(_masked(-_sq(x) / (2 * sigma[:, None] ** 2))))
  q = np.exp(_log_softmax_np(_masked(-_sq(y))))
  value = O.icon_loss(O.gaussian_kernel(x, sigma=sigma),
                      O.gaussian_kernel(y, sigma=np.sqrt(0.5)))
  np.testing.assert_allclose(value, _kl(p, q), rtol=1e-5)


def test_tsne_is_gaussian_p_student_t_q():
  x, y = helpers.normal(2, (20, 6)), helpers.normal(3, (20, 2))
  p = np.exp(_log_softmax_np(_masked(-_sq(x) / 2)))
  w = 1 / (1 + _sq(y))
  np.fill_diagonal(w, 0)
  q = w / w.sum(1, keepdims=True)
  value = O.icon_loss(O.gaussian_kernel(x), O.student_t_kernel(y))
  np.testing.assert_allclose(value, _kl(p, q), rtol=1e-5)


def _nt_xent(z, tau):
  """SimCLR's loss for stacked views [2B, d] (positive of i is i +- B)."""
  z = np.float64(helpers.unit_rows(z))
  n = z.shape[0]
  sim = _masked(z @ z.T / tau)
  logp = _log_softmax_np(sim)
  pos = (np.arange(n) + n // 2) % n
  return -logp[np.arange(n), pos].mean()


def test_infonce_simclr():
  z = helpers.normal(4, (16, 5))
  tau = 0.5
  view_ids = np.tile(np.arange(8), 2)
  value = O.icon_loss(O.augmentation_kernel(view_ids),
                      O.gaussian_kernel(z, metric="cosine",
                                        sigma=np.sqrt(tau / 2)))
  np.testing.assert_allclose(value, _nt_xent(z, tau), rtol=1e-5)


def test_supcon_equals_kl_plus_entropy():
  z = helpers.normal(5, (18, 4))
  labels = np.repeat(np.arange(3), 6)
  tau = 0.1
  zu = np.float64(helpers.unit_rows(z))
  logp = _log_softmax_np(_masked(zu @ zu.T / tau))
  supcon = 0.0
  for i in range(18):
    pos = [j for j in range(18) if labels[j] == labels[i] and j != i]
    supcon += -np.mean(logp[i, pos])
  supcon /= 18
  kl = O.icon_loss(O.label_kernel(labels),
                   O.gaussian_kernel(z, metric="cosine",
                                     sigma=np.sqrt(tau / 2)))
  entropy = np.log(5.0)  # p is uniform over 5 positives in every row
  np.testing.assert_allclose(kl + entropy, supcon, rtol=1e-5)


def test_probabilistic_kmeans_and_cluster_kernel():
  x = helpers.normal(6, (15, 3))
  logits = helpers.normal(7, (15, 4))
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  q = (probs / probs.sum(0)) @ probs.T
  np.testing.assert_allclose(np.exp(O.cluster_kernel(probs)), q, rtol=1e-5)
  np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-6)
  p = np.exp(_log_softmax_np(_masked(-_sq(x) / 2)))
  value = O.icon_loss(O.gaussian_kernel(x), O.cluster_kernel(probs))
  np.testing.assert_allclose(value, _kl(p, q), rtol=1e-5)


def test_debiased_infonce_clustering():
  x = helpers.normal(8, (12, 3))  # 6 images x 2 views
  view_ids = np.tile(np.arange(6), 2)
  logits = helpers.normal(9, (12, 3))
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  alpha = 0.7
  # Standalone: kNN(3) adjacency plus one walk step, mixed 50/50 with the
  # augmentation indicator, then debiased; q the debiased cluster kernel.
  d = _sq(x)
  np.fill_diagonal(d, np.inf)
  a = np.zeros((12, 12))
  for i in range(12):
    a[i, np.argsort(d[i])[:3]] = 1 / 3
  knn = a + a @ a
  knn /= knn.sum(1, keepdims=True)
  aug = (view_ids[:, None] == view_ids[None]).astype(float)
  np.fill_diagonal(aug, 0)
  aug /= aug.sum(1, keepdims=True)
  p = (1 - alpha) * (0.5 * aug + 0.5 * knn) + alpha / 12
  q = (1 - alpha) * ((probs / probs.sum(0)) @ probs.T) + alpha / 12
  log_p = O.debias(O.mixture_kernel(O.augmentation_kernel(view_ids),
                                    O.knn_kernel(x, k=3, walks=1)),
                   alpha=alpha)
  log_q = O.debias(O.cluster_kernel(probs), alpha=alpha)
  np.testing.assert_allclose(np.exp(log_p), p, rtol=1e-5)
  np.testing.assert_allclose(O.icon_loss(log_p, log_q), _kl(p, q), rtol=1e-5)


def test_hand_computed_kl():
  log_p = np.array([[np.log(0.5), np.log(0.5), -np.inf]], np.float32)
  log_q = np.log(np.array([[0.25, 0.25, 0.5]], np.float32))
  np.testing.assert_allclose(O.icon_loss(log_p, log_q), np.log(2), rtol=1e-6)


def test_label_kernel_singleton_row_is_empty_and_loss_finite():
  labels = np.array([0, 0, 1])
  log_p = O.label_kernel(labels)
  assert np.all(np.isneginf(log_p[2]))
  z = helpers.normal(10, (3, 2))
  value, grad = jax.value_and_grad(
      lambda z: O.icon_loss(log_p, O.gaussian_kernel(z)))(z)
  assert np.isfinite(value) and np.all(np.isfinite(grad))


@pytest.mark.slow
def test_gradients_vmap_and_no_retrace():
  x = helpers.normal(11, (8, 3))
  logits = helpers.normal(12, (8, 3))
  log_p = O.gaussian_kernel(x)
  helpers.check_grads_f64(
      lambda l: O.icon_loss(O.debias(log_p, alpha=0.5),
                            O.debias(O.cluster_kernel(jax.nn.softmax(l)),
                                     alpha=0.5)), (logits,))
  helpers.check_grads_f64(
      lambda y: O.icon_loss(log_p, O.student_t_kernel(y)), (x,))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(x, y, sigma):
    return O.icon_loss(O.gaussian_kernel(x, sigma=sigma),
                       O.gaussian_kernel(y))

  for seed in range(3):
    loss(helpers.normal(seed, (8, 3)), helpers.normal(seed + 3, (8, 2)),
         1.0 + seed)
  sigmas = jnp.array([0.5, 1.0, 2.0])
  batched = jax.vmap(lambda s: O.icon_loss(O.gaussian_kernel(x, sigma=s),
                                           log_p))(sigmas)
  for s, value in zip(sigmas, batched):
    np.testing.assert_allclose(
        value, O.icon_loss(O.gaussian_kernel(x, sigma=s), log_p), rtol=1e-5,
        atol=1e-6)


def _max_error(actual, desired):
  return np.max(np.abs(np.float64(np.asarray(actual, np.float32))
                       - np.float64(np.asarray(desired, np.float32))))


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_bfloat16_matches_float32():
  # bfloat16 keeps 8 significant bits: rounding an input moves it by up to
  # 2^-8 ~ 4e-3 relative, and a bfloat16 gradient is itself rounded so.
  # Measured here (max error / max |float32 value|): the Gaussian kernel's
  # p 3.0e-3, the cluster kernel's q 2.2e-3, icon_loss 5.4e-4 (value) and
  # 2.7e-3 / 3.3e-3 (gradients in x / probs); over seeds 0-4 of this setup
  # at most 3.3e-3 (kernels), 1.5e-3 (value), 5.4e-3 (gradients).
  # Tolerances: 5e-3 on the value, 1e-2 on the kernels, 2e-2 on gradients.
  x = helpers.normal(11, (8, 3))
  probs = np.asarray(jax.nn.softmax(helpers.normal(12, (8, 3))))

  @jax.jit  # one compilation per dtype
  def outputs(x, probs):
    loss = jax.value_and_grad(lambda x, p: O.icon_loss(
        O.gaussian_kernel(x), O.cluster_kernel(p)), (0, 1))(x, probs)
    return (loss, jnp.exp(O.gaussian_kernel(x)),
            jnp.exp(O.cluster_kernel(probs)))

  x16, probs16 = x.astype(jnp.bfloat16), probs.astype(jnp.bfloat16)
  (value, grads), p, q = outputs(x, probs)
  (low, low_grads), low_p, low_q = outputs(x16, probs16)
  # Computed in float32: exactly the float32 result at the rounded inputs
  # (a bfloat16 computation is off by ~1e-2).
  (at_rounded, _), p_at_rounded, q_at_rounded = outputs(np.float32(x16),
                                                        np.float32(probs16))
  assert low.dtype == low_p.dtype == low_q.dtype == jnp.float32
  np.testing.assert_allclose(low, at_rounded, rtol=1e-6)
  np.testing.assert_allclose(low_p, p_at_rounded, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(low_q, q_at_rounded, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(low, value, rtol=5e-3)
  assert _max_error(low_p, p) <= 1e-2 * np.abs(p).max()
  assert _max_error(low_q, q) <= 1e-2 * np.abs(q).max()
  for g16, g in zip(low_grads, grads):
    assert g16.dtype == jnp.bfloat16
    assert _max_error(g16, g) <= 2e-2 * np.abs(g).max(), (
        _max_error(g16, g), np.abs(g).max())


def test_bad_input():
  with pytest.raises(ValueError, match="`metric` must be"):
    O.gaussian_kernel(np.zeros((3, 2)), metric="manhattan")
  with pytest.raises(ValueError, match="`k` must be < n"):
    O.knn_kernel(np.zeros((3, 2)), k=3)
  with pytest.raises(ValueError, match="kernel shapes"):
    O.icon_loss(np.zeros((3, 3)), np.zeros((3, 4)))
  with pytest.raises(ValueError, match="`alpha` must lie in"):
    O.debias(np.zeros((3, 3)), alpha=1.5)
  with pytest.raises(ValueError, match="`labels` must be an integer"):
    O.label_kernel(np.zeros(3))
  with pytest.raises(ValueError, match="at least 2 samples"):
    O.gaussian_kernel(np.zeros((1, 2)))


@pytest.mark.parametrize("weights", [[0.5, 0.6], [1.5, -0.5], [np.nan, 1.0]])
def test_mixture_weights_that_are_not_a_distribution_are_errors(weights):
  a = jnp.log(jnp.array([[0.5, 0.5]]))
  with pytest.raises(ValueError, match="`weights` must be >= 0 and sum to 1"):
    O.mixture_kernel(a, a, weights=jnp.array(weights))
  np.testing.assert_allclose(  # a valid mixture of one kernel is itself
      O.mixture_kernel(a, a, weights=jnp.array([0.3, 0.7])), a, atol=1e-6)
