r"""Entropic optimal transport between samples and prototypes (Sinkhorn).

Given scores ``S: [n, k]`` (e.g. ``z @ c.T`` of L2-normalised rows), the
entropic OT plan with marginals ``a`` (rows) and ``b`` (columns) is

.. math::
  P = \exp\left(S/\varepsilon + f\,1^\top + 1\,g^\top\right),
  \qquad P 1 = a,\ P^\top 1 = b ,

found by alternating log-domain updates (columns first, then rows, so that
the rows are exact after every iteration, as in SwAV and ott-jax):

.. math::
  g \leftarrow \tau_b\,(\log b - \mathrm{LSE}_i(S/\varepsilon + f)),\qquad
  f \leftarrow \tau_a\,(\log a - \mathrm{LSE}_j(S/\varepsilon + g)).

``tau = 1`` is balanced OT; ``tau = rho / (rho + epsilon)`` relaxes the
marginal constraint to a KL penalty of strength ``rho`` (unbalanced OT).

The same iterates are computed by matrix scaling in blocks: the kernel
``K = exp(S/eps + f + g)`` is formed once per block at the current
potentials, each iteration is then two matrix-vector products
(``u = a / K v``, ``v = b / K^T u``, with the tau exponents), and the
scalings are absorbed back into ``(f, g)`` at the end of the block. This
replaces two ``exp`` passes over ``[n, k]`` per iteration by one per block.
A block whose scalings stray far enough to under/overflow float32 is redone
in the log domain (Schmitzer's absorption, with a log-domain fallback).

Conventions (vs. ott-jax): cost is ``-S``; ott's potentials are in cost units
(``P = exp((f + g - C)/eps)``), ours are divided by ``epsilon``
(``f_ours = f_ott / epsilon``). ott-jax defaults ``epsilon`` to
``0.05 * std(cost)``; here ``epsilon`` is always explicit. The stopping error
is ott's: the L1 column-marginal error for balanced problems, and the L1 norm
of the gradient of the dual for unbalanced ones. It is measured after every
iteration at no extra cost (it falls out of the next column update).

Differentiation: with ``num_iters`` (fixed iteration count, a ``lax.scan``)
gradients are unrolled by default; in tolerance mode (``lax.while_loop``)
they are implicit, obtained by differentiating the optimality conditions at
the returned potentials (exact at convergence; a dense ``k x k`` solve per
backward pass). ``differentiation='implicit'`` is available in both modes.
Implicit gradients flow to ``scores``, ``epsilon``, ``a`` and ``b``.

References:
  Cuturi. Sinkhorn distances: lightspeed computation of optimal transport.
  NeurIPS 2013.
  Caron et al. Unsupervised learning of visual features by contrasting
  cluster assignments (SwAV). NeurIPS 2020.
  Chizat, Peyre, Schmitzer, Vialard. Scaling algorithms for unbalanced
  optimal transport problems. Math. Comp. 2018.
  Cuturi et al. Optimal Transport Tools (OTT): a JAX toolbox. 2022.

Valid ranges (property-tested as in ``tests/objectives/property_test.py``):
balanced problems are finite for ``epsilon`` in [1e-4, 1e4] and scores
scaled by 1e-6 to 1e6 (blocks that leave float32's range are redone in the
log domain). Unbalanced problems (``rho_a``/``rho_b``): values and unrolled
gradients are finite for ``|scores| / epsilon`` up to 1e4 (tested) while the
optimal plan itself fits in float32: its mass grows like
``exp(|scores| / (2 rho))`` (measured: ~2e10 at ``|scores| = 100, rho = 1``,
~1e32 at 300), so keep ``|scores| / rho`` below ~300. A batch of one sample
is fine.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from objectives import _checks


class SinkhornOutput(NamedTuple):
  """Result of :func:`sinkhorn`.

  Attributes:
    plan: ``[n, k]`` transport plan ``exp(S/eps + f_i + g_j)``.
    f: ``[n]`` row potentials (in units of ``1/epsilon``).
    g: ``[k]`` column potentials.
    errors: ``[num_iters]`` or ``[max_iters]`` stopping error after each
      iteration; ``-1`` for iterations that were not run.
    error: the stopping error of the returned plan.
    iterations: number of iterations run.
    converged: ``error < tol`` (in fixed-iteration mode
      it says whether the fixed count happened to reach ``tol``).
  """
  plan: jax.Array
  f: jax.Array
  g: jax.Array
  errors: jax.Array
  error: jax.Array
  iterations: jax.Array
  converged: jax.Array


class _Problem(NamedTuple):
  """Static description of one Sinkhorn problem inside a trace."""
  log_a: jax.Array
  log_b: jax.Array
  tau_a: jax.Array | float
  tau_b: jax.Array | float
  balanced: bool
  axis_name: str | None


def _tau(rho, epsilon):
  if rho is None:
    return 1.0
  return rho / (rho + epsilon)


def _row_lse(logits, g):
  """LSE_j(L_ij + g_j) -> [n] (per-sample, always local)."""
  return _checks.logsumexp(logits + g[None, :], False)


def _col_lse(logits, f, axis_name):
  """LSE_i(L_ij + f_i) -> [k] (per-prototype, reduced over the batch)."""
  return _checks.logsumexp_over_batch(logits + f[:, None], axis_name,
                                      clip_overflow=False)


def _error(prob: _Problem, f, g, lse_row, lse_col, epsilon, rho_a, rho_b):
  """ott-jax's stopping error for the plan with potentials (f, g).

  The row marginal is ``exp(f + lse_row)`` with ``lse_row = LSE_j(L + g)``,
  the column marginal is ``exp(g + lse_col)`` with ``lse_col = LSE_i(L + f)``.
  A diagnostic, never differentiated: where a term overflows (unbalanced
  targets at large ``|scores| / epsilon``) its zero cotangent would
  otherwise meet an infinite derivative and turn the plan's gradient NaN.
  """
  f, g, lse_row, lse_col = jax.lax.stop_gradient((f, g, lse_row, lse_col))
  col_marginal = jnp.exp(g + lse_col)
  if prob.balanced:
    return jnp.sum(jnp.abs(col_marginal - jnp.exp(prob.log_b)))
  # Unbalanced: |grad of the dual| = marginal minus exp(-eps h / rho) target.
  target_b = jnp.exp(prob.log_b) if rho_b is None else jnp.exp(
      prob.log_b - epsilon * g / rho_b)
  target_a = jnp.exp(prob.log_a) if rho_a is None else jnp.exp(
      prob.log_a - epsilon * f / rho_a)
  row_err = jnp.sum(jnp.abs(jnp.exp(f + lse_row) - target_a))
  row_err = _checks.batch_sum(row_err, prob.axis_name)
  return jnp.sum(jnp.abs(col_marginal - target_b)) + row_err


def _iteration(logits, prob: _Problem, epsilon, rho_a, rho_b, carry):
  """One g-then-f update; returns the new carry and the new state's error."""
  f, g, lse_col = carry
  g = prob.tau_b * (prob.log_b - lse_col)
  lse_row = _row_lse(logits, g)
  f = prob.tau_a * (prob.log_a - lse_row)
  lse_col = _col_lse(logits, f, prob.axis_name)
  err = _error(prob, f, g, lse_row, lse_col, epsilon, rho_a, rho_b)
  return (f, g, lse_col), err


