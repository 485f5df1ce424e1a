import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn

import objectives as O
from tests.objectives import helpers


def _scores(seed, n=60, k=7):
  z = helpers.unit_rows(helpers.normal(seed, (n, 5)))
  c = helpers.unit_rows(helpers.normal(seed + 100, (k, 5)))
  return z @ c.T


def _ott(scores, epsilon, a=None, b=None, tau_a=1.0, tau_b=1.0, **kw):
  geom = geometry.Geometry(cost_matrix=-jnp.asarray(scores), epsilon=epsilon)
  prob = linear_problem.LinearProblem(geom, a=a, b=b, tau_a=tau_a, tau_b=tau_b)
  return ott_sinkhorn.Sinkhorn(**kw)(prob)


def test_fixed_iterations_equal_ott_plan():
  s = _scores(0)
  for eps in (0.05, 0.2):
    ours = O.sinkhorn(s, epsilon=eps, num_iters=20)
    ref = _ott(s, eps, threshold=-1.0, min_iterations=20, max_iterations=20,
               inner_iterations=1)
    np.testing.assert_allclose(ours.plan, ref.matrix, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(ours.f, ref.f / eps, rtol=1e-4, atol=1e-4)


def test_tolerance_mode_matches_converged_ott():
  s = _scores(1)
  a = np.random.default_rng(0).uniform(0.5, 1.5, s.shape[0]).astype(np.float32)
  a /= a.sum()
  ours = O.sinkhorn(s, epsilon=0.05, a=a, tol=1e-5, max_iters=5000)
  ref = _ott(s, 0.05, a=jnp.asarray(a), threshold=1e-6, max_iterations=5000)
  assert bool(ours.converged) and ours.error < 1e-5
  np.testing.assert_allclose(ours.plan.sum(1), a, rtol=1e-4)
  np.testing.assert_allclose(ours.plan.sum(0), np.full(7, 1 / 7), atol=1e-5)
  np.testing.assert_allclose(ours.plan, ref.matrix, atol=2e-6)
  # The reported error is the marginal error of the returned plan.
  np.testing.assert_allclose(
      ours.error, np.abs(ours.plan.sum(0) - 1 / 7).sum(), atol=1e-6)
  assert int(ours.iterations) < 5000
  assert np.all(ours.errors[int(ours.iterations):] == -1)


def test_unbalanced_matches_ott():
  s = _scores(2)
  eps, rho = 0.1, 0.5
  tau = rho / (rho + eps)
  ours = O.sinkhorn(s, epsilon=eps, rho_a=rho, rho_b=rho, num_iters=300)
  ref = _ott(s, eps, tau_a=tau, tau_b=tau, threshold=-1.0,
             min_iterations=300, max_iterations=300, inner_iterations=1)
  np.testing.assert_allclose(ours.plan, ref.matrix, rtol=1e-4, atol=1e-7)
  tol_mode = O.sinkhorn(s, epsilon=eps, rho_a=rho, rho_b=rho, tol=1e-6)
  assert bool(tol_mode.converged)
  np.testing.assert_allclose(tol_mode.plan, ref.matrix, atol=1e-6)


def test_swav_codes_equal_swav_reference():
  s = _scores(3, n=64, k=10)
  codes = O.swav_codes(s, epsilon=0.05, num_iters=3)
  np.testing.assert_allclose(codes, helpers.swav_sinkhorn_reference(s, 0.05, 3), rtol=2e-4,
                             atol=1e-6)
  np.testing.assert_allclose(codes.sum(1), 1.0, atol=1e-4)
  grad = jax.grad(lambda s: jnp.sum(O.swav_codes(s) * np.arange(10.0)))(s)
  assert np.all(grad == 0)


def test_hand_computed_two_by_two():
  # For S = [[1, 0], [0, 1]] and uniform marginals, symmetry gives
  # P = [[p, q], [q, p]] / 2 with p/q = e^{1/eps}.
  eps = 0.5
  out = O.sinkhorn(np.eye(2, dtype=np.float32), epsilon=eps, tol=1e-7)
  ratio = np.exp(1 / eps)
  expected = np.array([[ratio, 1], [1, ratio]]) / (2 * (1 + ratio))
  np.testing.assert_allclose(out.plan, expected, rtol=1e-5)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_implicit_gradient_equals_unrolled_at_convergence():
  s = _scores(4, n=20, k=5)
  w = helpers.normal(5, s.shape)

  def loss(scores, mode, **kw):
    return jnp.sum(O.sinkhorn(scores, epsilon=0.1, differentiation=mode,
                              **kw).plan * w)

  unrolled = jax.grad(loss)(s, "unroll", num_iters=1500)
  implicit = jax.grad(loss)(s, "implicit", tol=1e-6)
  implicit_fixed = jax.grad(loss)(s, "implicit", num_iters=1500)
  assert np.abs(unrolled).max() > 1e-2
  np.testing.assert_allclose(implicit, unrolled, atol=2e-4)
  np.testing.assert_allclose(implicit_fixed, unrolled, atol=2e-4)


@pytest.mark.slow
def test_gradients_check_grads():
  s = _scores(6, n=8, k=3)
  w = helpers.normal(7, s.shape)
  helpers.check_grads_f64(
      lambda s: jnp.sum(O.sinkhorn(s, epsilon=0.3, num_iters=30).plan * w),
      (s,))
  helpers.check_grads_f64(
      lambda s: jnp.sum(O.sinkhorn(s, epsilon=0.3, tol=1e-12,
                                   max_iters=5000).plan * w), (s,),
      atol=1e-5, rtol=1e-5)
  helpers.check_grads_f64(
      lambda s: jnp.sum(O.sinkhorn(s, epsilon=0.3, rho_b=1.0, tol=1e-12,
                                   max_iters=5000).plan * w), (s,),
      atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_gradient_wrt_marginals_implicit_equals_unrolled():
  s = _scores(8, n=10, k=4)
  w = helpers.normal(9, s.shape)
  a = np.full(10, 0.1, np.float32)

  def loss(a, mode, **kw):
    return jnp.sum(O.sinkhorn(s, epsilon=0.2, a=a, differentiation=mode,
                              **kw).plan * w)

  ga = jax.grad(loss)(a, "implicit", tol=1e-6)
  gu = jax.grad(loss)(a, "unroll", num_iters=1000)
  # Marginal gradients are defined up to a constant (sum a = sum b).
  np.testing.assert_allclose(ga - ga.mean(), gu - gu.mean(), atol=2e-3)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_jit_does_not_retrace_and_vmap_over_epsilon():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def solve(s, eps):
    return O.sinkhorn(s, epsilon=eps, tol=1e-4).plan

  for seed in range(3):
    solve(_scores(seed), 0.1 + 0.05 * seed)
  s = _scores(10)
  epsilons = jnp.array([0.05, 0.1, 0.5])
  plans = jax.vmap(lambda e: O.sinkhorn(s, epsilon=e, tol=1e-5).plan)(epsilons)
  for e, plan in zip(epsilons, plans):
    np.testing.assert_allclose(plan, O.sinkhorn(s, epsilon=e, tol=1e-5).plan,
                               atol=1e-6)


def test_bfloat16_and_tiny_epsilon_are_finite():
  s = _scores(11)
  out = O.sinkhorn(s.astype(jnp.bfloat16), epsilon=0.05, num_iters=50)
  assert out.plan.dtype == jnp.float32 and np.all(np.isfinite(out.plan))
  tiny = O.sinkhorn(s, epsilon=1e-4, num_iters=200)
  assert np.all(np.isfinite(tiny.plan)) and np.all(np.isfinite(tiny.f))
  # logits ~ 1e4 leave float32 ~1e-3 relative precision in exp(L + f + g).
  np.testing.assert_allclose(tiny.plan.sum(1), 1 / 60, rtol=2e-3)


# The smallest epsilon in the fast tier; all in the slow one.
@pytest.mark.parametrize("eps", [pytest.param(0.5, marks=pytest.mark.slow),
                                 pytest.param(0.05, marks=pytest.mark.slow),
                                 pytest.param(3e-3, marks=pytest.mark.slow),
                                 1e-4])
@pytest.mark.parametrize("rho", [None, 1.0])
def test_matrix_scaling_blocks_equal_log_domain(eps, rho):
  # Large scores make exp(L) overflow at the smaller epsilons, so the
  # scaling blocks must fall back to the log domain there.
  s = 3.0 * _scores(14, n=50, k=9)
  kw = dict(epsilon=eps, rho_a=rho, rho_b=rho)
  for mode in (dict(num_iters=37), dict(tol=1e-4, max_iters=600)):
    ref = O.sinkhorn(s, scaling_block=0, **kw, **mode)
    for block in (1, 8, 64):
      out = O.sinkhorn(s, scaling_block=block, **kw, **mode)
      # Same iterates up to float32 rounding: the error is a difference of
      # near-equal marginals (~1e-6 absolute noise), and at the smallest
      # epsilon exp(L + f + g) carries ~1e-3 relative error in either form.
      # That noise may move the tolerance crossing by one iteration.
      its = int(out.iterations), int(ref.iterations)
      assert abs(its[0] - its[1]) <= (0 if "num_iters" in mode else 1)
      common = min(its)
      np.testing.assert_allclose(out.errors[:common], ref.errors[:common],
                                 rtol=5e-3, atol=5e-6)
      np.testing.assert_allclose(out.plan, ref.plan, rtol=5e-3,
                                 atol=2e-6 if its[0] == its[1] else 1e-5)
      assert np.all(np.isfinite(out.plan))


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_matrix_scaling_unrolled_gradient_equals_log_domain():
  s = _scores(15, n=20, k=6)
  w = helpers.normal(16, s.shape)
  grads = [jax.grad(lambda s: jnp.sum(O.sinkhorn(
      s, epsilon=0.1, num_iters=25, scaling_block=b).plan * w))(s)
           for b in (0, 10)]
  np.testing.assert_allclose(grads[1], grads[0], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    (dict(scores=np.zeros(5, np.float32), epsilon=0.1), "`scores` must have rank 2"),
    (dict(scores=np.zeros((4, 3), np.int32), epsilon=0.1), "floating-point"),
    (dict(scores=np.zeros((4, 3)), epsilon=0.1, a=np.ones(3) / 3), "`a` must have shape \\(4,\\)"),
    (dict(scores=np.zeros((4, 3)), epsilon=0.1, b=np.ones(4) / 4), "`b` must have shape \\(3,\\)"),
    (dict(scores=np.zeros((4, 3)), epsilon=-1.0), "`epsilon` must be positive"),
    (dict(scores=np.zeros((4, 3)), epsilon=0.1, differentiation="unroll"), "needs a fixed `num_iters`"),
    (dict(scores=np.zeros((4, 3)), epsilon=0.1, num_iters=0), "`num_iters` must be a positive"),
    (dict(scores=np.zeros((4, 3)), epsilon=0.1, scaling_block=-1), "`scaling_block` must be"),
    (dict(scores=np.array([[0., 1.], [-np.inf, -np.inf]]), epsilon=0.1),
     "every row: row 1 is -inf throughout"),
    (dict(scores=np.array([[0., -np.inf], [1., -np.inf]]), epsilon=0.1,
          rho_a=1.0, rho_b=1.0), "every column: column 1 is -inf throughout"),
])
def test_bad_input(kwargs, match):
  scores = kwargs.pop("scores")
  with pytest.raises(ValueError, match=match):
    O.sinkhorn(scores, **kwargs)


def test_implicit_gradient_finite_at_tiny_epsilon():
  s = _scores(12, n=6, k=3)
  w = helpers.normal(13, s.shape)
  grad = jax.grad(lambda s: jnp.sum(
      O.sinkhorn(s, epsilon=1e-4, tol=1e-3).plan * w))(s)
  assert np.all(np.isfinite(grad))


def test_converged_plan_has_both_given_marginals():
  scores = helpers.normal(31, (40, 6))
  a = jax.nn.softmax(helpers.normal(32, (40,)))
  b = jax.nn.softmax(helpers.normal(33, (6,)))
  out = O.sinkhorn(scores, epsilon=0.1, a=a, b=b, tol=1e-6, max_iters=5000)
  assert bool(out.converged)
  # Columns too: the last update makes the rows exact by construction.
  np.testing.assert_allclose(out.plan.sum(0), b, atol=2e-6)
  np.testing.assert_allclose(out.plan.sum(1), a, atol=2e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(a=jnp.array([0.5, 0.0, 0.5])), r"`a` must have positive entries .*"
     r"1 of 3 are <= 0, the first at index 1"),
    (dict(b=jnp.array([1.5, -0.5])), r"`b` must have positive entries"),
    (dict(a=jnp.full((3,), 1.0)), r"equal mass; sum\(a\) = 3, sum\(b\) = 1"),
])
def test_marginals_without_a_plan_are_errors(kwargs, match):
  scores = helpers.normal(34, (3, 2))
  with pytest.raises(ValueError, match=match):
    O.sinkhorn(scores, epsilon=0.1, **kwargs)
  # Unequal masses are fine when the marginals are penalised, not exact.
  if "equal mass" in match:
    out = O.sinkhorn(scores, epsilon=0.1, rho_a=1.0, rho_b=1.0, **kwargs)
    assert np.all(np.isfinite(out.plan))


