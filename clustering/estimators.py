r"""scikit-learn-compatible estimators over a feature matrix ``X [n, d]``.

For clustering embeddings (or pixels) directly, without a training loop:

    from clustering import SinkhornKMeans
    labels = SinkhornKMeans(n_clusters=10, random_state=0).fit_predict(X)

Every estimator follows scikit-learn's conventions (constructor arguments are
stored unchanged, fitted attributes end in ``_``, ``get_params``/
``set_params``, ``fit``/``fit_predict``/``labels_``, ``random_state``) and runs
its numerical work jitted on whatever device JAX has, in float32. They pass
``sklearn.utils.estimator_checks`` except where a check contradicts what the
method is (listed in ``tests/clustering/estimators_test.py`` with the reason).

* :class:`KMeans` - Lloyd with k-means++ and restarts under ``vmap``.
* :class:`SoftKMeans` - DKM's annealed soft k-means (deterministic annealing).
* :class:`SinkhornKMeans` - k-means whose assignment step is a balanced
  entropic OT plan: every cluster receives ``n / k`` samples (or the given
  ``cluster_weights``).
* :class:`ClAM` - associative-memory clustering: k-means-initialised memories
  trained by masked pattern completion; prediction runs the AM dynamics.
* :class:`MCR2Clustering` - MLC/CPP's doubly stochastic membership ``Gamma``
  of (optionally learned) unit-norm features, then spectral clustering of
  ``Gamma``. Transductive, so no ``predict``.
* :class:`IConClustering` - a cluster head trained by I-Con's debiased kNN
  InfoNCE (KL between a kNN kernel and the cluster kernel).
"""

from __future__ import annotations

import functools
from typing import Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn import base as sk_base
from sklearn.utils import validation

import objectives as O
from clustering import models
from clustering import neighbors as neighbors_lib
from clustering import spectral
from clustering.methods import mcr2 as mcr2_method
from clustering.kmeans import annealed_soft_kmeans
from clustering.kmeans import kmeans as fit_kmeans

__all__ = ["KMeans", "SoftKMeans", "SinkhornKMeans", "ClAM",
           "MCR2Clustering", "IConClustering"]


class _JaxClusterer(sk_base.ClusterMixin, sk_base.BaseEstimator):
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


class _NearestCentroidMixin:
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


@jax.jit
def _inertia(x, centroids):
  return jnp.sum(jnp.min(O.squared_distances(x, centroids), axis=1))


# --------------------------------------------------------------------------
# KMeans


class KMeans(_NearestCentroidMixin, _JaxClusterer):
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


class SoftKMeans(_NearestCentroidMixin, _JaxClusterer):
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


class SinkhornKMeans(_NearestCentroidMixin, _JaxClusterer):
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
# ClAM


@functools.partial(jax.jit, static_argnames=("num_steps", "max_iter",
                                             "batch_size", "lr"))
def _train_clam(x, memories, key, beta, alpha, mask_fraction, *, num_steps,
                max_iter, batch_size, lr):
  opt = optax.adam(lr)
  fill = jnp.mean(x, axis=0)  # masked coordinates start at the feature mean
  n = x.shape[0]

  def step(carry, key):
    params, state = carry
    batch_key, mask_key = jax.random.split(key)
    rows = jax.random.choice(batch_key, n, (batch_size,), replace=False)
    xb = x[rows]
    mask = (jax.random.uniform(mask_key, xb.shape) < mask_fraction).astype(
        x.dtype)
    loss, grad = jax.value_and_grad(
        lambda p: O.clam_loss(xb, p, mask, beta=beta, alpha=alpha,
                              num_steps=num_steps, fill_value=fill))(params)
    updates, state = opt.update(grad, state, params)
    return (optax.apply_updates(params, updates), state), loss

  (memories, _), losses = jax.lax.scan(
      step, (memories, opt.init(memories)), jax.random.split(key, max_iter))
  return memories, losses


