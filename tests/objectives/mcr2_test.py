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


@pytest.mark.parametrize("blocked", [False, True])
def test_coding_length_matches_cpp_formula_and_prefers_true_k(blocked,
                                                              monkeypatch):
  if blocked:  # the row-block path of large n (150 rows: one partial block
    # of 128 and one of 22)
    from objectives import _mcr2  # pylint: disable=g-import-not-at-top
    monkeypatch.setattr(_mcr2, "_HARD_GRAMS_BLOCKED_ABOVE", 0)
    monkeypatch.setattr(_mcr2, "_HARD_GRAMS_BLOCK", 128)
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


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_doubly_stochastic_membership_cpp_gradient_stops_v():
  # CPP's code stops the gradient through the column update v, so with 5
  # half-steps (u, v, u, v, u) Gamma depends on C only through the affinity
  # and the last u, computed from the affinity and a constant v. Here the
  # v's come from a separate float64 NumPy loop and enter as constants.
  n, eta = 8, 0.3
  c = helpers.unit_rows(helpers.normal(10, (n, 3)).astype(np.float64))
  weights = helpers.normal(12, (n, n)).astype(np.float64)

  def np_lse(m, axis):
    top = m.max(axis, keepdims=True)
    return np.log(np.exp(m - top).sum(axis)) + top.squeeze(axis)

  logits = np.abs(c @ c.T) / eta
  u, v = np.zeros(n), np.zeros(n)
  for half_step in range(5):
    if half_step % 2 == 0:
      u = -np.log(n) - np_lse(logits + v[None, :], 1)
    else:
      v = -np.log(n) - np_lse(logits + u[:, None], 0)

  def gamma_given_v(c, v):  # v a constant: no gradient through it
    logits = jnp.abs(c @ c.T) / eta
    u = -jnp.log(n) - jnp.log(jnp.sum(jnp.exp(logits + v[None, :]), axis=1))
    return n * jnp.exp(logits + u[:, None] + v[None, :])

  with jax.enable_x64(True):
    c64, w64, v64 = jnp.asarray(c), jnp.asarray(weights), jnp.asarray(v)
    value, grad = jax.value_and_grad(lambda c: jnp.sum(
        O.doubly_stochastic_membership(c, eta=eta, num_iters=5,
                                       differentiation="cpp") * w64))(c64)
    expected_value, expected_grad = jax.value_and_grad(
        lambda c: jnp.sum(gamma_given_v(c, v64) * w64))(c64)
  assert grad.dtype == jnp.float64
  np.testing.assert_allclose(value, expected_value, rtol=1e-10)
  # The unrolled gradient (through v too) differs from this by ~65%.
  np.testing.assert_allclose(grad, expected_grad, rtol=1e-4,
                             atol=1e-6 * np.abs(expected_grad).max())


def test_vmap_and_jit_no_retrace():
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


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
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
  rounded = (np.float32(z16), np.float32(pi16))
  fns = {
      "coding_rate": lambda z, p: O.coding_rate(z, eps_sq=0.5),
      "compression_rate": lambda z, p: O.compression_rate(z, p, eps_sq=0.5),
      "mcr2_loss": lambda z, p: O.mcr2_loss(z, p, eps_sq=0.5),
  }

  @jax.jit  # one compilation per dtype for all three
  def values_and_grads(z, p):
    return {name: jax.value_and_grad(fn, (0, 1))(z, p)
            for name, fn in fns.items()}

  f32 = values_and_grads(z, pi)
  bf16 = values_and_grads(z16, pi16)
  at_rounded = values_and_grads(*rounded)
  for name in fns:
    (low, low_grads), (value, grads) = bf16[name], f32[name]
    assert low.dtype == jnp.float32, name
    assert all(g.dtype == jnp.bfloat16 for g in low_grads), name
    # Accumulated in float32: the value is the float32 one at the rounded
    # inputs (a bfloat16 computation would be off by ~1e-2).
    np.testing.assert_allclose(low, at_rounded[name][0], rtol=1e-5,
                               err_msg=name)
    if name == "mcr2_loss":
      continue
    np.testing.assert_allclose(low, value, rtol=1e-3, err_msg=name)
    for g16, g in zip(low_grads, grads):
      if np.abs(g).max() > 0:  # coding_rate has no membership gradient
        assert _max_error(g16, g) <= 1.5e-2 * np.abs(g).max(), (
            name, _max_error(g16, g), np.abs(g).max())
  # -R + R_c cancels (|L| ~ 0.05 while R, R_c ~ 3.2; L's z-gradient ~0.01
  # while theirs are ~0.1), so bfloat16's error is relative to the terms:
  # measured 8e-4 on the value (1.2e-4 of |R| + |R_c|) and 4.2e-4 on the
  # z-gradient (2.2e-3 of the terms' max gradients), 4e-3 relative on the
  # membership gradient (R_c's alone). Tolerances: 1e-3 and 1e-2 of the
  # terms' scale.
  (low, low_grads), (value, grads) = bf16["mcr2_loss"], f32["mcr2_loss"]
  (r_value, r_grads), (c_value, c_grads) = (f32["coding_rate"],
                                            f32["compression_rate"])
  value_scale = abs(float(r_value)) + abs(float(c_value))
  assert abs(float(low) - float(value)) <= 1e-3 * value_scale
  z_scale = np.abs(r_grads[0]).max() + np.abs(c_grads[0]).max()
  assert _max_error(low_grads[0], grads[0]) <= 1e-2 * z_scale
  assert _max_error(low_grads[1], grads[1]) <= 1.5e-2 * np.abs(grads[1]).max()


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


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_mcr2_loss_bfloat16_gradient_is_float32_gradient_rounded_once():
  # R's and R_c's gradients are large and nearly cancel: added in bfloat16
  # they lost 2.9% of max|grad|; upcast once, the only error left is the
  # final rounding to bfloat16 (2^-9 relative per entry).
  z16 = helpers.unit_rows(helpers.normal(31, (64, 8))).astype(jnp.bfloat16)
  labels = np.random.default_rng(32).integers(0, 4, 64)
  pi = jnp.asarray(np.eye(4)[labels], jnp.float32)
  grad16 = jax.grad(lambda z: O.mcr2_loss(z, pi, eps_sq=0.5))(z16)
  grad32 = jax.grad(lambda z: O.mcr2_loss(z, pi, eps_sq=0.5))(
      z16.astype(jnp.float32))
  assert grad16.dtype == jnp.bfloat16
  error = np.abs(np.float32(grad16) - np.float32(grad32)).max()
  assert error <= 5e-3 * np.abs(np.float32(grad32)).max(), error
