r"""Soft k-means and the DKM clustering loss.

Responsibilities are a softmax over negative squared distances,

.. math::
  r_{ik} = \mathrm{softmax}_k\left(-\|x_i - \mu_k\|^2 / T\right),

and the DKM loss (Fard et al., 2020) is the responsibility-weighted
distortion averaged over samples,

.. math::
  \mathcal{L}(X, M) = \frac{1}{n}\sum_i \sum_k r_{ik}\,\|x_i - \mu_k\|^2 .

As ``T -> 0`` the responsibilities become one-hot and the loss equals Lloyd's
k-means objective (scikit-learn's ``inertia_``) divided by ``n``.

Conventions: DKM writes the temperature as an inverse ``alpha = 1/T``; we use
``temperature = T``. DKM's annealing schedule (``alpha_0 = 0.1``,
``alpha_n = 2^{1/\log(n+1)^2} alpha_{n-1}``) is
:func:`dkm_inverse_temperature`.

References:
  Fard, Thonet, Gaussier. Deep k-Means: Jointly clustering with k-Means and
  learning representations. Pattern Recognition Letters, 2020.

Valid ranges (property-tested over float32/bfloat16/float16 inputs,
identical points, zero vectors, empty clusters, k > n, k = 1, n = 1, inputs
scaled by 1e-6 and 1e6): values and gradients are finite for any
``temperature`` in [1e-4, 1e4] (the assignment is a log-sum-exp softmax);
an empty cluster's centroid is the zero vector with a zero gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from objectives import _checks


def _points_and_centroids(x, centroids):
  x = _checks.float_array(x, "x", "[n, d]", rank=2)
  centroids = _checks.float_array(centroids, "centroids", "[k, d]", rank=2)
  _checks.same_size(
      [("x", x.shape[1]), ("centroids", centroids.shape[1])],
      "feature dimension d")
  _checks.nonempty(centroids, "centroids", 0, "centroids")
  dtype = jnp.promote_types(x.dtype, centroids.dtype)
  return x.astype(dtype), centroids.astype(dtype)


def squared_distances(x: jax.typing.ArrayLike,
                      centroids: jax.typing.ArrayLike) -> jax.Array:
  """Squared Euclidean distances ``||x_i - mu_k||^2``.

  Args:
    x: samples, ``[n, d]`` (rows are samples).
    centroids: ``[k, d]``.

  Returns:
    ``[n, k]`` non-negative distances, computed as
    ``|x|^2 - 2 x.mu + |mu|^2`` (one GEMM) and clipped at 0 against rounding.

  Examples:
    >>> import jax.numpy as jnp
    >>> import objectives as O
    >>> x = jnp.array([[0., 0.], [3., 4.]])
    >>> print(O.squared_distances(x, jnp.array([[0., 0.], [3., 0.]])))
    [[ 0.  9.]
     [25. 16.]]
  """
  x, centroids = _points_and_centroids(x, centroids)
  cross = jnp.matmul(x, centroids.T, precision=jax.lax.Precision.HIGHEST)
  sq = (jnp.sum(x * x, axis=1)[:, None] - 2.0 * cross
        + jnp.sum(centroids * centroids, axis=1)[None, :])
  return jnp.maximum(sq, 0.0)


def soft_kmeans_assignments(x: jax.typing.ArrayLike,
                            centroids: jax.typing.ArrayLike,
                            *,
                            temperature: jax.typing.ArrayLike = 1.0
                            ) -> jax.Array:
  r"""Soft k-means responsibilities ``softmax_k(-||x_i - mu_k||^2 / T)``.

  Args:
    x: samples, ``[n, d]`` (rows are samples).
    centroids: ``[k, d]``.
    temperature: ``T > 0``. Any positive float is valid: tiny ``T`` gives
      one-hot rows (ties split evenly), huge ``T`` gives uniform rows.

  Returns:
    ``[n, k]`` responsibilities, each row sums to 1, in float32 (float64 for
    float64 inputs).

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import objectives as O
    >>> x = jnp.array([[0.], [1.]])
    >>> r = O.soft_kmeans_assignments(x, x, temperature=1.0)
    >>> print(np.asarray(r).round(4))
    [[0.7311 0.2689]
     [0.2689 0.7311]]
  """
  _checks.positive(temperature, "temperature")
  logits = -squared_distances(x, centroids) / temperature
  return _checks.softmax(logits)


def soft_kmeans_loss(x: jax.typing.ArrayLike,
                     centroids: jax.typing.ArrayLike,
                     *,
                     temperature: jax.typing.ArrayLike = 1.0,
                     axis_name: str | None = None) -> jax.Array:
  r"""DKM loss ``(1/n) sum_i sum_k r_ik ||x_i - mu_k||^2``.

  Args:
    x: samples, ``[n, d]`` (rows are samples; the local shard when
      `axis_name` is given).
    centroids: ``[k, d]``.
    temperature: ``T > 0`` (see :func:`soft_kmeans_assignments`).
    axis_name: optional mapped axis; the mean is then over the global batch.

  Returns:
    Scalar loss. Gradients flow through both the distances and the
    responsibilities, as in DKM.

  Examples:
    >>> import jax.numpy as jnp
    >>> import objectives as O
    >>> x = jnp.array([[0.], [1.]])
    >>> # each point: 0.2689 of its mass at squared distance 1
    >>> print(f"{O.soft_kmeans_loss(x, x, temperature=1.0):.4f}")
    0.2689
  """
  _checks.positive(temperature, "temperature")
  distances = squared_distances(x, centroids)
  resp = _checks.softmax(-distances / temperature)
  total = _checks.batch_sum(jnp.sum(resp * distances), axis_name)
  return total / _checks.global_count(distances.shape[0], axis_name,
                                      distances.dtype)


def soft_kmeans_centroids(x: jax.typing.ArrayLike,
                          responsibilities: jax.typing.ArrayLike,
                          *,
                          axis_name: str | None = None) -> jax.Array:
  r"""M-step: ``mu_k = sum_i r_ik x_i / sum_i r_ik`` over the global batch.

  Args:
    x: samples, ``[n, d]``.
    responsibilities: ``[n, k]`` non-negative weights.
    axis_name: optional mapped axis over which the sums are reduced.

  Returns:
    ``[k, d]`` centroids. A cluster with zero total weight gets the zero
    vector, never NaN, and a zero gradient.

  Examples:
    >>> import jax.numpy as jnp
    >>> import objectives as O
    >>> x = jnp.array([[0.], [2.], [10.]])
    >>> resp = jnp.array([[1., 0.], [1., 0.], [0., 1.]])
    >>> print(O.soft_kmeans_centroids(x, resp))
    [[ 1.]
     [10.]]
  """
  x = _checks.float_array(x, "x", "[n, d]", rank=2)
  resp = _checks.float_array(responsibilities, "responsibilities", "[n, k]",
                             rank=2)
  _checks.same_size([("x", x.shape[0]), ("responsibilities", resp.shape[0])],
                    "number of samples n")
  sums = _checks.batch_sum(
      jnp.matmul(resp.T, x, precision=jax.lax.Precision.HIGHEST), axis_name)
  weights = _checks.batch_sum(jnp.sum(resp, axis=0), axis_name)
  # Double where: the empty cluster's division never happens, so its
  # gradient is 0 rather than 0 * (1 / tiny^2) = NaN.
  nonempty = weights > 0
  safe = jnp.where(nonempty, weights, 1.0)
  return jnp.where(nonempty[:, None], sums / safe[:, None], 0.0)


def dkm_inverse_temperature(step: jax.typing.ArrayLike,
                            *,
                            alpha_0: float = 0.1,
                            max_alpha: float = 1e4) -> jax.Array:
  r"""DKM's annealed inverse temperature ``alpha_n``, capped at ``max_alpha``.

  ``alpha_0 = 0.1`` and ``alpha_n = 2^{1/\ln(n+1)^2} alpha_{n-1}``, i.e.
  ``alpha_n = alpha_0 * 2^{sum_{m=1..n} 1/ln(m+1)^2}``, until it reaches
  ``max_alpha``, where it stays. The uncapped schedule grows without bound
  (from ``alpha_0 = 0.1`` it passes 1e4, the smallest temperature this
  module is tested at, at step 231, and float32's range at step 7,093); at
  ``max_alpha`` the assignments are already hard to float32 precision for
  any distances not within ``1e-4`` of each other.

  Args:
    step: ``n >= 0`` (scalar or array of ints).
    alpha_0: initial inverse temperature, in ``(0, max_alpha]``.
    max_alpha: the cap, in ``(0, 1e4]`` (temperature ``>= 1e-4``).

  Returns:
    ``alpha_n`` (float32); use ``temperature = 1 / alpha_n``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import objectives as O
    >>> alpha = O.dkm_inverse_temperature(jnp.arange(4), alpha_0=0.1)
    >>> print(np.asarray(alpha).round(3))
    [0.1   0.423 0.752 1.078]
    >>> print(O.dkm_inverse_temperature(10**9))
    10000.0
  """
  if not 0 < max_alpha <= 1e4:
    raise ValueError(f"`max_alpha` must be in (0, 1e4]; got {max_alpha}.")
  if isinstance(alpha_0, (int, float)) and not 0 < alpha_0 <= max_alpha:
    raise ValueError(f"`alpha_0` must be in (0, max_alpha={max_alpha}]; got "
                     f"{alpha_0}.")
  step = jnp.asarray(step)
  # The exponent is a cumulative sum over a fixed horizon (jittable). By its
  # end the exponent is ~120: the cap is reached long before for any
  # alpha_0 >= 1e-30, so later steps are at the cap, not clipped.
  horizon = 10_000
  m = jnp.arange(1, horizon + 1, dtype=jnp.float32)
  exponents = jnp.concatenate(
      [jnp.zeros((1,), jnp.float32), jnp.cumsum(1.0 / jnp.log(m + 1.0) ** 2)])
  exponent = exponents[jnp.clip(step, 0, horizon)]
  # Bounded before exp2 (no inf for any alpha_0), one past the cap so that
  # the min below lands on max_alpha exactly.
  exponent = jnp.minimum(exponent, jnp.log2(max_alpha / alpha_0) + 1.0)
  return jnp.minimum(alpha_0 * jnp.exp2(exponent), max_alpha)
