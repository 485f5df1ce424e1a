r"""Associative-memory clustering (ClAM).

Prototypes (memories) ``rho: [k, d]`` define the energy

.. math::
  E(v) = -\frac1\beta \log\sum_\mu \exp\left(-\frac\beta2\|v - \rho_\mu\|^2\right)

and the dynamics are gradient descent on it, restricted by a mask ``m``
(1 = the coordinate may change):

.. math::
  v \leftarrow v + \alpha\, m \odot \sum_\mu
      \mathrm{softmax}_\mu\left(-\tfrac\beta2\|\rho_\mu - v\|^2\right)(\rho_\mu - v).

The self-supervised loss masks coordinates, fills them with ``fill_value``,
evolves only those, and scores the completion:
``mean over all n*d entries of m * (x - v_T)^2``.

Conventions: the reference (Saha et al.) computes raw exponentials and drops
hyperparameter settings that overflow; we use a softmax over logits, which is
exact and finite for any ``beta * distance^2`` (tested up to 1e6).

Valid ranges (property-tested, float32/bfloat16/float16 inputs, identical
points, zero vectors, k > n, k = 1, n = 1): values are finite for any
``beta > 0``; gradients are finite while ``beta * ||x - rho||^2 <= 1e8``.
Beyond that, a sample equidistant from two memories has a true gradient of
order ``beta * ||x - rho||`` per step, compounded over the ``T`` steps, which
overflows float32: scale the data or lower ``beta``. Defaults
follow the paper: ``alpha = 0.1``, ``T = 10`` steps, gradients through all
steps.

References:
  Saha, Ram, Mukherjee, et al. End-to-end differentiable clustering with
  associative memories. ICML 2023.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from objectives import _checks
from objectives import _soft_kmeans


def _states_and_memories(x, memories, x_name="x"):
  x = _checks.float_array(x, x_name, "[n, d]", rank=2)
  memories = _checks.float_array(memories, "memories", "[k, d]", rank=2)
  _checks.same_size([(x_name, x.shape[1]), ("memories", memories.shape[1])],
                    "feature dimension d")
  _checks.nonempty(memories, "memories", 0, "memories")
  dtype = jnp.promote_types(x.dtype, memories.dtype)
  return x.astype(dtype), memories.astype(dtype)


def _mask(mask, shape, dtype, name="mask"):
  mask = jnp.asarray(mask)
  if mask.shape != shape:
    raise ValueError(f"`{name}` must have the shape of `x` {shape}, got "
                     f"{mask.shape}.")
  return mask.astype(dtype)


def am_energy(v: jax.typing.ArrayLike, memories: jax.typing.ArrayLike, *,
              beta: jax.typing.ArrayLike) -> jax.Array:
  r"""Energy ``E(v) = -(1/beta) LSE_mu(-(beta/2)||v - rho_mu||^2)`` per state.

  Args:
    v: ``[n, d]`` states (rows are samples).
    memories: ``[k, d]`` prototypes.
    beta: inverse temperature ``> 0``.

  Returns:
    ``[n]`` energies.

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import objectives as O
    >>> memories = jnp.array([[0.], [4.]])
    >>> # -(1/beta) log(e^0 + e^-8) at a memory, higher half-way
    >>> energy = O.am_energy(jnp.array([[0.], [2.]]), memories, beta=1.0)
    >>> print(np.asarray(energy).round(4))
    [-3.0000e-04  1.3069e+00]
  """
  _checks.positive(beta, "beta")
  dist = _soft_kmeans.squared_distances(v, memories)
  return -_checks.logsumexp(-0.5 * beta * dist) / beta


def _step(memories, beta, alpha, mask, v):
  dist = _soft_kmeans.squared_distances(v, memories)
  weights = _checks.softmax(-0.5 * beta * dist)  # [n, k]
  pull = jnp.matmul(weights, memories, precision=jax.lax.Precision.HIGHEST) - v
  return v + alpha * mask * pull


def am_evolve(x: jax.typing.ArrayLike,
              memories: jax.typing.ArrayLike,
              *,
              beta: jax.typing.ArrayLike,
              alpha: jax.typing.ArrayLike = 0.1,
              num_steps: int = 10,
              mask: jax.typing.ArrayLike | None = None) -> jax.Array:
  r"""Runs ``num_steps`` ClAM updates from ``x``.

  Args:
    x: ``[n, d]`` initial states (rows are samples).
    memories: ``[k, d]`` prototypes ``rho``.
    beta: inverse temperature ``> 0``; any value is numerically safe (the
      softmax saturates to the nearest memory for large ``beta``).
    alpha: step size (0.1; ``alpha <= 1`` keeps states in the convex hull of
      the start and the memories).
    num_steps: ``T`` (10).
    mask: optional ``[n, d]``; 1 where a coordinate may change.

  Returns:
    ``[n, d]`` final states ``v_T``; differentiable through every step.

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import objectives as O
    >>> memories = jnp.array([[0.], [4.]])
    >>> v = O.am_evolve(jnp.array([[1.], [3.]]), memories, beta=1.0, alpha=0.5,
    ...                 num_steps=20)
    >>> print(np.asarray(v).round(2))  # each state falls into its memory
    [[0.]
     [4.]]
  """
  x, memories = _states_and_memories(x, memories)
  _checks.positive(beta, "beta")
  num_steps = _checks.positive_int(num_steps, "num_steps")
  mask = jnp.ones_like(x) if mask is None else _mask(mask, x.shape, x.dtype)

  def body(v, _):
    return _step(memories, beta, alpha, mask, v), None

  v, _ = jax.lax.scan(body, x, length=num_steps)
  return v


def clam_loss(x: jax.typing.ArrayLike,
              memories: jax.typing.ArrayLike,
              mask: jax.typing.ArrayLike,
              *,
              beta: jax.typing.ArrayLike,
              alpha: jax.typing.ArrayLike = 0.1,
              num_steps: int = 10,
              fill_value: jax.typing.ArrayLike = 0.0,
              axis_name: str | None = None) -> jax.Array:
  r"""ClAM masked pattern-completion loss.

  Masked coordinates start at ``fill_value`` (the feature mean, 0 after
  z-scoring), only they evolve, and the loss is
  ``(1/(n d)) sum_{i,l} m_il (x_il - v_T,il)^2``.

  Args:
    x: ``[n, d]`` data (rows are samples).
    memories: ``[k, d]`` prototypes (the trained parameters).
    mask: ``[n, d]``, 1 = masked (to be completed), 0 = observed.
    beta: inverse temperature ``> 0``.
    alpha: step size.
    num_steps: ``T``.
    fill_value: scalar or ``[d]`` value for masked coordinates.
    axis_name: mapped axis; the mean is then over the global batch.

  Returns:
    Scalar loss.

  Examples:
    >>> import jax.numpy as jnp
    >>> import objectives as O
    >>> memories = jnp.array([[0., 0.], [4., 4.]])
    >>> x = jnp.array([[4., 4.]])
    >>> mask = jnp.array([[0., 1.]])  # hide the second coordinate
    >>> loss = O.clam_loss(x, memories, mask, beta=1.0, alpha=0.5,
    ...                    num_steps=30, fill_value=2.0)
    >>> print(f"{loss:.4f}")  # completed from the memory at (4, 4)
    0.0000
  """
  x, memories = _states_and_memories(x, memories)
  mask = _mask(mask, x.shape, x.dtype)
  start = jnp.where(mask > 0, jnp.asarray(fill_value, x.dtype), x)
  final = am_evolve(start, memories, beta=beta, alpha=alpha,
                    num_steps=num_steps, mask=mask)
  total = _checks.batch_sum(jnp.sum(mask * (x - final) ** 2), axis_name)
  count = _checks.global_count(x.shape[0], axis_name, x.dtype) * x.shape[1]
  return total / count


def am_assignments(x: jax.typing.ArrayLike,
                   memories: jax.typing.ArrayLike,
                   *,
                   beta: jax.typing.ArrayLike,
                   alpha: jax.typing.ArrayLike = 0.1,
                   num_steps: int = 10) -> jax.Array:
  """ClAM inference: evolve the full input, then take the nearest memory.

  Args:
    x: ``[n, d]`` samples.
    memories: ``[k, d]``.
    beta, alpha, num_steps: as in :func:`am_evolve`.

  Returns:
    ``[n]`` int32 cluster ids.

  Examples:
    >>> import jax.numpy as jnp
    >>> import objectives as O
    >>> memories = jnp.array([[0.], [4.]])
    >>> print(O.am_assignments(jnp.array([[1.], [2.5], [9.]]), memories,
    ...                        beta=1.0))
    [0 1 1]
  """
  final = am_evolve(x, memories, beta=beta, alpha=alpha, num_steps=num_steps)
  dist = _soft_kmeans.squared_distances(final, memories)
  return jnp.argmin(dist, axis=1).astype(jnp.int32)
