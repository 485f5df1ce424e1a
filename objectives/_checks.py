"""Trace-time validation shared by every objective.

Shapes and dtypes are static under `jax.jit`, so these checks run once per
trace and cost nothing at run time. Values (temperatures, epsilons) are only
checked when they are concrete Python/NumPy numbers: under `vmap` or `jit`
they may be tracers, and then the documented valid range is the caller's
contract.

NaN/Inf in array inputs: a concrete (eagerly passed) array is checked
always. Inside `jit` the values are not known at trace time; checking them
there is opt-in, because it adds a reduction per input: :func:`checked`
runs a function under `jax.experimental.checkify` with the checks on and
raises the same ``ValueError`` naming the argument.
"""

from __future__ import annotations

import contextlib
import functools
import re
from typing import Callable, Sequence

import jax
from jax.experimental import checkify
import jax.numpy as jnp
import numpy as np

_TRACED_CHECKS = [False]  # on while `checked` traces a function


@contextlib.contextmanager
def _traced_checks():
  previous = _TRACED_CHECKS[0]
  _TRACED_CHECKS[0] = True
  try:
    yield
  finally:
    _TRACED_CHECKS[0] = previous


def checked(fn: Callable) -> Callable:
  """``fn`` (jitted) with NaN/Inf checks of every objective's array inputs.

  ``O.checked(loss_fn)(params, x)`` returns what ``jax.jit(loss_fn)`` does,
  or raises ``ValueError("`z` contains NaN or +-Inf ...")`` naming the first
  offending argument. Wrap the function itself, not an already jitted one
  (whose cached trace has no checks). Costs one reduction per input.

  Examples:
    >>> import jax.numpy as jnp
    >>> import objectives as O
    >>> loss = O.checked(
    ...     lambda x: O.soft_kmeans_loss(x, x[:2], temperature=1.0))
    >>> try:
    ...   loss(jnp.array([[0.], [jnp.nan], [1.]]))
    ... except ValueError as e:
    ...   print(e)
    `x` contains NaN or +-Inf values.
  """
  checked_fn = jax.jit(checkify.checkify(fn))

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    with _traced_checks():
      error, out = checked_fn(*args, **kwargs)
    message = error.get()
    if message:
      # Drop checkify's location suffix, whose wording varies by JAX version.
      raise ValueError(re.split(r" \((?:`check`|check) failed", message)[0])
    return out

  return wrapper


def _check_finite(x, name: str, allow_neg_inf: bool) -> None:
  bad = jnp.isnan(x) | (x == jnp.inf) if allow_neg_inf else ~jnp.isfinite(x)
  what = "NaN or +Inf" if allow_neg_inf else "NaN or +-Inf"
  # Under a trace (jit, scan, vmap) even a concrete `x` gives a traced `bad`.
  if isinstance(bad, jax.core.Tracer):
    if _TRACED_CHECKS[0]:
      checkify.check(~jnp.any(bad), f"`{name}` contains {what} values.")
    return
  bad = np.asarray(bad)
  if bad.any():
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(f"`{name}` contains {what} values ({int(bad.sum())} of "
                     f"{bad.size}; the first at index {first}).")


def compute_dtype(dtype) -> jnp.dtype:
  """Dtype used for accumulation: at least float32 (bf16/f16 are upcast)."""
  dtype = jnp.dtype(dtype)
  if jnp.finfo(dtype).bits < 32:
    return jnp.dtype(jnp.float32)
  return dtype


def float_array(x, name: str, shape: str, rank: int | None = None, *,
                allow_neg_inf: bool = False) -> jax.Array:
  """Returns `x` as a floating array in its compute dtype, after checks.

  Args:
    x: array-like input.
    name: the argument's name, used in error messages.
    shape: the documented shape, e.g. ``"[n, d]"``, used in error messages.
    rank: required rank, or None to accept any.
    allow_neg_inf: -Inf is a legal value (log-probabilities, masked scores).

  Raises:
    ValueError: if `x` is not floating point, has the wrong rank, or (when
      concrete, or under :func:`checked`) holds NaN/Inf.
  """
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(
        f"`{name}` must be a floating-point array of shape {shape}, got dtype "
        f"{x.dtype} (cast it with .astype(jnp.float32))."
    )
  if rank is not None and x.ndim != rank:
    raise ValueError(
        f"`{name}` must have rank {rank} (shape {shape}), got shape {x.shape}."
    )
  _check_finite(x, name, allow_neg_inf)
  return x.astype(compute_dtype(x.dtype))