def test_traced_marginals_are_checked_under_checked():
  scores = helpers.normal(35, (3, 2))
  solve = O.checked(lambda a: O.sinkhorn(scores, epsilon=0.1, a=a).plan)
  np.testing.assert_allclose(solve(jnp.full((3,), 1 / 3)).sum(), 1.0,
                             rtol=1e-5)
  with pytest.raises(ValueError, match="`a` must have positive entries"):
    solve(jnp.array([0.5, 0.0, 0.5]))


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
@pytest.mark.parametrize("ratio", [1e3])
def test_unbalanced_unrolled_gradient_at_large_scores_over_epsilon(ratio):
  # The property tests found NaN gradients here (3 of 18 problems at 1e2,
  # 12 of 18 at 1e3): the matrix-scaling block, computed and then discarded
  # for the log domain, multiplied its inf derivatives by zero cotangents.
  s = _scores(21, n=9, k=5)
  s = s / np.abs(s).max()
  w = helpers.normal(22, s.shape)
  eps = 1.0 / ratio

  def loss(s, w, block):
    return jnp.sum(O.sinkhorn(s, epsilon=eps, rho_a=1.0, rho_b=1.0,
                              num_iters=20, scaling_block=block).plan * w)

  with jax.enable_x64(True):  # the reference: float64, checked by differences
    s64, w64 = (jnp.asarray(np.asarray(x, np.float64)) for x in (s, w))
    ref = jax.grad(loss)(s64, w64, 0)
    direction = jnp.asarray(np.random.default_rng(23).normal(size=s.shape))
    h = 1e-5 * eps
    fd = (loss(s64 + h * direction, w64, 0)
          - loss(s64 - h * direction, w64, 0)) / (2 * h)
    if ratio < 1e4:  # at 1e4, differences of exp(1e4-sized logits) are noise
      np.testing.assert_allclose(jnp.sum(ref * direction), fd, rtol=1e-3)
  scale = np.abs(ref).max()
  for block in (0, 10):
    grad = jax.grad(loss)(s, w, block)
    assert np.all(np.isfinite(grad)), block
    # float32 logits of size `ratio` carry ~ratio * 6e-8 absolute error in
    # every exponent: the tolerance grows with it.
    np.testing.assert_allclose(grad, ref, rtol=0, atol=ratio * 2e-6 * scale)


