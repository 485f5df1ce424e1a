"""What every estimator shares: scikit-learn's conventions on JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from sklearn import base as sk_base
from sklearn.utils import validation

import objectives as O

__all__ = ["JaxClusterer", "NearestCentroidMixin"]


class JaxClusterer(sk_base.ClusterMixin, sk_base.BaseEstimator):
  """Shared input handling: float32, finite, at least ``n_clusters`` rows."""

  def _validate(self, X, *, reset: bool) -> np.ndarray:
    X = validation.validate_data(self, X, reset=reset,
                                 dtype=[np.float32, np.float64])
    return np.asarray(X, np.float32)

  def _validate_fit(self, X) -> np.ndarray:
    X = self._validate(X, reset=True)
    k = self.n_clusters
    if not isinstance(k, (int, np.integer)) or k < 1:
      raise ValueError(f"`n_clusters` must be a positive int, got {k!r}.")
    if k > X.shape[0]:
      raise ValueError(f"`n_clusters`={k} exceeds the number of samples "
                       f"n={X.shape[0]} in `X` {X.shape}.")
    return X

  def _seed(self) -> int:
    return int(validation.check_random_state(self.random_state).randint(
        np.iinfo(np.int32).max))

  def __sklearn_tags__(self):
    tags = super().__sklearn_tags__()
    tags.input_tags.allow_nan = False
    return tags


class NearestCentroidMixin:
  """``predict``: the nearest row of ``cluster_centers_``."""

  def predict(self, X) -> np.ndarray:
    """Index of the nearest centre for each row of ``X [m, d]`` -> ``[m]``."""
    validation.check_is_fitted(self, "cluster_centers_")
    X = self._validate(X, reset=False)
    return np.asarray(_nearest(jnp.asarray(X),
                               jnp.asarray(self.cluster_centers_)))


@jax.jit
def _nearest(x, centroids):
  return jnp.argmin(O.squared_distances(x, centroids), axis=1).astype(
      jnp.int32)