def _scaling_iteration(kernel, f_ref, g_ref, prob: _Problem, epsilon, rho_a,
                       rho_b, carry):
  """`_iteration` by matrix scaling: two matrix-vector products, no exp.

  With ``K = exp(L + f_ref + g_ref)``,
  ``LSE_j(L_ij + g_j) = log (K exp(g - g_ref))_i - f_ref_i`` and likewise for
  the columns, so the iterates are exactly the log-domain ones. The carry's
  last entry is the largest ``|f - f_ref|, |g - g_ref|`` seen so far.

  Exponents are clipped and sums floored only where that largest distance
  passes ``_MAX_SCALING_LOG``, i.e. in a block that `_block` redoes in the
  log domain: there the values are discarded, but their derivatives still
  meet the zero cotangents of the branch not taken, and an inf or NaN
  derivative times zero would make the whole gradient NaN.
  """
  f, g, lse_col, stray = carry
  g = prob.tau_b * (prob.log_b - lse_col)
  v = jnp.exp(jnp.clip(g - g_ref, -_CLIP_LOG, _CLIP_LOG))
  lse_row = _safe_log(jnp.matmul(kernel, v,
                                 precision=jax.lax.Precision.HIGHEST)) - f_ref
  f = prob.tau_a * (prob.log_a - lse_row)
  u = jnp.exp(jnp.clip(f - f_ref, -_CLIP_LOG, _CLIP_LOG))
  col = jnp.matmul(u, kernel, precision=jax.lax.Precision.HIGHEST)
  lse_col = _safe_log(_checks.batch_sum(col, prob.axis_name)) - g_ref
  err = _error(prob, f, g, lse_row, lse_col, epsilon, rho_a, rho_b)
  # A diagnostic (pmax has no derivative): gradients stop here.
  df, dg = jax.lax.stop_gradient((f - f_ref, g - g_ref))
  stray = jnp.maximum(stray, jnp.maximum(
      _checks.batch_max(jnp.max(jnp.abs(df)), prob.axis_name),
      jnp.max(jnp.abs(dg))))
  return (f, g, lse_col, stray), err