class ClAM(_JaxClusterer):
  r"""Clustering with associative memories (Saha et al., 2023).

  Memories start at :class:`KMeans` centroids and are trained with Adam on
  :func:`objectives.clam_loss`: a random ``mask_fraction`` of each sample's
  coordinates is reset to the feature mean and completed by ``n_steps`` AM
  updates; the loss is the completion error. ``predict`` runs the dynamics
  from the full sample and returns the nearest memory.

  ``beta=None`` uses ``16 / mean_i min_j ||x_i - c_j||^2`` at the k-means
  start: sharp enough that each sample is pulled mostly by one memory,
  whatever the scale of ``X``.

  Attributes:
    cluster_centers_: ``[k, d]`` trained memories.
    beta_: the inverse temperature used.
    labels_: ``[n]``.
    loss_curve_: ``[max_iter]`` training losses.
  """

  def __init__(self, n_clusters: int = 8, *, beta: float | None = None,
               alpha: float = 0.1, n_steps: int = 10,
               mask_fraction: float = 0.2, max_iter: int = 300,
               learning_rate: float = 1e-2, batch_size: int = 4096,
               n_init: int = 10, random_state=None):
    self.n_clusters = n_clusters
    self.beta = beta
    self.alpha = alpha
    self.n_steps = n_steps
    self.mask_fraction = mask_fraction
    self.max_iter = max_iter
    self.learning_rate = learning_rate
    self.batch_size = batch_size
    self.n_init = n_init
    self.random_state = random_state

  def fit(self, X, y=None):
    del y
    X = self._validate_fit(X)
    if not 0 < self.mask_fraction <= 1:
      raise ValueError("`mask_fraction` must be in (0, 1], got "
                       f"{self.mask_fraction!r}.")
    seed = self._seed()
    init = fit_kmeans(X, self.n_clusters, n_init=self.n_init,
                             seed=seed)
    x = jnp.asarray(X)
    if self.beta is None:
      spread = float(_inertia(x, init.centroids)) / X.shape[0]
      beta = 16.0 / max(spread, 1e-30)
    else:
      beta = float(self.beta)
      if not beta > 0:
        raise ValueError(f"`beta` must be > 0, got {self.beta!r}.")
    memories, losses = _train_clam(
        x, init.centroids, jax.random.PRNGKey(seed), beta, self.alpha,
        self.mask_fraction, num_steps=int(self.n_steps),
        max_iter=int(self.max_iter),
        batch_size=int(min(self.batch_size, X.shape[0])),
        lr=float(self.learning_rate))
    self.cluster_centers_ = np.asarray(memories)
    self.beta_ = beta
    self.loss_curve_ = np.asarray(losses)
    self.n_iter_ = int(self.max_iter)
    self.labels_ = self._assign(x)
    return self

  def _assign(self, x):
    return np.asarray(O.am_assignments(
        x, self.cluster_centers_, beta=self.beta_, alpha=self.alpha,
        num_steps=int(self.n_steps)), np.int32)

  def predict(self, X) -> np.ndarray:
    """AM dynamics from each row of ``X [m, d]``, then the nearest memory."""
    validation.check_is_fitted(self, "cluster_centers_")
    return self._assign(jnp.asarray(self._validate(X, reset=False)))


# --------------------------------------------------------------------------
# MCR2Clustering


def _unit_rows(x: np.ndarray, center: bool) -> np.ndarray:
  if center:
    x = x - x.mean(axis=0, keepdims=True)
  return np.asarray(models.l2_normalize(jnp.asarray(x)))


def _train_cpp_heads(x, key, *, hidden, z_dim, eta, eps_sq, frobenius_weight,
                     max_iter, batch_size, lr, seed):
  """Minibatch CPP: ``-R(Z) + R_c(Z, Gamma(C)) + w/2 ||Gamma||_F^2``."""
  # MLC/CPP's two heads on an identity backbone (the features are frozen).
  heads = mcr2_method.MCR2Model(models.Identity((x.shape[1],)),
                                head_hidden=tuple(hidden), z_dim=z_dim,
                                rngs=nnx.Rngs(seed))
  # MLC's initialisation: the cluster head starts as the feature head.
  nnx.update(heads.cluster_head, nnx.state(heads.feature_head))
  graphdef, params, rest = nnx.split(heads, nnx.Param, ...)
  opt = optax.adam(lr)
  n = x.shape[0]

  def loss_fn(params, rest, xb):
    model = nnx.merge(graphdef, params, rest, copy=True)
    z, c = model(xb, train=True)
    gamma = O.doubly_stochastic_membership(c, eta=eta, differentiation="cpp")
    loss = (-O.coding_rate(z, eps_sq=eps_sq)
            + O.compression_rate(z, gamma, eps_sq=eps_sq)
            + 0.5 * frobenius_weight * jnp.sum(jnp.square(gamma))
            / xb.shape[0])
    return loss, nnx.split(model, nnx.Param, ...)[2]

  @jax.jit
  def train(params, rest, key):
    def step(carry, key):
      params, rest, state = carry
      rows = jax.random.choice(key, n, (batch_size,), replace=False)
      (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          params, rest, x[rows])
      updates, state = opt.update(grads, state, params)
      return (optax.apply_updates(params, updates), rest, state), loss

    (params, rest, _), losses = jax.lax.scan(
        step, (params, rest, opt.init(params)),
        jax.random.split(key, max_iter))
    return params, rest, losses

  params, rest, losses = train(params, rest, key)
  model = nnx.merge(graphdef, params, rest, copy=True)
  return model, np.asarray(losses)