def int_array(x, name: str, shape: str, rank: int | None = None) -> jax.Array:
  """Returns `x` as an integer array after checking dtype and rank."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise ValueError(
        f"`{name}` must be an integer array of shape {shape}, got dtype {x.dtype}."
    )
  if rank is not None and x.ndim != rank:
    raise ValueError(
        f"`{name}` must have rank {rank} (shape {shape}), got shape {x.shape}."
    )
  return x


def same_size(sizes: Sequence[tuple[str, int]], what: str) -> None:
  """Raises if the named sizes differ; `what` names the shared dimension."""
  values = {size for _, size in sizes}
  if len(values) > 1:
    listed = ", ".join(f"`{name}` has {size}" for name, size in sizes)
    raise ValueError(f"Mismatched {what}: {listed}.")


def nonempty(x: jax.Array, name: str, axis: int, what: str) -> None:
  if x.shape[axis] == 0:
    raise ValueError(f"`{name}` has no {what} (shape {x.shape}).")


def _concrete(value):
  try:
    return np.asarray(value, dtype=np.float64)
  except (TypeError, jax.errors.TracerArrayConversionError,
          jax.errors.ConcretizationTypeError):
    return None


def concrete_array(x) -> np.ndarray | None:
  """``x`` as a NumPy array when it has a value now (not under a trace)."""
  if isinstance(x, jax.core.Tracer):
    return None
  return _concrete(x)


def positive_entries(x: jax.Array, name: str) -> None:
  """Raises if an array has an entry <= 0 (under :func:`checked` too)."""
  if isinstance(x, jax.core.Tracer):
    if _TRACED_CHECKS[0]:
      checkify.check(jnp.all(x > 0), f"`{name}` must have positive entries.")
    return
  bad = np.asarray(x) <= 0
  if bad.any():
    raise ValueError(
        f"`{name}` must have positive entries (a zero or negative mass has "
        f"no transport plan); {int(bad.sum())} of {bad.size} are <= 0, the "
        f"first at index {int(np.argmax(bad))}.")


def every_row_and_column_reachable(x: jax.Array, name: str, *,
                                   columns: bool = True) -> None:
  """Raises if a row (or, with `columns`, a column) of ``[n, k]`` scores is
  -inf throughout: that sample (prototype) can send (receive) no mass, so no
  transport plan exists. Under :func:`checked` too."""
  if isinstance(x, jax.core.Tracer):
    if _TRACED_CHECKS[0]:
      checkify.check(jnp.all(jnp.any(x > -jnp.inf, axis=1)),
                     f"`{name}` must have a finite entry in every row.")
      if columns:
        checkify.check(jnp.all(jnp.any(x > -jnp.inf, axis=0)),
                       f"`{name}` must have a finite entry in every column.")
    return
  finite = np.asarray(x) > -np.inf
  for axis, what, label in ((1, "row", "sample"), (0, "column", "prototype")):
    if axis == 0 and not columns:
      continue
    empty = ~finite.any(axis=axis)
    if empty.any():
      raise ValueError(
          f"`{name}` must have a finite entry in every {what}: {what} "
          f"{int(np.argmax(empty))} is -inf throughout ({int(empty.sum())} "
          f"such), so its {label} can take no mass and no plan exists.")


def ids_in_range(ids: jax.Array, name: str, count: int) -> None:
  """Raises if integer ids fall outside ``[0, count)`` (one-hot would drop
  them silently); under :func:`checked` too."""
  if isinstance(ids, jax.core.Tracer):
    if _TRACED_CHECKS[0]:
      checkify.check(jnp.all((ids >= 0) & (ids < count)),
                     f"`{name}` must be in [0, {count}).")
    return
  ids = np.asarray(ids).reshape(-1)
  bad = (ids < 0) | (ids >= count)
  if bad.any():
    first = int(np.argmax(bad))
    raise ValueError(
        f"`{name}` must be in [0, num_clusters={count}); {int(bad.sum())} "
        f"of {bad.size} are not, the first at index {first} ({ids[first]}).")


def positive(value, name: str, *, allow_inf: bool = False) -> None:
  """Raises if a concrete `value` is not > 0 (and finite unless allowed)."""
  if isinstance(value, jax.core.Tracer):
    return
  v = _concrete(value)
  if v is None:
    return
  ok = np.all(v > 0) and (allow_inf or np.all(np.isfinite(v)))
  if not ok:
    raise ValueError(f"`{name}` must be positive and finite, got {value}.")


def in_range(value, name: str, low: float, high: float) -> None:
  """Raises if a concrete `value` lies outside [low, high]."""
  if isinstance(value, jax.core.Tracer):
    return
  v = _concrete(value)
  if v is None:
    return
  if not (np.all(v >= low) and np.all(v <= high)):
    raise ValueError(f"`{name}` must lie in [{low}, {high}], got {value}.")


def positive_int(value, name: str) -> int:
  if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
    raise ValueError(f"`{name}` must be a positive Python int, got {value!r}.")
  return int(value)


def batch_sum(x: jax.Array, axis_name: str | None) -> jax.Array:
  """`x` summed over the devices of `axis_name` (identity when None)."""
  if axis_name is None:
    return x
  return jax.lax.psum(x, axis_name)


def batch_max(x: jax.Array, axis_name: str | None) -> jax.Array:
  """`x`'s maximum over the devices of `axis_name` (identity when None)."""
  if axis_name is None:
    return x
  return jax.lax.pmax(x, axis_name)


