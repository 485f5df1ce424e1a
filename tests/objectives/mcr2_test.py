import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import objectives as O
from tests.objectives import helpers


def _logdet(m):
  return np.linalg.slogdet(m)[1]


def _ref_rate(z, eps_sq, gamma=1.0):
  z = np.float64(z)
  n, d = z.shape
  return 0.5 * _logdet(np.eye(d) + gamma * d / (n * eps_sq) * z.T @ z)


def _ref_compression(z, pi, eps_sq):
  """The reference repos' formulation, with k explicit n x n diagonals."""
  z, pi = np.float64(z), np.float64(pi)
  n, d = z.shape
  total = 0.0
  for j in range(pi.shape[1]):
    tr = pi[:, j].sum() + 1e-8
    big_pi = np.diag(pi[:, j])
    total += tr / (2 * n) * _logdet(np.eye(d) + d / (tr * eps_sq)
                                    * z.T @ big_pi @ z)
  return total


def _data(seed, n=40, d=6, k=4):
  z = helpers.unit_rows(helpers.normal(seed, (n, d)))
  logits = helpers.normal(seed + 1, (n, k))
  pi = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  return z, pi.astype(np.float32)


def test_rates_match_reference_formulas():
  z, pi = _data(0)
  np.testing.assert_allclose(O.coding_rate(z, eps_sq=0.5), _ref_rate(z, 0.5),
                             rtol=1e-5)
  np.testing.assert_allclose(O.coding_rate(z, eps_sq=0.5, gamma=20.0),
                             _ref_rate(z, 0.5, 20.0), rtol=1e-5)
  np.testing.assert_allclose(O.compression_rate(z, pi, eps_sq=0.5),
                             _ref_compression(z, pi, 0.5), rtol=1e-5)
  expected = -0.05 * _ref_rate(z, 0.5, 20.0) + _ref_compression(z, pi, 0.5)
  np.testing.assert_allclose(
      O.mcr2_loss(z, pi, eps_sq=0.5, gamma_in=20.0, gamma_r=0.05), expected,
      rtol=1e-5, atol=1e-6)


def test_small_batch_uses_sylvester_form():
  z = helpers.unit_rows(helpers.normal(1, (5, 16)))
  np.testing.assert_allclose(O.coding_rate(z, eps_sq=0.1), _ref_rate(z, 0.1),
                             rtol=1e-5)