def _safe_log(x):
  """log(x) for x >= 0 with a finite derivative: x is floored at the
  smallest normal number (log = -87 in float32, far past the stray limit)."""
  return jnp.log(jnp.maximum(x, jnp.finfo(x.dtype).tiny))


# A block is redone in the log domain when a scaling strays this far (in
# nats) from the kernel's reference potentials: beyond it, products of
# kernel entries and scalings approach float32's under/overflow.
_MAX_SCALING_LOG = 30.0
# Scalings are clipped here (past the stray limit, so only in blocks that are
# redone): exp(60) * exp(30)-sized kernel sums stay finite in float32.
_CLIP_LOG = 2 * _MAX_SCALING_LOG


def _block(logits, prob: _Problem, epsilon, rho_a, rho_b, state, *, length,
           limit, tol, scaling):
  """Runs up to `length` iterations (stopping at `limit` or below `tol`).

  `state` is ``((f, g, lse_col), iterations, done)``; returns the new state
  and the ``[length]`` errors (-1 where no iteration ran). With `scaling`,
  the block forms the kernel ``exp(L + f + g')`` once (``g'`` the next
  column update, so every column of the kernel sums to its marginal) and
  iterates by matrix scaling; if any scaling over/underflows or strays past
  ``_MAX_SCALING_LOG`` the block is redone in the log domain, so the result
  never depends on float32's exponent range.
  """

  def run(step, state):
    def body(c, _):
      carry, it, done = c
      new, err = step(carry)
      active = jnp.logical_and(jnp.logical_not(done), it < limit)
      carry = jax.tree.map(lambda n, o: jnp.where(active, n, o), new, carry)
      if tol is not None:
        done = jnp.logical_or(done, jnp.logical_and(active, err < tol))
      return (carry, it + active.astype(it.dtype), done), jnp.where(
          active, err, -jnp.ones_like(err))
    return jax.lax.scan(body, state, None, length=length)

  log_domain = functools.partial(_iteration, logits, prob, epsilon, rho_a,
                                 rho_b)
  if not scaling:
    return run(log_domain, state)
  (f, g, lse_col), it, done = state
  f_ref = f
  g_ref = prob.tau_b * (prob.log_b - lse_col)
  log_kernel = logits + f_ref[:, None] + g_ref[None, :]
  kernel = jnp.exp(jnp.minimum(log_kernel, _CLIP_LOG))
  stray0 = jnp.zeros((), f.dtype)
  ((f_new, g_new, lse_new, stray), it_new, done_new), errors = run(
      functools.partial(_scaling_iteration, kernel, f_ref, g_ref, prob,
                        epsilon, rho_a, rho_b), ((f, g, lse_col, stray0), it, done))
  scaled = ((f_new, g_new, lse_new), it_new, done_new)
  bad = jnp.logical_not(
      (stray < _MAX_SCALING_LOG)
      & (jnp.max(log_kernel) < _CLIP_LOG)
      & jnp.all(jnp.isfinite(lse_new)) & jnp.all(jnp.isfinite(errors)))
  # Every device takes the same branch (the log-domain one has collectives).
  bad = _checks.batch_sum(bad.astype(jnp.int32), prob.axis_name) > 0
  return jax.lax.cond(bad, lambda: run(log_domain, state),
                      lambda: (scaled, errors))