def global_count(n: int, axis_name: str | None, dtype) -> jax.Array:
  """Number of samples in the global batch (local `n` times the devices)."""
  return batch_sum(jnp.asarray(n, dtype), axis_name)


def logsumexp_over_batch(x: jax.Array, axis_name: str | None, *,
                         clip_overflow: bool = True) -> jax.Array:
  """log sum_i exp(x_i) over axis 0 and, when given, over `axis_name` devices.

  The shift is the (global) maximum with its gradient stopped, so the result
  is exact and never overflows. A column that is -inf on every device gives
  -inf (as `logsumexp` does) with a zero, not NaN, gradient.
  """
  shift = jax.lax.stop_gradient(jnp.max(x, axis=0))
  if axis_name is not None:
    shift = jax.lax.pmax(shift, axis_name)
  empty = jnp.isneginf(shift)
  shift = jax.lax.stop_gradient(jnp.where(empty, 0.0, shift))
  exp = _exp_nonpositive if clip_overflow else jnp.exp
  total = batch_sum(jnp.sum(exp(x - shift), axis=0), axis_name)
  # log(1) where empty: the select then passes no inf derivative back.
  total = jnp.where(empty, 1.0, _at_least_one(total))
  return jnp.where(empty, -jnp.inf, jnp.log(total) + shift)


def _exp_nonpositive(z: jax.Array) -> jax.Array:
  """``exp(z)`` for ``z = x - max x <= 0``; a positive z is FMA rounding.

  Clipping it keeps a fused, mis-rounded maximal term from overflowing to
  inf (the select keeps the gradient 1 at z = 0, unlike jnp.minimum).
  """
  return jnp.exp(jnp.where(z > 0, 0.0, z))


def _at_least_one(total: jax.Array) -> jax.Array:
  """Raises a sum of ``exp(x - max x)`` to its true lower bound 1.

  The maximal term is exp(0) = 1, but when XLA fuses the logits' multiply
  into the subtraction (an FMA, see `softmax` below) it can round to 0 and
  the whole sum underflow. The correction is per row, costs nothing per
  element, and leaves the gradient untouched.
  """
  return total + jax.lax.stop_gradient(jnp.maximum(1.0 - total, 0.0))


# Softmax/LSE that stay finite when XLA contracts `c * d - max(c * d)` into a
# fused multiply-add: the recomputed product then differs from the reduced
# maximum by a rounding error that, for logits ~1e15, exceeds 1e7 and makes
# every exp() underflow (0/0 = NaN). Entries that compare >= the maximum
# are pinned to exp(0) = 1, so the normaliser is always >= 1; gradients use
# the outputs (custom JVP), as jax.nn.softmax does.


@jax.custom_jvp
def softmax(x: jax.Array) -> jax.Array:
  """Softmax over the last axis that never returns NaN for finite input."""
  shift = jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
  unnormalised = jnp.where(x >= shift, 1.0, jnp.exp(x - shift))
  return unnormalised / jnp.sum(unnormalised, axis=-1, keepdims=True)


@softmax.defjvp
def _softmax_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  p = softmax(x)
  return p, p * (t - jnp.sum(p * t, axis=-1, keepdims=True))


def log_softmax(x: jax.Array) -> jax.Array:
  """``x - LSE(x)`` over the last axis (see :func:`logsumexp`)."""
  return x - logsumexp(x)[..., None]


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def logsumexp(x: jax.Array, clip_overflow: bool = True) -> jax.Array:
  """``log sum exp`` over the last axis; -inf only for an all -inf row.

  `clip_overflow=False` skips the per-element clip (about 20% faster in
  Sinkhorn's inner loop); it only matters for logits beyond ~1e9, where
  float32 cannot represent the result's inputs meaningfully anyway.
  """
  shift = jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
  finite_shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
  exp = _exp_nonpositive if clip_overflow else jnp.exp
  total = jnp.sum(exp(x - finite_shift), axis=-1)
  total = jnp.where(jnp.isfinite(shift[..., 0]), _at_least_one(total), total)
  return jnp.log(total) + finite_shift[..., 0]


@logsumexp.defjvp
def _logsumexp_jvp(clip_overflow, primals, tangents):
  (x,), (t,) = primals, tangents
  out = logsumexp(x, clip_overflow)
  weights = jnp.where(jnp.isfinite(out)[..., None], softmax(x), 0.0)
  return out, jnp.sum(weights * jnp.where(jnp.isfinite(x), t, 0.0), axis=-1)
