"""Centroid estimators: k-means, annealed soft k-means, balanced k-means.

* :class:`KMeans` - Lloyd with k-means++ and restarts under ``vmap``.
* :class:`SoftKMeans` - DKM's annealed soft k-means (deterministic annealing).
* :class:`SinkhornKMeans` - k-means whose assignment step is a balanced
  entropic OT plan: every cluster receives ``n / k`` samples (or the given
  ``cluster_weights``).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.utils import validation

import objectives as O
from clustering.algorithms.kmeans import annealed_soft_kmeans
from clustering.algorithms.kmeans import kmeans as fit_kmeans
from clustering.estimators.base import JaxClusterer
from clustering.estimators.base import NearestCentroidMixin

__all__ = ["KMeans", "SoftKMeans", "SinkhornKMeans"]


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