class MCR2Clustering(_JaxClusterer):
  r"""MLC/CPP clustering: doubly stochastic membership, then spectral.

  Rows of ``X`` are centred (``center=True``) and L2-normalised to ``Z``.
  ``Gamma = doubly_stochastic_membership(Z, eta)`` (Sinkhorn to
  convergence, ``[n, n]``) is the soft co-membership of every pair; its
  diagonal (each sample with itself) carries no clustering information
  and is dropped, and spectral clustering of the rest gives ``labels_``.

  With ``learn_head=True`` (CPP on frozen features) two MLP heads are first
  trained on minibatches by ``-R(Z) + R_c(Z, Gamma(C)) + w/2 ||Gamma||_F^2``
  (``eps_sq``, ``frobenius_weight`` and CPP's ``head_eta = 0.175`` for the
  training membership; the cluster head starts as a copy of the feature
  head), and ``Gamma`` comes from the learned cluster head ``C`` instead.
  This is CPP's recipe for pre-trained (CLIP/DINO) features; on raw pixels
  without augmentations it does not beat ``learn_head=False``.

  Memory is ``O(n^2)`` (``Gamma``): fine to tens of thousands of samples.
  The method is transductive, so there is no ``predict``.

  Attributes:
    labels_: ``[n]``.
    embedding_: ``[n, d']`` the unit-norm rows ``Gamma`` was computed from.
    n_iter_: head-training steps (``learn_head=True``), else the Sinkhorn
      iterations of ``Gamma``.
    loss_curve_: head-training losses (``learn_head=True`` only).
  """

  def __init__(self, n_clusters: int = 8, *, eta: float = 0.05,
               center: bool = True, learn_head: bool = False,
               head_eta: float = 0.175,
               hidden_layer_sizes: Sequence[int] = (256,), z_dim: int = 32,
               eps_sq: float = 0.1, frobenius_weight: float = 0.05,
               max_iter: int = 500, batch_size: int = 512,
               learning_rate: float = 1e-3, random_state=None):
    self.n_clusters = n_clusters
    self.eta = eta
    self.center = center
    self.learn_head = learn_head
    self.head_eta = head_eta
    self.hidden_layer_sizes = hidden_layer_sizes
    self.z_dim = z_dim
    self.eps_sq = eps_sq
    self.frobenius_weight = frobenius_weight
    self.max_iter = max_iter
    self.batch_size = batch_size
    self.learning_rate = learning_rate
    self.random_state = random_state

  def fit(self, X, y=None):
    del y
    X = self._validate_fit(X)
    if not self.eta > 0:
      raise ValueError(f"`eta` must be > 0, got {self.eta!r}.")
    seed = self._seed()
    z = _unit_rows(X, self.center)
    if self.learn_head:
      model, self.loss_curve_ = _train_cpp_heads(
          jnp.asarray(z), jax.random.PRNGKey(seed),
          hidden=self.hidden_layer_sizes, z_dim=int(self.z_dim),
          eta=float(self.head_eta), eps_sq=float(self.eps_sq),
          frobenius_weight=float(self.frobenius_weight),
          max_iter=int(self.max_iter),
          batch_size=int(min(self.batch_size, X.shape[0])),
          lr=float(self.learning_rate), seed=seed)
      z = np.asarray(model(jnp.asarray(z), train=False)[1])
    self.embedding_ = z
    # Gamma = n P for the OT plan P on |Z Z^T| (what
    # `doubly_stochastic_membership(..., differentiation='implicit')`
    # computes); called directly for its iteration count.
    zj = jnp.asarray(z)
    ot = O.sinkhorn(jnp.abs(zj @ zj.T), epsilon=float(self.eta), tol=1e-6,
                    max_iters=1000)
    self.n_iter_ = (int(self.max_iter) if self.learn_head
                    else int(ot.iterations))
    if self.n_clusters == 1:
      self.labels_ = np.zeros((X.shape[0],), np.int32)
      return self
    gamma = X.shape[0] * np.array(ot.plan)
    np.fill_diagonal(gamma, 0.0)
    self.labels_ = spectral.spectral_clustering(gamma, self.n_clusters,
                                                seed=seed)
    return self