def _solve(logits, prob: _Problem, epsilon, rho_a, rho_b, *, tol, max_iters,
           num_iters, block):
  """Runs Sinkhorn; returns (f, g, errors, error, iterations).

  Iterations run in blocks of `block` (0: one log-domain iteration at a
  time); the stopping test is per iteration, so the result is that of the
  iteration-by-iteration algorithm whatever the block size.
  """
  n, k = logits.shape
  # f0 derives from `logits` so that under shard_map it is per-device
  # (varying) like every later f; g is replicated (its sums are psum-reduced).
  f0 = jnp.zeros_like(logits[:, 0])
  g0 = jnp.zeros((k,), logits.dtype)
  carry = (f0, g0, _col_lse(logits, f0, prob.axis_name))
  limit = num_iters if num_iters is not None else max_iters
  length = min(block, limit) if block else 1
  num_blocks = -(-limit // length)
  run_block = functools.partial(
      _block, logits, prob, epsilon, rho_a, rho_b, length=length, limit=limit,
      tol=None if num_iters is not None else tol, scaling=bool(block))
  state = (carry, jnp.asarray(0, jnp.int32), jnp.asarray(False))

  if num_iters is not None:
    state, errors = jax.lax.scan(lambda s, _: run_block(s), state, None,
                                 length=num_blocks)
    (f, g, _), _, _ = state
    errors = errors.reshape(-1)[:num_iters]
    return f, g, errors, errors[-1], jnp.asarray(num_iters, jnp.int32)

  def cond(loop):
    (_, it, done), _, _ = loop
    return jnp.logical_and(it < max_iters, jnp.logical_not(done))

  def body(loop):
    state, errors, b = loop
    state, block_errors = run_block(state)
    errors = jax.lax.dynamic_update_slice(errors, block_errors, (b * length,))
    return state, errors, b + 1

  errors = -jnp.ones((num_blocks * length,), logits.dtype)
  state, errors, _ = jax.lax.while_loop(
      cond, body, (state, errors, jnp.asarray(0, jnp.int32)))
  ((f, g, _), it, _) = state
  errors = errors[:max_iters]
  error = errors[jnp.maximum(it - 1, 0)]
  return f, g, errors, error, it


def _implicit_vjp_core(logits, f, g, log_a, log_b, tau_a, tau_b, balanced,
                       axis_name, f_bar, g_bar):
  """Cotangents of (logits, a, b) from those of the potentials (f, g).

  At the fixed point, the linearised optimality conditions read
  ``H [df; dg] = [r*da/a; c*db/b] - [rowsum(P*dL); colsum(P*dL)]`` with
  ``H = [[diag(r/tau_a), P], [P^T, diag(c/tau_b)]]`` (``r, c`` the plan's
  row and column marginals). We solve ``H [x; y] = [f_bar; g_bar]`` by
  eliminating the per-sample block (its sums over samples are psum-reduced
  under `axis_name`), which leaves a dense ``k x k`` system. For balanced
  problems ``H`` has the null vector ``(1, -1)`` (the potentials' gauge); a
  rank-one term pins it without changing plan gradients, and a relative
  ridge of 1e-6 keeps block-separated supports (tiny epsilon) solvable.
  """
  plan = jnp.exp(logits + f[:, None] + g[None, :])
  rows = jnp.sum(plan, axis=1)
  cols = _checks.batch_sum(jnp.sum(plan, axis=0), axis_name)
  h_row = rows / tau_a
  h_col = cols / tau_b
  scaled = plan / h_row[:, None]
  schur = jnp.diag(h_col) - _checks.batch_sum(
      jnp.matmul(plan.T, scaled, precision=jax.lax.Precision.HIGHEST),
      axis_name)
  rhs = g_bar - _checks.batch_sum(scaled.T @ f_bar, axis_name)
  if balanced:
    schur = schur + jnp.mean(h_col)
  # At tiny epsilon the plan's support can split into blocks, making the
  # system singular beyond the gauge; a relative ridge keeps it solvable.
  schur = schur + 1e-6 * jnp.mean(h_col) * jnp.eye(schur.shape[0],
                                                    dtype=schur.dtype)
  y = jnp.linalg.solve(schur, rhs)
  x = (f_bar - plan @ y) / h_row
  logits_bar = -plan * (x[:, None] + y[None, :])
  a_bar = x * rows / jnp.exp(log_a)
  b_bar = y * cols / jnp.exp(log_b)
  return logits_bar, a_bar, b_bar


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _implicit_potentials(logits, a, b, tau_a, tau_b, static, epsilon, rhos):
  balanced, axis_name, tol, max_iters, num_iters, block = static
  prob = _Problem(jnp.log(a), jnp.log(b), tau_a, tau_b, balanced, axis_name)
  return _solve(jax.lax.stop_gradient(logits), prob, epsilon, *rhos, tol=tol,
                max_iters=max_iters, num_iters=num_iters, block=block)


def _implicit_fwd(logits, a, b, tau_a, tau_b, static, epsilon, rhos):
  out = _implicit_potentials(logits, a, b, tau_a, tau_b, static, epsilon, rhos)
  return out, (logits, a, b, tau_a, tau_b, out[0], out[1])


def _implicit_bwd(static, epsilon, rhos, residuals, cotangents):
  del epsilon, rhos
  balanced, axis_name = static[0], static[1]
  logits, a, b, tau_a, tau_b, f, g = residuals
  logits_bar, a_bar, b_bar = _implicit_vjp_core(
      logits, f, g, jnp.log(a), jnp.log(b), tau_a, tau_b, balanced, axis_name,
      cotangents[0], cotangents[1])
  # tau (through rho and epsilon) is held fixed by the implicit gradient.
  return (logits_bar, a_bar, b_bar, jnp.zeros_like(tau_a),
          jnp.zeros_like(tau_b))


_implicit_potentials.defvjp(_implicit_fwd, _implicit_bwd)


def _marginal(weights, like, name, axis_name):
  """The marginal for the axis of `like` ([size]), uniform when None.

  The default is built from `like` so that under shard_map a per-sample
  marginal is per-device (varying), as the rows of `scores` are.
  """
  size = like.shape[0]
  if weights is None:
    count = _checks.global_count(size, axis_name, like.dtype)
    return jnp.ones_like(like) / count
  weights = _checks.float_array(weights, name, f"[{size}]", rank=1)
  if weights.shape[0] != size:
    raise ValueError(
        f"`{name}` must have shape ({size},) to match `scores`, got "
        f"{weights.shape}.")
  _checks.positive_entries(weights, name)
  return weights.astype(like.dtype)


def _check_equal_mass(a, b) -> None:
  """Balanced OT needs sum(a) == sum(b); checked when both are concrete."""
  total_a, total_b = (_checks.concrete_array(m) for m in (a, b))
  if total_a is None or total_b is None:
    return
  total_a, total_b = float(total_a.sum()), float(total_b.sum())
  if abs(total_a - total_b) > 1e-4 * max(total_a, total_b):
    raise ValueError(
        f"balanced Sinkhorn needs `a` and `b` of equal mass; sum(a) = "
        f"{total_a:.6g}, sum(b) = {total_b:.6g}. Rescale one, or set "
        "rho_a/rho_b for unbalanced transport.")


def sinkhorn(scores: jax.typing.ArrayLike,
             *,
             epsilon: jax.typing.ArrayLike,
             a: jax.typing.ArrayLike | None = None,
             b: jax.typing.ArrayLike | None = None,
             tol: float = 1e-3,
             max_iters: int = 1000,
             num_iters: int | None = None,
             rho_a: float | None = None,
             rho_b: float | None = None,
             differentiation: str | None = None,
             scaling_block: int = 10,
             axis_name: str | None = None) -> SinkhornOutput:
  r"""Entropic OT plan between samples (rows) and prototypes (columns).

  Args:
    scores: ``[n, k]`` similarities (higher = closer); the cost is ``-scores``.
      Rows are samples (the local shard under `axis_name`).
    epsilon: entropic regularisation ``> 0`` in the units of `scores`.
      Tested in [1e-4, 1e4] (see the module's valid ranges): the log domain
      never overflows, but very small values (``< 1e-3 * range(scores)``)
      need many iterations; unbalanced problems also need
      ``|scores| / rho`` below ~300 (the plan's mass overflows beyond).
    a: ``[n]`` row marginal, positive entries (default uniform ``1/n``
      over the global batch).
    b: ``[k]`` column marginal, positive entries (default uniform ``1/k``);
      a balanced problem needs ``sum(a) == sum(b)`` (checked when concrete).
    tol: stop when the L1 marginal error is below this (tolerance mode).
    max_iters: iteration cap in tolerance mode.
    num_iters: if given, run exactly this many iterations in a ``lax.scan``
      (for training steps; reverse-mode differentiable by unrolling).
    rho_a: KL penalty on the row marginal (None = exact constraint).
    rho_b: KL penalty on the column marginal (None = exact constraint).
    differentiation: ``'unroll'`` (default with `num_iters`) or
      ``'implicit'`` (default in tolerance mode, the only option there).
    scaling_block: iterations per block of exp-domain matrix scaling (one
      ``exp`` of the ``[n, k]`` kernel per block, then two matrix-vector
      products per iteration, instead of two ``exp`` passes per iteration
      in the log domain). A block whose scalings leave a safe range is
      redone in the log domain, so small epsilons stay exact. ``0`` runs
      the log domain throughout (cheaper under ``vmap``, where both
      branches of the fallback are evaluated). The iterates, the stopping
      iteration and the result do not depend on it.
    axis_name: mapped axis over which samples are sharded; per-prototype sums
      and the default ``1/n`` are reduced over it (SwAV's distributed
      Sinkhorn), per-sample sums stay local.

  Returns:
    A :class:`SinkhornOutput`. ``plan.sum(1) == a`` exactly (balanced rows)
    and ``plan.sum(0) ~= b`` to ``error``.

  Raises:
    ValueError: for a non-2D or non-float `scores`, mismatched marginals,
      non-positive hyperparameters or an impossible differentiation mode.

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import objectives as O
    >>> scores = jnp.array([[1., 0.], [1., 0.], [0., 1.], [1., 0.]])
    >>> out = O.sinkhorn(scores, epsilon=0.1, tol=1e-6)
    >>> print(np.asarray(out.plan.sum(axis=0)).round(4), bool(out.converged))
    [0.5 0.5] True
  """
  scores = _checks.float_array(scores, "scores", "[n, k]", rank=2,
                               allow_neg_inf=True)
  _checks.nonempty(scores, "scores", 0, "samples (rows)")
  _checks.nonempty(scores, "scores", 1, "prototypes (columns)")
  # Columns are reduced over the devices: a local shard may miss one.
  _checks.every_row_and_column_reachable(scores, "scores",
                                         columns=axis_name is None)
  _checks.positive(epsilon, "epsilon")
  if rho_a is not None:
    _checks.positive(rho_a, "rho_a")
  if rho_b is not None:
    _checks.positive(rho_b, "rho_b")
  if num_iters is not None:
    num_iters = _checks.positive_int(num_iters, "num_iters")
  else:
    max_iters = _checks.positive_int(max_iters, "max_iters")
  if not isinstance(scaling_block, int) or scaling_block < 0:
    raise ValueError("`scaling_block` must be a non-negative int, got "
                     f"{scaling_block!r}.")
  if differentiation is None:
    differentiation = "unroll" if num_iters is not None else "implicit"
  if differentiation not in ("unroll", "implicit"):
    raise ValueError(
        f"`differentiation` must be 'unroll' or 'implicit', got "
        f"{differentiation!r}.")
  if differentiation == "unroll" and num_iters is None:
    raise ValueError(
        "`differentiation='unroll'` needs a fixed `num_iters` (a while loop "
        "cannot be reverse-differentiated); use 'implicit' with `tol`.")

  n, k = scores.shape
  dtype = scores.dtype
  a = _marginal(a, scores[:, 0], "a", axis_name)
  b = _marginal(b, jnp.zeros((k,), dtype), "b", None)
  epsilon_value = epsilon  # a Python number stays one (the implicit mode's)
  epsilon = jnp.asarray(epsilon, dtype)
  logits = scores / epsilon
  tau_a = _tau(rho_a, epsilon)
  tau_b = _tau(rho_b, epsilon)
  balanced = rho_a is None and rho_b is None
  if balanced and axis_name is None:  # (a sharded `a` sums per shard)
    _check_equal_mass(a, b)

  if differentiation == "unroll":
    prob = _Problem(jnp.log(a), jnp.log(b), tau_a, tau_b, balanced, axis_name)
    f, g, errors, error, iterations = _solve(
        logits, prob, epsilon, rho_a, rho_b, tol=tol, max_iters=max_iters,
        num_iters=num_iters, block=scaling_block)
  else:
    # The error needs epsilon and rho as plain values; they enter the
    # custom-VJP function as non-differentiable arguments, so they must be
    # concrete (epsilon's gradient still flows through `logits`).
    for name, value in (("epsilon", epsilon_value), ("rho_a", rho_a),
                        ("rho_b", rho_b)):
      if isinstance(value, jax.core.Tracer) and not balanced:
        raise ValueError(
            f"`{name}` must be a concrete number for implicit differentiation "
            "of unbalanced Sinkhorn; use num_iters with 'unroll' to trace it.")
    static = (balanced, axis_name, tol, max_iters, num_iters, scaling_block)
    f, g, errors, error, iterations = _implicit_potentials(
        logits, a, b, jnp.asarray(tau_a, dtype), jnp.asarray(tau_b, dtype),
        static, None if balanced else float(epsilon_value), (rho_a, rho_b))
  plan = jnp.exp(logits + f[:, None] + g[None, :])
  return SinkhornOutput(plan=plan, f=f, g=g, errors=errors, error=error,
                        iterations=iterations, converged=error < tol)


def swav_codes(scores: jax.typing.ArrayLike,
               *,
               epsilon: float = 0.05,
               num_iters: int = 3,
               axis_name: str | None = None) -> jax.Array:
  r"""SwAV's soft cluster codes: Sinkhorn with a fixed iteration count.

  Equal to SwAV's ``distributed_sinkhorn``: ``Q = exp(S/eps)``, then
  ``num_iters`` times normalise each prototype's total to ``1/k`` and each
  sample's total to ``1/n``, and finally scale by ``n`` so each sample's
  codes (a row) sum to 1. No gradient flows through the codes.

  Args:
    scores: ``[n, k]`` sample-prototype scores (rows are samples; the local
      shard under `axis_name`).
    epsilon: SwAV's ``epsilon`` (0.05).
    num_iters: SwAV's ``sinkhorn_iterations`` (3).
    axis_name: mapped axis; prototype sums and ``n`` are global, as in
      SwAV's distributed version.

  Returns:
    ``[n, k]`` codes with rows summing to 1.

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import objectives as O
    >>> scores = jnp.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    >>> codes = O.swav_codes(scores, epsilon=0.05, num_iters=3)
    >>> print(np.asarray(codes.sum(axis=1)).round(4), codes.argmax(axis=1))
    [1. 1. 1. 1.] [0 0 1 1]
  """
  scores = jax.lax.stop_gradient(
      _checks.float_array(scores, "scores", "[n, k]", rank=2,
                          allow_neg_inf=True))
  out = sinkhorn(scores, epsilon=epsilon, num_iters=num_iters,
                 axis_name=axis_name)
  n_global = _checks.global_count(scores.shape[0], axis_name, out.plan.dtype)
  return jax.lax.stop_gradient(out.plan * n_global)