def test_hand_computed_orthogonal_clusters():
  # Two orthogonal unit vectors, each its own cluster, d = 2, eps_sq = 1:
  # R = 1/2 logdet(I + (2/2) I) = log 2; each cluster: tr = 1,
  # 1/(2*2) * logdet(I + 2 e e^T) = log(3)/4.
  z = np.eye(2, dtype=np.float32)
  pi = np.eye(2, dtype=np.float32)
  np.testing.assert_allclose(O.coding_rate(z, eps_sq=1.0), np.log(2),
                             rtol=1e-6)
  np.testing.assert_allclose(O.compression_rate(z, pi, eps_sq=1.0),
                             2 * np.log(3) / 4, rtol=1e-5)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_many_cluster_path_equals_few_cluster_path():
  z, _ = _data(2, n=30, d=4)
  gamma = np.abs(helpers.normal(3, (30, 30))).astype(np.float32)
  expected = _ref_compression(z, gamma, 0.3)
  np.testing.assert_allclose(O.compression_rate(z, gamma, eps_sq=0.3),
                             expected, rtol=1e-5)
  grams = O.cluster_grams(jnp.asarray(z), jnp.asarray(gamma))
  np.testing.assert_allclose(
      grams, np.einsum("nk,nd,ne->kde", gamma, z, z), rtol=1e-5, atol=1e-6)

  # The hand-written backward pass (k > d) equals autodiff of the formula.
  def straightforward(z, g):
    tr = jnp.sum(g, 0) + 1e-8
    a = jnp.eye(4) + (4 / (tr * 0.3))[:, None, None] * jnp.einsum(
        "nk,nd,ne->kde", g, z, z, precision="highest")
    return jnp.sum(tr * jnp.linalg.slogdet(a)[1]) / (2 * 30)
  ours = jax.grad(lambda z, g: O.compression_rate(z, g, eps_sq=0.3),
                  argnums=(0, 1))(z, gamma)
  ref = jax.grad(straightforward, argnums=(0, 1))(jnp.asarray(z),
                                                   jnp.asarray(gamma))
  for a, b in zip(ours, ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_empty_cluster_contributes_nothing():
  z, _ = _data(4)
  pi = np.zeros((40, 3), np.float32)
  pi[:20, 0] = pi[20:, 1] = 1.0
  value = O.compression_rate(z, pi, eps_sq=0.5)
  np.testing.assert_allclose(value, _ref_compression(z, pi[:, :2], 0.5),
                             rtol=1e-5)
  grad = jax.grad(lambda p: O.compression_rate(z, p, eps_sq=0.5))(pi)
  assert np.all(np.isfinite(grad))


def test_doubly_stochastic_membership_cpp_mode_matches_reference_loop():
  c = helpers.unit_rows(helpers.normal(5, (24, 8)))
  eta = 0.175
  s = np.abs(np.float64(c) @ np.float64(c).T)
  u, v = np.zeros(24), np.zeros(24)
  lse = lambda m, ax: np.log(np.exp(m - m.max(ax, keepdims=True)).sum(ax)) + m.max(ax)
  for i in range(5):  # CPP's SinkhornDistance with max_iter=5, eps=eta
    m = (s + u[:, None] + v[None]) / eta
    if i % 2 == 0:
      u = eta * (np.log(1 / 24) - lse(m, 1)) + u
    else:
      v = eta * (np.log(1 / 24) - lse(m, 0)) + v
  expected = 24 * np.exp((s + u[:, None] + v[None]) / eta)
  gamma = O.doubly_stochastic_membership(c, eta=eta, num_iters=5)
  np.testing.assert_allclose(gamma, expected, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(gamma.sum(1), 1.0, atol=1e-5)
  implicit = O.doubly_stochastic_membership(c, eta=eta,
                                            differentiation="implicit")
  np.testing.assert_allclose(implicit.sum(0), 1.0, atol=1e-4)
  np.testing.assert_allclose(implicit.sum(1), 1.0, atol=1e-4)


def test_coding_length_matches_cpp_formula_and_prefers_true_k():
  rng = np.random.default_rng(6)
  centers = helpers.unit_rows(rng.standard_normal((3, 10)))
  x = np.concatenate([c + 0.05 * rng.standard_normal((50, 10)) for c in centers])
  x = helpers.unit_rows(x).astype(np.float32)
  labels = np.repeat(np.arange(3), 50)

  def ref(x, labels, eps_sq):
    n, d = x.shape
    total = 0.0
    for j in np.unique(labels):
      xj = np.float64(x[labels == j])
      nj = len(xj)
      total += (nj + d) / 2 * _logdet(np.eye(d) + d / (eps_sq * nj) * xj.T @ xj)
      total -= nj * np.log(nj / n)
    return total

  value = O.coding_length(x, labels, eps_sq=0.1)
  np.testing.assert_allclose(value, ref(x, labels, 0.1), rtol=1e-5)
  merged = O.coding_length(x, np.minimum(labels, 1), eps_sq=0.1)
  assert value < merged
  with_empty = O.coding_length(x, labels, eps_sq=0.1, num_clusters=5)
  np.testing.assert_allclose(with_empty, value, rtol=1e-6)
  # Ids outside [0, num_clusters) used to be dropped from the sum.
  for bad in (np.where(labels == 2, 5, labels), np.where(labels == 0, -1,
                                                          labels)):
    with pytest.raises(ValueError, match=r"`labels` must be in \[0, "
                       r"num_clusters=5\); \d+ of \d+ are not"):
      O.coding_length(x, bad, eps_sq=0.1, num_clusters=5)


def test_total_coding_rate_loss():
  views = np.stack([helpers.unit_rows(helpers.normal(s, (16, 5)))
                    for s in (7, 8)])
  mean = views.mean(0)
  cos = (views[0] * views[1]).sum(1).mean()
  expected = -_ref_rate(mean, 0.2) - 0.5 * cos
  np.testing.assert_allclose(
      O.total_coding_rate_loss(views, eps_sq=0.2, invariance_weight=0.5),
      expected, rtol=1e-5)


@pytest.mark.slow
def test_gradients():
  z, pi = _data(9, n=10, d=3, k=2)
  helpers.check_grads_f64(lambda z, p: O.mcr2_loss(z, p, eps_sq=0.5), (z, pi))
  helpers.check_grads_f64(
      lambda z: O.compression_rate(z, jnp.abs(z @ z.T), eps_sq=0.5), (z,))
  c = helpers.unit_rows(helpers.normal(10, (8, 3)))
  weights = helpers.normal(12, (8, 8))
  helpers.check_grads_f64(
      lambda c: jnp.sum(O.doubly_stochastic_membership(
          c, eta=0.3, differentiation="unroll") * weights), (c,))
  # 'cpp' stops the gradient through v on purpose (a biased gradient, as in
  # CPP's code), so it is compared with the unrolled one only for finiteness
  # and sign agreement, not checked against finite differences.
  cpp = jax.grad(lambda c: jnp.sum(O.doubly_stochastic_membership(
      c, eta=0.3) * weights))(c)
  full = jax.grad(lambda c: jnp.sum(O.doubly_stochastic_membership(
      c, eta=0.3, differentiation="unroll") * weights))(c)
  assert np.all(np.isfinite(cpp))
  assert np.sum(cpp * full) > 0


def test_jit_no_retrace_vmap_and_bfloat16():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(z, pi):
    return O.mcr2_loss(z, pi, eps_sq=0.5)

  for seed in range(3):
    loss(*_data(seed))
  z, pi = _data(11)
  eps = jnp.array([0.1, 0.5, 2.0])
  batched = jax.vmap(lambda e: O.mcr2_loss(z, pi, eps_sq=e))(eps)
  for e, value in zip(eps, batched):
    np.testing.assert_allclose(value, O.mcr2_loss(z, pi, eps_sq=e), rtol=1e-5,
                               atol=1e-6)


def _max_error(actual, desired):
  return np.max(np.abs(np.float64(np.asarray(actual, np.float32))
                       - np.float64(np.asarray(desired, np.float32))))


def test_bfloat16_matches_float32():
  # bfloat16 keeps 8 significant bits: rounding an input moves it by up to
  # 2^-8 ~ 4e-3 relative (unit rows stay unit to ~2e-3), and a bfloat16
  # gradient is itself rounded to that precision. Measured on this data
  # (max error / max |float32 value|): coding_rate 4e-5 (value) and 4.4e-3
  # (gradient), compression_rate 2e-4 and 4.2e-3 (both gradients); over
  # seeds 0-3 at most 2.2e-4 and 4.4e-3. Tolerances: 1e-3 on values,
  # 1.5e-2 on gradients (3-5x the measured error).
  z, pi = _data(0)
  z16, pi16 = z.astype(jnp.bfloat16), pi.astype(jnp.bfloat16)
  # What the bfloat16 inputs are, exactly, in float32.
  z_rounded, pi_rounded = np.float32(z16), np.float32(pi16)
  rate = lambda z: O.coding_rate(z, eps_sq=0.5)
  comp = lambda z, p: O.compression_rate(z, p, eps_sq=0.5)
  mcr2 = lambda z, p: O.mcr2_loss(z, p, eps_sq=0.5)
  for fn, args, args16, rounded in (
      (rate, (z,), (z16,), (z_rounded,)),
      (comp, (z, pi), (z16, pi16), (z_rounded, pi_rounded)),
      (mcr2, (z, pi), (z16, pi16), (z_rounded, pi_rounded))):
    argnums = tuple(range(len(args)))
    value, grads = jax.value_and_grad(fn, argnums)(*args)
    low, low_grads = jax.value_and_grad(fn, argnums)(*args16)
    assert low.dtype == jnp.float32
    assert all(g.dtype == jnp.bfloat16 for g in low_grads)
    # Accumulated in float32: the value is the float32 one at the rounded
    # inputs (a bfloat16 computation would be off by ~1e-2).
    np.testing.assert_allclose(low, fn(*rounded), rtol=1e-5)
    if fn is mcr2:
      # -R + R_c cancels (|L| ~ 0.05 while R, R_c ~ 3.2, their gradients
      # ~0.1 vs 0.01 for L's), so the rounding error is relative to the
      # terms: measured 8e-4 on the value (1.2e-4 of |R| + |R_c|) and 4.2e-4
      # on the z-gradient (2.2e-3 of the terms' max gradients); tolerance
      # 1e-3 and 1e-2 of the terms' scale.
      r_value, r_grad = jax.value_and_grad(rate)(z)
      c_value, c_grads = jax.value_and_grad(comp, (0, 1))(z, pi)
      value_scale = abs(float(r_value)) + abs(float(c_value))
      grad_scales = [np.abs(r_grad).max() + np.abs(c_grads[0]).max(),
                     np.abs(c_grads[1]).max()]
      assert abs(float(low) - float(value)) <= 1e-3 * value_scale
      for g16, g, scale in zip(low_grads, grads, grad_scales):
        assert _max_error(g16, g) <= 1e-2 * scale, (_max_error(g16, g), scale)
    else:
      np.testing.assert_allclose(low, value, rtol=1e-3)
      for g16, g in zip(low_grads, grads):
        assert _max_error(g16, g) <= 1.5e-2 * np.abs(g).max(), (
            _max_error(g16, g), np.abs(g).max())


@pytest.mark.parametrize("fn,args,match", [
    (O.coding_rate, (np.zeros((3,), np.float32),), "`z` must have rank 2"),
    (O.compression_rate, (np.zeros((4, 3)), np.zeros((5, 2))), "number of samples"),
    (O.compression_rate, (np.zeros((4, 3)), np.zeros((4,))), "`membership` must have rank 2"),
    (O.coding_length, (np.zeros((4, 3)), np.zeros(4)), "`labels` must be an integer"),
    (O.total_coding_rate_loss, (np.zeros((1, 4, 3)),), "at least 2 views"),
])
def test_bad_input(fn, args, match):
  with pytest.raises(ValueError, match=match):
    fn(*args, eps_sq=0.5) if fn is not O.total_coding_rate_loss else fn(*args)


def test_bad_hyperparameters():
  with pytest.raises(ValueError, match="`eps_sq` must be positive"):
    O.coding_rate(np.ones((3, 2)), eps_sq=0.0)
  with pytest.raises(ValueError, match="`differentiation`"):
    O.doubly_stochastic_membership(np.ones((3, 2)), eta=0.1,
                                   differentiation="magic")


def test_mlc_case_memory_is_o_n_d_squared():
  # Compiled temporaries for k = n clusters stay far below an O(n^2 d)
  # buffer (the reference code's per-cluster n x n diagonals would need far
  # more). Memory analysis is deterministic, not a timing.
  n, d = 512, 16
  z, gamma = jnp.ones((n, d)), jnp.ones((n, n))
  fwd_bwd = jax.grad(lambda z, g: O.compression_rate(z, g, eps_sq=0.5),
                     argnums=(0, 1))
  analysis = jax.jit(fwd_bwd).lower(z, gamma).compile().memory_analysis()
  if analysis is None:
    pytest.skip("this backend reports no memory analysis")
  n2d_bytes = n * n * d * 4
  assert analysis.temp_size_in_bytes < n2d_bytes / 4