# --------------------------------------------------------------------------
# IConClustering


def _icon_loss(graphdef, params, rest, x, neighbors, key, *, alpha,
               temperature, batch_size, train):
  """Debiased kNN InfoNCE on ``batch_size`` anchors and one partner each."""
  n, num_neighbors = neighbors.shape
  anchor_key, pick_key = jax.random.split(key)
  anchors = jax.random.choice(anchor_key, n, (batch_size,), replace=False)
  partners = neighbors[anchors, jax.random.randint(
      pick_key, (batch_size,), 0, num_neighbors)]
  model = nnx.merge(graphdef, params, rest, copy=True)
  logits = model(x[jnp.concatenate([anchors, partners])], train=train)
  probs = jax.nn.softmax(logits / temperature, axis=-1)
  # p(j|i) puts its mass on i's sampled kNN partner.
  pair_ids = jnp.tile(jnp.arange(batch_size), 2)
  log_p = O.debias(O.augmentation_kernel(pair_ids), alpha=alpha)
  log_q = O.debias(O.cluster_kernel(probs), alpha=alpha)
  return O.icon_loss(log_p, log_q), nnx.split(model, nnx.Param, ...)[2]


@functools.partial(jax.jit, static_argnames=(
    "graphdef", "max_iter", "batch_size", "lr"))
def _fit_icon_heads(graphdef, params, rest, x, neighbors, keys, score_keys,
                    alpha, temperature, *, max_iter, batch_size, lr):
  opt = optax.adam(lr)
  loss_fn = functools.partial(_icon_loss, graphdef, x=x, neighbors=neighbors,
                              alpha=alpha, temperature=temperature,
                              batch_size=batch_size)

  def train_one(params, rest, key):
    def step(carry, key):
      params, rest, state = carry
      (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          params, rest, key=key, train=True)
      updates, state = opt.update(grads, state, params)
      return (optax.apply_updates(params, updates), rest, state), loss

    (params, rest, _), losses = jax.lax.scan(
        step, (params, rest, opt.init(params)), jax.random.split(key, max_iter))
    # The same draws for every restart: an unsupervised score to pick by.
    score = jnp.mean(jax.vmap(
        lambda k: loss_fn(params, rest, key=k, train=False)[0])(score_keys))
    return params, rest, losses, score

  return jax.vmap(train_one)(params, rest, keys)


def _stack(trees):
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _train_icon_heads(x, neighbors, key, *, seeds, hidden, num_clusters,
                      alpha, temperature, max_iter, batch_size, lr):
  """Trains one head per seed (under vmap); returns the one whose
  I-Con loss on a fixed set of batches is lowest, its losses, all scores."""
  heads = [models.ProjectionHead(x.shape[1], tuple(hidden), num_clusters,
                                 normalize=False, rngs=nnx.Rngs(int(s)))
           for s in seeds]
  splits = [nnx.split(head, nnx.Param, ...) for head in heads]
  graphdef = splits[0][0]
  params = _stack([p for _, p, _ in splits])
  rest = _stack([r for _, _, r in splits])
  key, score_key = jax.random.split(key)
  params, rest, losses, scores = _fit_icon_heads(
      graphdef, params, rest, x, neighbors, jax.random.split(key, len(seeds)),
      jax.random.split(score_key, 16), alpha, temperature,
      max_iter=max_iter, batch_size=batch_size, lr=lr)
  best = int(jnp.argmin(scores))
  pick = lambda tree: jax.tree.map(lambda leaf: leaf[best], tree)
  model = nnx.merge(graphdef, pick(params), pick(rest), copy=True)
  return model, np.asarray(losses[best]), np.asarray(scores)


