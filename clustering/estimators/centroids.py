"""Centroid estimators: k-means, annealed soft k-means, balanced k-means.

* :class:`KMeans` - Lloyd with k-means++ and restarts under ``vmap``.
* :class:`SoftKMeans` - DKM's annealed soft k-means (deterministic annealing).
* :class:`SinkhornKMeans` - k-means whose assignment step is a balanced
  entropic OT plan: every cluster receives ``n / k`` samples (or the given
  ``cluster_weights``).
* :class:`MiniBatchKMeans` - scikit-learn's mini-batch k-means, with
  ``partial_fit`` for data that arrives (or is read) in chunks.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.utils import validation

import objectives as O
from clustering.algorithms import blocks
from clustering.algorithms import kmeans as kmeans_lib
from clustering.algorithms.kmeans import annealed_soft_kmeans
from clustering.algorithms.kmeans import kmeans as fit_kmeans
from clustering.estimators.base import JaxClusterer
from clustering.estimators.base import NearestCentroidMixin

__all__ = ["KMeans", "SoftKMeans", "SinkhornKMeans", "MiniBatchKMeans"]


# --------------------------------------------------------------------------
# KMeans


class KMeans(NearestCentroidMixin, JaxClusterer):
  """k-means (Lloyd), greedy k-means++ init, ``n_init`` restarts in one vmap.

  Same objective and tolerance convention as ``sklearn.cluster.KMeans``
  (see :func:`clustering.kmeans`).

  Attributes:
    cluster_centers_: ``[k, d]``.
    labels_: ``[n]`` int32.
    inertia_: sum of squared distances to the nearest centre.
    n_iter_: Lloyd iterations of the best restart.
  """

  def __init__(self, n_clusters: int = 8, *, n_init: int = 10,
               max_iter: int = 300, tol: float = 1e-4, random_state=None):
    self.n_clusters = n_clusters
    self.n_init = n_init
    self.max_iter = max_iter
    self.tol = tol
    self.random_state = random_state

  def fit(self, X, y=None):
    del y
    X = self._validate_fit(X)
    result = fit_kmeans(X, self.n_clusters, n_init=self.n_init,
                               max_iters=self.max_iter, tol=self.tol,
                               seed=self._seed())
    self.cluster_centers_ = np.asarray(result.centroids)
    self.labels_ = np.asarray(result.labels, np.int32)
    self.inertia_ = float(result.inertia)
    self.n_iter_ = int(result.iterations)
    return self


# --------------------------------------------------------------------------
# SoftKMeans


class SoftKMeans(NearestCentroidMixin, JaxClusterer):
  r"""Annealed soft k-means (DKM's schedule), restarts under ``vmap``.

  Each restart starts from k-means++ centroids and runs ``n_anneal_steps``
  EM steps of :func:`objectives.soft_kmeans_loss` while the inverse
  temperature follows :func:`objectives.dkm_inverse_temperature`, measured
  in units of ``1 / mean ||x - x_0||^2`` so the schedule does not depend on
  the scale of ``X``. The restart with the lowest hard inertia wins.

  ``predict_proba`` gives the soft assignments at the final temperature.

  Attributes:
    cluster_centers_, labels_, inertia_: as :class:`KMeans`.
    temperature_: final temperature (in the units of squared distances).
  """

  def __init__(self, n_clusters: int = 8, *, n_init: int = 10,
               n_anneal_steps: int = 60, alpha_0: float = 0.1,
               random_state=None):
    self.n_clusters = n_clusters
    self.n_init = n_init
    self.n_anneal_steps = n_anneal_steps
    self.alpha_0 = alpha_0
    self.random_state = random_state

  def fit(self, X, y=None):
    del y
    X = self._validate_fit(X)
    result = annealed_soft_kmeans(
        X, self.n_clusters, n_init=self.n_init, steps=self.n_anneal_steps,
        alpha_0=self.alpha_0, seed=self._seed())
    self.cluster_centers_ = np.asarray(result.centroids)
    self.labels_ = np.asarray(result.labels, np.int32)
    self.inertia_ = float(result.inertia)
    self.temperature_ = float(result.temperature)
    return self

  def predict_proba(self, X) -> np.ndarray:
    """Soft assignments ``[m, k]`` at ``temperature_``."""
    validation.check_is_fitted(self, "cluster_centers_")
    X = self._validate(X, reset=False)
    return np.asarray(O.soft_kmeans_assignments(
        X, self.cluster_centers_, temperature=self.temperature_))


# --------------------------------------------------------------------------
# SinkhornKMeans


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _balanced_kmeans(x, centroids, weights, epsilon, *, max_iter):
  n = x.shape[0]

  def plan_for(c):
    cost = O.squared_distances(x, c)
    # The cost is scaled by its mean so `epsilon` is scale free.
    cost = cost / jnp.maximum(jnp.mean(cost), 1e-30)
    return O.sinkhorn(-cost, epsilon=epsilon, b=weights, tol=1e-4,
                      max_iters=500).plan * n

  def step(c, _):
    plan = plan_for(c)
    mass = jnp.sum(plan, axis=0)
    new = (plan.T @ x) / jnp.maximum(mass, 1e-30)[:, None]
    # A cluster with no mass (impossible with positive weights) keeps its
    # centre rather than becoming NaN.
    return jnp.where(mass[:, None] > 0, new, c), None

  centroids, _ = jax.lax.scan(step, centroids, length=max_iter)
  plan = plan_for(centroids)
  return centroids, plan


class SinkhornKMeans(NearestCentroidMixin, JaxClusterer):
  r"""Balanced k-means: the assignment step is an entropic OT plan.

  Starting from :class:`KMeans`, each of ``max_iter`` steps computes the
  Sinkhorn plan between the samples (mass ``1/n`` each) and the clusters
  (mass ``cluster_weights``, uniform by default) for the cost
  ``||x_i - c_j||^2 / mean(cost)`` at ``epsilon``, then moves every centre to
  its plan-weighted mean. ``labels_`` is the row-wise argmax of the final
  plan, so cluster sizes follow the weights (up to ties); ``predict`` on new
  data is the nearest centre, which is not balanced.

  Attributes:
    cluster_centers_: ``[k, d]``.
    labels_: ``[n]`` balanced assignment of the training samples.
    plan_: ``[n, k]`` final plan scaled to unit row sums.
  """

  def __init__(self, n_clusters: int = 8, *, epsilon: float = 0.02,
               max_iter: int = 50, cluster_weights: Sequence[float] | None
               = None, n_init: int = 10, random_state=None):
    self.n_clusters = n_clusters
    self.epsilon = epsilon
    self.max_iter = max_iter
    self.cluster_weights = cluster_weights
    self.n_init = n_init
    self.random_state = random_state

  def fit(self, X, y=None):
    del y
    X = self._validate_fit(X)
    k = self.n_clusters
    if not self.epsilon > 0:
      raise ValueError(f"`epsilon` must be > 0, got {self.epsilon!r}.")
    if self.cluster_weights is None:
      weights = np.full((k,), 1.0 / k, np.float32)
    else:
      weights = np.asarray(self.cluster_weights, np.float32)
      if weights.shape != (k,) or np.any(weights <= 0) or not np.all(
          np.isfinite(weights)):
        raise ValueError(f"`cluster_weights` must be {k} positive numbers "
                         f"(one per cluster), got shape {weights.shape}.")
      weights = weights / weights.sum()
    init = fit_kmeans(X, k, n_init=self.n_init, seed=self._seed())
    centroids, plan = _balanced_kmeans(
        jnp.asarray(X), init.centroids, jnp.asarray(weights),
        float(self.epsilon), max_iter=int(self.max_iter))
    self.cluster_centers_ = np.asarray(centroids)
    self.plan_ = np.asarray(plan)
    self.labels_ = np.argmax(self.plan_, axis=1).astype(np.int32)
    self.n_iter_ = int(self.max_iter)
    return self


# --------------------------------------------------------------------------
# MiniBatchKMeans


@functools.partial(jax.jit, static_argnames=("num_clusters", "n_init"))
def _seeded_init(x, key, *, num_clusters, n_init):
  """Best of ``n_init`` k-means++ draws on ``x`` by their inertia on it."""
  def one(key):
    c = kmeans_lib._kmeans_plus_plus(x, num_clusters, key)  # pylint: disable=protected-access
    return c, jnp.sum(jnp.min(O.squared_distances(x, c), axis=1))
  centroids, inertia = jax.vmap(one)(jax.random.split(key, n_init))
  return centroids[jnp.argmin(inertia)]


@jax.jit
def _nearest_and_distance(x, row_ids, centroids):
  del row_ids
  dist = O.squared_distances(x, centroids)
  return jnp.argmin(dist, axis=1).astype(jnp.int32), jnp.min(dist, axis=1)


class MiniBatchKMeans(NearestCentroidMixin, JaxClusterer):
  """Mini-batch k-means (Sculley, 2010) as ``sklearn.cluster.MiniBatchKMeans``.

  ``fit``: k-means++ (``n_init`` draws, the best by inertia) on
  ``init_size`` random rows, then ``max_iter * n // batch_size`` steps on
  batches drawn with replacement, each moving every centroid to the running
  mean of all samples assigned to it so far
  (:func:`clustering.algorithms.kmeans.minibatch_step`), ``scan``-ned on
  the device a group of batches at a time; it stops early when the
  smoothed batch inertia has not improved for ``max_no_improvement`` steps.
  ``X`` may be a ``np.memmap``: only the drawn rows are read. ``labels_``
  and ``inertia_`` are then computed over ``X`` in blocks.

  ``partial_fit(X)``: one step on ``X`` as the batch (the first call draws
  the initial centroids from it), for data read in chunks.

  Centroids with fewer than ``reassignment_ratio`` times the largest count
  are moved onto random samples of the batch, as scikit-learn does (``0``:
  never).

  Attributes:
    cluster_centers_: ``[k, d]``.
    labels_: ``[n]`` nearest centre of each training row (``partial_fit``:
      of the last chunk).
    inertia_: sum of squared distances to the nearest centre over them.
    counts_: ``[k]`` samples each centre has averaged.
    n_steps_: mini-batch steps taken; ``n_iter_``: in passes over ``X``.
  """

  def __init__(self, n_clusters: int = 8, *, batch_size: int = 1024,
               max_iter: int = 100, max_no_improvement: int | None = 10,
               init_size: int | None = None, n_init: int = 1,
               reassignment_ratio: float = 0.01, random_state=None):
    self.n_clusters = n_clusters
    self.batch_size = batch_size
    self.max_iter = max_iter
    self.max_no_improvement = max_no_improvement
    self.init_size = init_size
    self.n_init = n_init
    self.reassignment_ratio = reassignment_ratio
    self.random_state = random_state

  def _check_params(self):
    if not 0.0 <= self.reassignment_ratio < 1.0:
      raise ValueError("`reassignment_ratio` must be in [0, 1), got "
                       f"{self.reassignment_ratio!r}.")
    for name in ("batch_size", "max_iter", "n_init"):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    if self.max_no_improvement is not None and not (
        isinstance(self.max_no_improvement, (int, np.integer))
        and self.max_no_improvement >= 1):
      raise ValueError("`max_no_improvement` must be a positive int or "
                       f"None, got {self.max_no_improvement!r}.")

  def _init(self, x, rng) -> kmeans_lib.MiniBatchState:
    k = self.n_clusters
    init_size = self.init_size or 3 * max(self.batch_size, k)
    rows = np.sort(rng.choice(x.shape[0], min(init_size, x.shape[0]),
                              replace=False))
    centroids = _seeded_init(jnp.asarray(np.asarray(x[rows], np.float32)),
                             jax.random.key(int(rng.integers(2**31))),
                             num_clusters=k, n_init=int(self.n_init))
    return kmeans_lib.minibatch_init(
        centroids, jax.random.key(int(rng.integers(2**31))))

  def _steps(self, state, batches, num_examples, max_no_improvement):
    return kmeans_lib.minibatch_steps(
        state, batches, num_examples=num_examples,
        max_no_improvement=max_no_improvement,
        reassignment_ratio=float(self.reassignment_ratio))

  def fit(self, X, y=None):
    del y
    self._check_params()
    X = self._validate_fit(X)
    n = X.shape[0]
    rng = np.random.default_rng(self._seed())
    state = self._init(X, rng)
    b = int(min(self.batch_size, n))
    num_steps = max(1, int(self.max_iter) * n // b)
    # A group of batches per scan: ~64 MB of samples on the device.
    group = int(max(1, min(num_steps, (16 << 20) // (b * X.shape[1]))))
    for start in range(0, num_steps, group):
      size = min(group, num_steps - start)
      rows = rng.integers(0, n, size=(size, b))
      state = self._steps(
          state, jnp.asarray(X[rows.reshape(-1)].reshape(size, b, -1)), n,
          self.max_no_improvement)
      if bool(state.stopped):
        break
    self._state = state
    self._set_state(state)
    self.n_steps_ = int(state.steps)
    self.n_iter_ = int(np.ceil(self.n_steps_ * b / n))
    self._label(X)
    return self

  def partial_fit(self, X, y=None):
    """One mini-batch step on ``X [b, d]`` (the first call also draws the
    initial centroids from it, so it needs ``b >= n_clusters``)."""
    del y
    self._check_params()
    first = not hasattr(self, "cluster_centers_")
    X = self._validate_fit(X) if first else self._validate(X, reset=False)
    if first:
      self._state = self._init(X, np.random.default_rng(self._seed()))
    self._state = self._steps(self._state, jnp.asarray(X)[None], X.shape[0],
                              None)
    self._set_state(self._state)
    self.n_steps_ = int(self._state.steps)
    self._label(X)
    return self

  def _set_state(self, state):
    self.cluster_centers_ = np.asarray(state.centroids)
    self.counts_ = np.asarray(state.counts)

  def _label(self, X):
    labels, dist = blocks.map_row_blocks(
        _nearest_and_distance, X, jnp.asarray(self.cluster_centers_),
        block_size=65536)
    self.labels_ = labels.astype(np.int32)
    self.inertia_ = float(np.sum(dist, dtype=np.float64))
