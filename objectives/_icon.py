r"""I-Con: a unifying information-theoretic loss over neighbour distributions.

Every method is a pair of row-stochastic ``[n, m]`` matrices: a supervisory
``p(j|i)`` and a learned ``q(j|i)``, and the loss is

.. math::
  \mathcal{L} = \frac1n \sum_i \mathrm{KL}\left(p(\cdot|i)\,\|\,q(\cdot|i)\right)
             = \frac1n\sum_{ij} p_{ij}(\log p_{ij} - \log q_{ij}),

with ``0 log 0 = 0``. This module gives the building blocks as **log**-
probabilities (row-normalised, ``-inf`` where the probability is 0):

* :func:`gaussian_kernel` ``softmax_j(-d_ij / (2 sigma^2))`` with
  squared-Euclidean, cosine (``d = 1 - cos``) or dot (``d = -x_i.x_j``)
  distance;
* :func:`student_t_kernel` ``(1 + d_ij/gamma)^{-1}`` normalised per row;
* :func:`knn_kernel` k nearest neighbours (uniform), optional walks
  ``P + P^2 + ...``;
* :func:`label_kernel`, :func:`augmentation_kernel` indicators;
* :func:`cluster_kernel` ``q(j|i) = sum_c P_ic P_jc / sum_l P_lc``;
* :func:`debias` ``(1 - alpha) p + alpha/m`` and :func:`mixture_kernel`.

Special cases (see ``tests/objectives/icon_test.py``): SNE (Gaussian p,
Gaussian q), t-SNE in I-Con's per-row form (Gaussian p, Student-t q),
InfoNCE/SimCLR (augmentation p, cosine-Gaussian q with ``2 sigma^2 = tau``),
SupCon (label p; SupCon's cross-entropy = our KL + the entropy of p),
probabilistic k-means (Gaussian p, cluster q) and Debiased InfoNCE
Clustering (debiased augmentation + kNN(3) + 1-walk p, debiased cluster q).

Convention: the paper's Debiased InfoNCE uses ``alpha/N``; we use ``alpha/m``
with ``m`` the number of columns (equal when ``m = n = N``).

References:
  Alshammari, Hershey, Feldmann, Freeman, Hamilton. I-Con: A unifying
  framework for representation learning. ICLR 2025.

Valid ranges (property-tested): the kernels and the loss are finite, with
finite gradients, for ``sigma``/``gamma`` in [1e-4, 1e4], inputs scaled by
1e-6 to 1e6, identical points, n = 2, and one-hot cluster probabilities
(``cluster_kernel`` floors q = 0 at float32's tiny value).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from objectives import _checks
from objectives import _soft_kmeans

_HI = jax.lax.Precision.HIGHEST


def _features(x, name="x"):
  x = _checks.float_array(x, name, "[n, d]", rank=2)
  _checks.nonempty(x, name, 0, "samples")
  return x


def _masked_log_softmax(logits, mask_diagonal):
  if mask_diagonal:
    n = logits.shape[0]
    if n < 2:
      raise ValueError(
          "`mask_diagonal=True` needs at least 2 samples (each row must keep "
          f"one neighbour), got n={n}.")
    logits = jnp.where(jnp.eye(n, logits.shape[1], dtype=bool), -jnp.inf,
                       logits)
  return _checks.log_softmax(logits)


def pairwise_distances(x: jax.typing.ArrayLike, *,
                       metric: str = "sqeuclidean") -> jax.Array:
  """Pairwise distances ``d_ij`` for the I-Con kernels.

  Args:
    x: ``[n, d]`` (rows are samples).
    metric: ``'sqeuclidean'``, ``'cosine'`` (``1 - cos``) or ``'dot'``
      (``-x_i . x_j``).

  Returns:
    ``[n, n]`` distances.

  Examples:
    >>> import jax.numpy as jnp
    >>> import objectives as O
    >>> x = jnp.array([[0., 0.], [3., 4.]])
    >>> print(O.pairwise_distances(x))
    [[ 0. 25.]
     [25.  0.]]
  """
  x = _features(x)
  if metric == "sqeuclidean":
    return _soft_kmeans.squared_distances(x, x)
  if metric == "cosine":
    unit = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return 1.0 - jnp.matmul(unit, unit.T, precision=_HI)
  if metric == "dot":
    return -jnp.matmul(x, x.T, precision=_HI)
  raise ValueError(
      f"`metric` must be 'sqeuclidean', 'cosine' or 'dot', got {metric!r}.")


def gaussian_kernel(x: jax.typing.ArrayLike, *,
                    sigma: jax.typing.ArrayLike = 1.0,
                    metric: str = "sqeuclidean",
                    mask_diagonal: bool = True) -> jax.Array:
  r"""Gaussian neighbour distribution ``log softmax_j(-d_ij / (2 sigma^2))``.

  Args:
    x: ``[n, d]`` (rows are samples).
    sigma: bandwidth ``> 0`` (scalar, or ``[n]`` per-row as in SNE).
    metric: see :func:`pairwise_distances`.
    mask_diagonal: exclude ``j = i`` (``log p_ii = -inf``).

  Returns:
    ``[n, n]`` row-normalised log-probabilities.

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import objectives as O
    >>> x = jnp.array([[0.], [1.], [3.]])
    >>> p = jnp.exp(O.gaussian_kernel(x, sigma=1.0))  # SNE's p(j|i), no self
    >>> print(np.asarray(p).round(3))
    [[0.    0.982 0.018]
     [0.818 0.    0.182]
     [0.076 0.924 0.   ]]
  """
  _checks.positive(sigma, "sigma")
  dist = pairwise_distances(x, metric=metric)
  sigma = jnp.asarray(sigma, dist.dtype)
  if sigma.ndim == 1:
    sigma = sigma[:, None]
  return _masked_log_softmax(-dist / (2.0 * sigma**2), mask_diagonal)


def student_t_kernel(x: jax.typing.ArrayLike, *,
                     gamma: jax.typing.ArrayLike = 1.0,
                     mask_diagonal: bool = True) -> jax.Array:
  r"""Student-t neighbour distribution ``(1 + ||x_i - x_j||^2/gamma)^{-1}``.

  Args:
    x: ``[n, d]`` (rows are samples).
    gamma: degrees-of-freedom scale ``> 0`` (t-SNE: 1).
    mask_diagonal: exclude ``j = i``.

  Returns:
    ``[n, n]`` row-normalised log-probabilities.

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import objectives as O
    >>> x = jnp.array([[0.], [1.], [3.]])
    >>> q = jnp.exp(O.student_t_kernel(x))  # t-SNE's (1 + d)^-1, normalised
    >>> print(np.asarray(q).round(3))
    [[0.    0.833 0.167]
     [0.714 0.    0.286]
     [0.333 0.667 0.   ]]
  """
  _checks.positive(gamma, "gamma")
  dist = pairwise_distances(x, metric="sqeuclidean")
  return _masked_log_softmax(-jnp.log1p(dist / gamma), mask_diagonal)


def _normalise_log_rows(weights):
  """log(w / w.sum(1)) for non-negative weights; an all-zero row stays -inf."""
  total = jnp.sum(weights, axis=1, keepdims=True)
  safe_w = jnp.where(weights > 0, weights, 1.0)
  safe_t = jnp.where(total > 0, total, 1.0)
  return jnp.where(weights > 0, jnp.log(safe_w) - jnp.log(safe_t), -jnp.inf)


def knn_kernel(x: jax.typing.ArrayLike, *, k: int, walks: int = 0,
               metric: str = "sqeuclidean") -> jax.Array:
  r"""k-nearest-neighbour distribution, optionally spread by random walks.

  ``A_ij = 1/k`` for the ``k`` nearest ``j != i``; with ``walks = w`` the
  result is ``A + A^2 + ... + A^{w+1}`` renormalised per row.

  Args:
    x: ``[n, d]`` (rows are samples).
    k: neighbours per sample, ``1 <= k < n``.
    walks: number of extra walk steps (0 = plain kNN).
    metric: see :func:`pairwise_distances`.

  Returns:
    ``[n, n]`` row-normalised log-probabilities (no gradient: neighbour sets
    are discrete).

  Examples:
    >>> import jax.numpy as jnp
    >>> import objectives as O
    >>> x = jnp.array([[0.], [1.], [5.], [6.]])
    >>> print(jnp.exp(O.knn_kernel(x, k=1)))
    [[0. 1. 0. 0.]
     [1. 0. 0. 0.]
     [0. 0. 0. 1.]
     [0. 0. 1. 0.]]
  """
  x = jax.lax.stop_gradient(_features(x))
  n = x.shape[0]
  k = _checks.positive_int(k, "k")
  if k >= n:
    raise ValueError(f"`k` must be < n = {n} (self is excluded), got {k}.")
  if not isinstance(walks, int) or walks < 0:
    raise ValueError(f"`walks` must be a non-negative int, got {walks!r}.")
  dist = pairwise_distances(x, metric=metric)
  dist = jnp.where(jnp.eye(n, dtype=bool), jnp.inf, dist)
  _, idx = jax.lax.top_k(-dist, k)
  adjacency = jnp.zeros((n, n), x.dtype).at[jnp.arange(n)[:, None], idx].set(
      1.0 / k)
  total, power = adjacency, adjacency
  for _ in range(walks):
    power = jnp.matmul(power, adjacency, precision=_HI)
    total = total + power
  return _normalise_log_rows(total)


def label_kernel(labels: jax.typing.ArrayLike, *,
                 mask_diagonal: bool = True) -> jax.Array:
  """Uniform distribution over samples with the same label.

  Args:
    labels: ``[n]`` integer labels.
    mask_diagonal: exclude ``j = i`` (SupCon's positives).

  Returns:
    ``[n, n]`` log-probabilities; a sample with no positive gets a row of
    ``-inf`` (contributes nothing to :func:`icon_loss`).

  Examples:
    >>> import jax.numpy as jnp
    >>> import objectives as O
    >>> print(jnp.exp(O.label_kernel(jnp.array([0, 0, 0, 1]))))
    [[0.  0.5 0.5 0. ]
     [0.5 0.  0.5 0. ]
     [0.5 0.5 0.  0. ]
     [0.  0.  0.  0. ]]
  """
  labels = _checks.int_array(labels, "labels", "[n]", rank=1)
  same = (labels[:, None] == labels[None, :]).astype(jnp.float32)
  if mask_diagonal:
    same = same * (1.0 - jnp.eye(labels.shape[0], dtype=jnp.float32))
  return _normalise_log_rows(same)


def augmentation_kernel(view_ids: jax.typing.ArrayLike) -> jax.Array:
  """Positives are the other views of the same source sample.

  Args:
    view_ids: ``[n]`` integer id of the source sample of each row (e.g.
      ``[0..B-1, 0..B-1]`` for two stacked views).

  Returns:
    ``[n, n]`` log-probabilities, uniform over the other views.

  Examples:
    >>> import jax.numpy as jnp
    >>> import objectives as O
    >>> # two views of two images: rows 0, 2 and rows 1, 3 are pairs
    >>> print(jnp.exp(O.augmentation_kernel(jnp.array([0, 1, 0, 1]))))
    [[0. 0. 1. 0.]
     [0. 0. 0. 1.]
     [1. 0. 0. 0.]
     [0. 1. 0. 0.]]
  """
  view_ids = _checks.int_array(view_ids, "view_ids", "[n]", rank=1)
  return label_kernel(view_ids, mask_diagonal=True)


def cluster_kernel(probs: jax.typing.ArrayLike) -> jax.Array:
  r"""Cluster-induced neighbours ``q(j|i) = sum_c P_ic P_jc / sum_l P_lc``.

  Computed as a max-shifted log-matmul-exp, so tiny probabilities do not
  underflow and memory stays ``O(n^2 + n c)``.

  Args:
    probs: ``[n, c]`` cluster probabilities (rows sum to 1).

  Returns:
    ``[n, n]`` row-normalised log-probabilities; ``q = 0`` (one-hot rows in
    different clusters) is returned as ``log(float32 tiny) ~ -87``, not
    ``-inf``, so gradients stay finite.

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import objectives as O
    >>> probs = jnp.array([[1., 0.], [1., 0.], [0., 1.]])
    >>> print(np.asarray(jnp.exp(O.cluster_kernel(probs))).round(3))
    [[0.5 0.5 0. ]
     [0.5 0.5 0. ]
     [0.  0.  1. ]]
  """
  probs = _features(probs, "probs")
  log_p = jnp.log(jnp.maximum(probs, jnp.finfo(probs.dtype).tiny))
  log_cols = jnp.log(jnp.maximum(jnp.sum(probs, axis=0),
                                 jnp.finfo(probs.dtype).tiny))
  left = log_p - log_cols[None, :]
  left_max = jax.lax.stop_gradient(jnp.max(left, axis=1, keepdims=True))
  right_max = jax.lax.stop_gradient(jnp.max(log_p, axis=1, keepdims=True))
  inner = jnp.matmul(jnp.exp(left - left_max), jnp.exp(log_p - right_max).T,
                     precision=_HI)
  # Pairs whose clusters never overlap have q = 0: floored at `tiny` so that
  # log q and its gradient stay finite (debias() then lifts it anyway).
  log_q = (jnp.log(jnp.maximum(inner, jnp.finfo(inner.dtype).tiny))
           + left_max + right_max.T)
  # Renormalise away rounding so rows are exactly stochastic.
  return log_q - _checks.logsumexp(log_q)[:, None]


def debias(log_p: jax.typing.ArrayLike, *,
           alpha: jax.typing.ArrayLike) -> jax.Array:
  """Mixes in the uniform distribution: ``log((1 - alpha) p + alpha / m)``.

  Args:
    log_p: ``[n, m]`` log-probabilities.
    alpha: weight of the uniform part, in ``[0, 1]`` (I-Con: 0.6-0.8).

  Returns:
    ``[n, m]`` log-probabilities.

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import objectives as O
    >>> log_p = jnp.log(jnp.array([[1., 0.]]))
    >>> p = jnp.exp(O.debias(log_p, alpha=0.2))  # 0.8 p + 0.2 / 2
    >>> print(np.asarray(p).round(4))
    [[0.9 0.1]]
  """
  log_p = _checks.float_array(log_p, "log_p", "[n, m]", rank=2,
                               allow_neg_inf=True)
  _checks.in_range(alpha, "alpha", 0.0, 1.0)
  alpha = jnp.asarray(alpha, log_p.dtype)
  m = log_p.shape[1]
  return jnp.logaddexp(jnp.log1p(-alpha) + log_p,
                       jnp.log(alpha) - jnp.log(float(m)))


def mixture_kernel(*log_ps: jax.typing.ArrayLike,
                   weights=None) -> jax.Array:
  """Weighted mixture ``log sum_s w_s p_s`` of row-stochastic kernels.

  Args:
    *log_ps: ``[n, m]`` log-probabilities, all the same shape.
    weights: ``[s]`` mixture weights, ``>= 0`` and summing to 1 (default
      uniform); other values are a ``ValueError`` when concrete.

  Returns:
    ``[n, m]`` log-probabilities.

  Examples:
    >>> import jax.numpy as jnp
    >>> import objectives as O
    >>> a, b = jnp.log(jnp.array([[1., 0.]])), jnp.log(jnp.array([[0., 1.]]))
    >>> print(jnp.exp(O.mixture_kernel(a, b, weights=jnp.array([0.75, 0.25]))))
    [[0.75 0.25]]
  """
  if not log_ps:
    raise ValueError("`mixture_kernel` needs at least one kernel.")
  arrays = [_checks.float_array(lp, f"log_ps[{s}]", "[n, m]", rank=2,
                                allow_neg_inf=True)
            for s, lp in enumerate(log_ps)]
  _checks.same_size([(f"log_ps[{s}]", a.shape) for s, a in enumerate(arrays)],
                    "kernel shapes")
  if weights is None:
    weights = jnp.full((len(arrays),), 1.0 / len(arrays))
  weights = jnp.asarray(weights, arrays[0].dtype)
  if weights.shape != (len(arrays),):
    raise ValueError(f"`weights` must have shape ({len(arrays)},), got "
                     f"{weights.shape}.")
  concrete = _checks.concrete_array(weights)
  if concrete is not None and (np.any(~(concrete >= 0))
                               or abs(concrete.sum() - 1.0) > 1e-5):
    # Otherwise the mixture's rows are not distributions (or are NaN).
    raise ValueError("`weights` must be >= 0 and sum to 1 (a mixture of "
                     f"distributions); got {concrete.tolist()}.")
  stacked = jnp.stack(arrays)  # [s, n, m]
  return jax.nn.logsumexp(stacked, axis=0, b=weights[:, None, None])


def icon_loss(log_p: jax.typing.ArrayLike,
              log_q: jax.typing.ArrayLike,
              *,
              axis_name: str | None = None) -> jax.Array:
  r"""I-Con loss ``(1/n) sum_i KL(p(.|i) || q(.|i))`` with ``0 log 0 = 0``.

  Args:
    log_p: ``[n, m]`` supervisory log-probabilities (rows are samples; the
      local rows under `axis_name`); ``-inf`` marks ``p = 0``.
    log_q: ``[n, m]`` learned log-probabilities.
    axis_name: mapped axis; the mean is then over the global batch.

  Returns:
    Scalar loss. Terms with ``p_ij = 0`` are dropped (with safe gradients),
    so a ``-inf`` in ``log_q`` where ``p = 0`` is harmless.

  Examples:
    >>> import jax.numpy as jnp
    >>> import objectives as O
    >>> log_p = jnp.log(jnp.array([[0.5, 0.5], [0.5, 0.5]]))
    >>> log_q = jnp.log(jnp.array([[0.9, 0.1], [0.5, 0.5]]))
    >>> # mean_i KL(p_i || q_i) = (KL(.5,.5 || .9,.1) + 0) / 2
    >>> print(f"{O.icon_loss(log_p, log_q):.4f}")
    0.2554
  """
  log_p = _checks.float_array(log_p, "log_p", "[n, m]", rank=2,
                               allow_neg_inf=True)
  log_q = _checks.float_array(log_q, "log_q", "[n, m]", rank=2,
                               allow_neg_inf=True)
  _checks.same_size([("log_p", log_p.shape), ("log_q", log_q.shape)],
                    "kernel shapes [n, m]")
  dtype = jnp.promote_types(log_p.dtype, log_q.dtype)
  log_p, log_q = log_p.astype(dtype), log_q.astype(dtype)
  support = log_p > -jnp.inf
  safe_log_p = jnp.where(support, log_p, 0.0)
  safe_log_q = jnp.where(support, log_q, 0.0)
  terms = jnp.where(support, jnp.exp(safe_log_p) * (safe_log_p - safe_log_q),
                    0.0)
  total = _checks.batch_sum(jnp.sum(terms), axis_name)
  return total / _checks.global_count(log_p.shape[0], axis_name, dtype)