class IConClustering(_JaxClusterer):
  r"""A cluster head trained by I-Con's debiased kNN InfoNCE clustering.

  Features are standardised (one global mean and scale). Each sample's
  ``n_neighbors`` nearest neighbours are mined once
  (:func:`clustering.nearest_neighbors`); every step draws ``batch_size``
  anchors and one random neighbour of each, and minimises
  :func:`objectives.icon_loss` between ``p(j|i)`` (mass on the partner) and
  the cluster kernel ``q(j|i) = sum_c P_ic P_jc / sum_l P_lc`` of the head's
  softmax ``P``, both debiased by ``alpha`` (Alshammari et al., 2025).
  ``n_init`` heads are trained at once (under ``vmap``) and the one with the
  lowest loss on a fixed set of held-out draws is kept: the objective has
  merge-and-split local optima, and its value tells them apart.
  ``predict`` is the most probable cluster.

  Attributes:
    labels_: ``[n]``; ``loss_curve_``: ``[max_iter]`` of the kept head;
    ``restart_scores_``: ``[n_init]`` the selection losses.
  """

  def __init__(self, n_clusters: int = 8, *, n_neighbors: int = 10,
               hidden_layer_sizes: Sequence[int] = (), alpha: float = 0.5,
               temperature: float = 1.0, max_iter: int = 2000,
               batch_size: int = 256, learning_rate: float = 1e-3,
               n_init: int = 3, random_state=None):
    self.n_clusters = n_clusters
    self.n_neighbors = n_neighbors
    self.hidden_layer_sizes = hidden_layer_sizes
    self.alpha = alpha
    self.temperature = temperature
    self.max_iter = max_iter
    self.batch_size = batch_size
    self.learning_rate = learning_rate
    self.n_init = n_init
    self.random_state = random_state

  def fit(self, X, y=None):
    del y
    X = self._validate_fit(X)
    n = X.shape[0]
    if n < 2:
      raise ValueError("IConClustering needs n_samples >= 2 (it pairs "
                       f"neighbours); got 1 sample, `X` {X.shape}.")
    if not self.n_neighbors >= 1:
      raise ValueError(f"`n_neighbors` must be >= 1, got "
                       f"{self.n_neighbors!r}.")
    seed = self._seed()
    self.mean_ = X.mean(axis=0)
    self.scale_ = float(max(X.std(), 1e-12))
    x = (X - self.mean_) / self.scale_
    k_nn = int(min(self.n_neighbors, n - 1))
    nn = neighbors_lib.nearest_neighbors(x, k_nn, metric="sqeuclidean")
    if not self.n_init >= 1:
      raise ValueError(f"`n_init` must be >= 1, got {self.n_init!r}.")
    self.model_, self.loss_curve_, self.restart_scores_ = _train_icon_heads(
        jnp.asarray(x), jnp.asarray(nn), jax.random.PRNGKey(seed),
        seeds=[seed + i for i in range(int(self.n_init))],
        hidden=self.hidden_layer_sizes, num_clusters=self.n_clusters,
        alpha=float(self.alpha), temperature=float(self.temperature),
        max_iter=int(self.max_iter),
        batch_size=int(min(self.batch_size, n)),
        lr=float(self.learning_rate))
    self.n_iter_ = int(self.max_iter)
    self.labels_ = np.argmax(self._logits(x), axis=1).astype(np.int32)
    return self

  def _logits(self, x):
    return np.asarray(self.model_(jnp.asarray(x), train=False))

  def predict_proba(self, X) -> np.ndarray:
    """Cluster probabilities ``[m, k]``."""
    validation.check_is_fitted(self, "model_")
    x = (self._validate(X, reset=False) - self.mean_) / self.scale_
    return np.asarray(jax.nn.softmax(self._logits(x) / self.temperature, -1))

  def predict(self, X) -> np.ndarray:
    """Most probable cluster ``[m]``."""
    return np.argmax(self.predict_proba(X), axis=1).astype(np.int32)