def test_masked_entries_are_fine_while_every_row_and_column_has_one():
  # -inf masks single pairs (ott-jax's convention for forbidden pairs): the
  # plan is zero there and the rest equals ott-jax's with an infinite cost.
  s = np.asarray(_scores(24, n=8, k=4))
  s[0, 1] = s[3, 2] = -np.inf
  out = O.sinkhorn(s, epsilon=0.1, tol=1e-6, max_iters=2000)
  assert out.plan[0, 1] == 0 and out.plan[3, 2] == 0
  ref = _ott(np.where(np.isinf(s), -1e4, s), 0.1, threshold=1e-6,
             max_iterations=2000)
  np.testing.assert_allclose(out.plan, ref.matrix, atol=1e-6)


@pytest.mark.parametrize("axis_name", [
    None, pytest.param("batch", marks=pytest.mark.slow)])
def test_logsumexp_over_batch_equals_scipy_with_all_minus_inf_columns(
    axis_name):
  from jax.sharding import Mesh, PartitionSpec as P
  from scipy import special
  from objectives import _checks
  x = np.asarray(helpers.normal(25, (8, 4)), np.float32) * 30
  x[:, 1] = -np.inf           # a column with no finite entry
  x[:5, 2] = -np.inf          # finite only on the last devices' rows
  expected = special.logsumexp(np.float64(x), axis=0)
  w = np.asarray(helpers.normal(26, (4,)), np.float32)

  def fn(x):
    return _checks.logsumexp_over_batch(x, axis_name)

  if axis_name:
    mesh = Mesh(np.array(jax.devices()[:4]), ("batch",))
    fn = jax.shard_map(fn, mesh=mesh, in_specs=P("batch"), out_specs=P())
  out = jax.jit(fn)(x)
  np.testing.assert_allclose(out, expected, rtol=1e-6)
  assert out[1] == -np.inf
  grad = jax.grad(lambda x: jnp.sum(jnp.where(
      jnp.isfinite(fn(x)), fn(x), 0.0) * w))(x)
  assert np.all(np.isfinite(grad))
  softmax = np.exp(np.float64(x) - expected)   # d LSE / dx: column softmax
  softmax[:, 1] = 0.0
  np.testing.assert_allclose(grad, softmax * w, rtol=1e-5, atol=1e-7)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_unbalanced_tolerance_mode_runs_under_jit_and_equals_eager():
  # epsilon given as a Python number must stay one under a trace (it was
  # turned into a tracer first and then refused as not concrete).
  s = _scores(27, n=12, k=4)
  kw = dict(epsilon=0.1, rho_a=1.0, rho_b=2.0, tol=1e-6, max_iters=3000)
  eager = O.sinkhorn(s, **kw)
  traced = jax.jit(lambda s: O.sinkhorn(s, **kw).plan)(s)
  np.testing.assert_allclose(traced, eager.plan, rtol=1e-5, atol=1e-8)
  ref = _ott(s, 0.1, tau_a=1.0 / 1.1, tau_b=2.0 / 2.1, threshold=1e-6,
             max_iterations=3000)
  np.testing.assert_allclose(traced, ref.matrix, rtol=1e-3, atol=1e-6)
  with pytest.raises(ValueError, match="`epsilon` must be a concrete"):
    jax.jit(lambda s, e: O.sinkhorn(s, epsilon=e, rho_a=1.0, rho_b=1.0,
                                    tol=1e-6).plan)(s, 0.1)
