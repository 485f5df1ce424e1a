import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import objectives as O
from tests.objectives import helpers


def _ref_evolve(x, rho, beta, alpha, steps, mask):
  v = np.float64(x).copy()
  rho = np.float64(rho)
  for _ in range(steps):
    d = ((v[:, None] - rho[None]) ** 2).sum(-1)
    logits = -0.5 * beta * d
    w = np.exp(logits - logits.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    v = v + alpha * mask * (w @ rho - v)
  return v


def test_evolve_and_loss_match_float64_formula():
  x, rho = helpers.normal(0, (30, 4)), helpers.normal(1, (5, 4))
  mask = (np.random.default_rng(2).uniform(size=x.shape) < 0.2).astype(np.float32)
  np.testing.assert_allclose(
      O.am_evolve(x, rho, beta=1.5, mask=mask),
      _ref_evolve(x, rho, 1.5, 0.1, 10, mask), rtol=1e-5, atol=1e-6)
  start = np.where(mask > 0, 0.0, x)
  v = _ref_evolve(start, rho, 1.9, 0.1, 10, mask)
  expected = (mask * (x - v) ** 2).mean()
  np.testing.assert_allclose(O.clam_loss(x, rho, mask, beta=1.9), expected,
                             rtol=1e-5)


def test_step_is_gradient_descent_on_energy():
  x, rho = helpers.normal(3, (6, 3)), helpers.normal(4, (4, 3))
  grad_e = jax.grad(lambda v: jnp.sum(O.am_energy(v, rho, beta=2.4)))(x)
  one_step = O.am_evolve(x, rho, beta=2.4, alpha=0.1, num_steps=1)
  np.testing.assert_allclose(one_step, x - 0.1 * grad_e, rtol=1e-5, atol=1e-6)
  # Energy decreases along the dynamics.
  energies = [O.am_energy(O.am_evolve(x, rho, beta=2.4, num_steps=t), rho,
                          beta=2.4).sum() for t in (1, 5, 20)]
  assert energies[0] >= energies[1] >= energies[2]


def test_hand_computed_single_memory():
  # One memory: softmax is 1, so v_T = rho + (1 - alpha)^T (v_0 - rho).
  x = np.array([[2.0, -1.0]], np.float32)
  rho = np.array([[0.0, 1.0]], np.float32)
  v = O.am_evolve(x, rho, beta=1.1, alpha=0.1, num_steps=10)
  np.testing.assert_allclose(v, rho + 0.9**10 * (x - rho), rtol=1e-5)


def test_never_nan_for_huge_beta_distance():
  x = 100.0 * helpers.normal(5, (8, 4))
  rho = helpers.normal(6, (3, 4))
  mask = np.ones_like(x)
  loss, grad = jax.value_and_grad(
      lambda r: O.clam_loss(x, r, mask, beta=1e4))(rho)
  assert np.isfinite(loss) and np.all(np.isfinite(grad))
  labels = O.am_assignments(x, rho, beta=1e4)
  assert labels.dtype == jnp.int32 and labels.shape == (8,)


def test_huge_beta_sends_every_point_to_its_nearest_memory():
  # Memories 4 apart (corners of a simplex); points anywhere around them.
  memories = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0], [0, 0, 4]],
                      np.float32)
  x = np.random.default_rng(14).uniform(-1, 5, (200, 3)).astype(np.float32)
  d2 = ((np.float64(x)[:, None] - memories[None]) ** 2).sum(-1)
  labels = np.argmin(d2, axis=1)
  second = np.sort(d2, axis=1)[:, 1]
  # Keep points whose runner-up is at least 0.05 farther (squared): its
  # softmax weight is then below exp(-1e4 / 2 * 0.05) = exp(-250). Along the
  # segment to the nearest memory that gap only grows (it is affine in v
  # and >= 16 at the memory), so the softmax stays one-hot at every step.
  keep = second - d2[np.arange(len(x)), labels] > 0.05
  x, labels = x[keep][:40], labels[keep][:40]
  assert len(x) == 40 and set(labels) == {0, 1, 2, 3}
  nearest = memories[labels]
  # One-hot dynamics: v <- v + alpha (m - v), so
  # v_T = m + (1 - alpha)^T (x - m).
  np.testing.assert_allclose(
      O.am_evolve(x, memories, beta=1e4, alpha=0.1, num_steps=10),
      nearest + 0.9**10 * (x - nearest), rtol=1e-5, atol=1e-5)
  # Run to convergence (0.5^30 * 6 < 1e-8): every point is its memory.
  np.testing.assert_allclose(
      O.am_evolve(x, memories, beta=1e4, alpha=0.5, num_steps=30), nearest,
      rtol=0, atol=1e-5)
  np.testing.assert_array_equal(O.am_assignments(x, memories, beta=1e4),
                                labels)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_gradients_vmap_and_no_retrace():
  x, rho = helpers.normal(7, (6, 3)), helpers.normal(8, (3, 3))
  mask = np.zeros_like(x)
  mask[:, 0] = 1.0
  helpers.check_grads_f64(
      lambda r: O.clam_loss(x, r, mask, beta=1.5, num_steps=4), (rho,))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(x, rho, beta):
    return O.clam_loss(x, rho, mask, beta=beta)

  for seed in range(3):
    loss(helpers.normal(seed, (6, 3)), helpers.normal(seed + 5, (3, 3)),
         1.1 + seed)
  betas = jnp.array([1.1, 1.5, 1.9, 2.4])
  batched = jax.vmap(lambda b: O.clam_loss(x, rho, mask, beta=b))(betas)
  for b, value in zip(betas, batched):
    np.testing.assert_allclose(value, O.clam_loss(x, rho, mask, beta=b),
                               rtol=1e-5)


def _max_error(actual, desired):
  return np.max(np.abs(np.float64(np.asarray(actual, np.float32))
                       - np.float64(np.asarray(desired, np.float32))))


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_bfloat16_matches_float32():
  # bfloat16 keeps 8 significant bits: rounding an input moves it by up to
  # 2^-8 ~ 4e-3 relative, and a bfloat16 gradient is itself rounded so.
  # Measured here (max error / max |float32 value|): clam_loss 1.5e-3
  # (value), 1.9e-3 / 2.9e-3 (gradients in x / memories); am_evolve's
  # states 1.0e-3 and the gradients of a weighted sum of them 1.9e-3 /
  # 2.0e-3. Over seeds 0-4 of this setup at most 3.7e-3 (values), 2.4e-3
  # (states) and 1.2e-2 (gradients). Tolerances: 1e-2 on values and
  # states, 3e-2 on gradients.
  x, rho = helpers.normal(7, (6, 3)), helpers.normal(8, (3, 3))
  mask = np.zeros_like(x)
  mask[:, 0] = 1.0
  weights = helpers.normal(20, (6, 3))

  @jax.jit  # one compilation per dtype
  def outputs(x, rho):
    loss = jax.value_and_grad(
        lambda x, r: O.clam_loss(x, r, mask, beta=1.5), (0, 1))(x, rho)
    evolve = lambda x, r: O.am_evolve(x, r, beta=1.5)
    evolved_grads = jax.grad(lambda x, r: jnp.sum(evolve(x, r) * weights),
                             (0, 1))(x, rho)
    return loss, evolve(x, rho), evolved_grads

  x16, rho16 = x.astype(jnp.bfloat16), rho.astype(jnp.bfloat16)
  (value, grads), states, evolved_grads = outputs(x, rho)
  (low, low_grads), low_states, low_evolved_grads = outputs(x16, rho16)
  # Computed in float32: exactly the float32 result at the rounded inputs.
  (at_rounded, _), states_at_rounded, _ = outputs(np.float32(x16),
                                                  np.float32(rho16))
  assert low.dtype == jnp.float32
  np.testing.assert_allclose(low, at_rounded, rtol=1e-6)
  np.testing.assert_allclose(low_states, states_at_rounded, rtol=1e-6,
                             atol=1e-7)
  np.testing.assert_allclose(low, value, rtol=1e-2)
  assert _max_error(low_states, states) <= 1e-2 * np.abs(states).max()
  for g16, g in zip(low_grads + low_evolved_grads, grads + evolved_grads):
    assert g16.dtype == jnp.bfloat16
    assert _max_error(g16, g) <= 3e-2 * np.abs(g).max(), (
        _max_error(g16, g), np.abs(g).max())


def test_bad_input():
  x, rho = np.zeros((4, 3), np.float32), np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match="`mask` must have the shape of `x`"):
    O.clam_loss(x, rho, np.ones((4, 2)), beta=1.0)
  with pytest.raises(ValueError, match="feature dimension"):
    O.am_evolve(x, np.zeros((2, 4)), beta=1.0)
  with pytest.raises(ValueError, match="`beta` must be positive"):
    O.am_evolve(x, rho, beta=0.0)
  with pytest.raises(ValueError, match="`num_steps` must be a positive"):
    O.am_evolve(x, rho, beta=1.0, num_steps=0)


def test_jit_huge_logits_do_not_nan():
  # Under jit XLA may fuse `-(beta/2) * d - max(...)` into an FMA whose
  # rounding differs from the reduced maximum by > 1e7 at logits ~1e15;
  # a plain softmax then returns 0/0. Ours pins the maximum to exp(0).
  x = 1e6 * helpers.normal(13, (6, 4))
  loss, grad = jax.jit(jax.value_and_grad(
      lambda r: O.clam_loss(x, r, np.ones_like(x), beta=1e4)))(x[:2] + 0.1)
  assert np.isfinite(loss) and np.all(np.isfinite(grad))
  assert np.isfinite(jax.jit(lambda x: O.soft_kmeans_loss(
      x, x[:2] + 1.0, temperature=1e-4))(x))
