r"""Estimators that fit a method's loss on a feature matrix ``X [n, d]``.

Each builds its method's model on an identity backbone
(:mod:`clustering.models`), fits the method's own loss
(:mod:`clustering.methods`) with :func:`clustering.estimators.fit.fit`, and
assigns by the method's own rule, so an estimator and a config train the
same objective:

* :class:`ClAM` - k-means-initialised memories trained by
  :func:`~clustering.methods.clam.clam_completion_loss`;
* :class:`MCR2Clustering` - MLC/CPP's doubly stochastic membership of the
  (optionally learned, :func:`~clustering.methods.mcr2.mlc_loss`) unit-norm
  features, then spectral clustering
  (:func:`~clustering.methods.mcr2.assign`). Transductive, so no
  ``predict``;
* :class:`IConClustering` - a cluster head trained by I-Con's debiased kNN
  InfoNCE (:func:`~clustering.methods.icon.icon_clustering_loss`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
from sklearn.utils import validation

from clustering import models
from clustering.algorithms import neighbors as neighbors_lib
from clustering.estimators import fit as fit_lib
from clustering.estimators.base import JaxClusterer
from clustering.methods import base as method_base
from clustering.methods import clam
from clustering.methods import icon
from clustering.methods import mcr2

__all__ = ["ClAM", "MCR2Clustering", "IConClustering"]


def _check_positive(value, name: str) -> float:
  if not value > 0:
    raise ValueError(f"`{name}` must be > 0, got {value!r}.")
  return float(value)


# --------------------------------------------------------------------------
# ClAM


@dataclasses.dataclass(frozen=True)
class _ClAMFit:
  beta: float
  alpha: float
  num_steps: int
  mask_fraction: float


def _clam_objective(model, rows, key, data, hp: _ClAMFit):
  z, _ = model(data["x"][rows], train=True)
  return clam.clam_completion_loss(
      z, model.prototypes[...], key, fill_value=model.fill[...],
      beta=hp.beta, alpha=hp.alpha, num_steps=hp.num_steps,
      mask_fraction=hp.mask_fraction)


class ClAM(JaxClusterer):
  r"""Clustering with associative memories (Saha et al., 2023).

  Memories start at :class:`KMeans` centroids and the fill value at the
  feature mean; the memories are then trained with Adam on ClAM's masked
  completion loss (:func:`clustering.methods.clam.clam_completion_loss`).
  ``predict`` runs the dynamics from the full sample and returns the
  nearest memory.

  ``beta=None`` uses :func:`clustering.methods.clam.auto_beta`,
  ``16 / mean_i min_j ||x_i - c_j||^2`` at the k-means start, whatever the
  scale of ``X`` (the reference's 1.1-2.4 assume z-scored features).

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
    model = models.PrototypeModel(
        models.Embedding(models.Identity((X.shape[1],))), self.n_clusters)
    method_base.init_prototypes(model, X, seed=seed, n_init=self.n_init)
    self.beta_ = (clam.auto_beta(X, model.prototypes[...])
                  if self.beta is None else _check_positive(self.beta,
                                                            "beta"))
    hp = _ClAMFit(self.beta_, float(self.alpha), int(self.n_steps),
                  float(self.mask_fraction))
    model, self.loss_curve_ = fit_lib.fit(
        _clam_objective, model, {"x": jnp.asarray(X)}, hp,
        key=jax.random.key(seed), num_examples=X.shape[0],
        num_steps=self.max_iter, batch_size=self.batch_size,
        learning_rate=self.learning_rate)
    self.cluster_centers_ = np.asarray(model.prototypes[...])
    self.n_iter_ = int(self.max_iter)
    self.labels_ = self._assign(X)
    return self

  def _assign(self, x):
    distances = clam.memory_distances(
        jnp.asarray(x), jnp.asarray(self.cluster_centers_), beta=self.beta_,
        alpha=self.alpha, num_steps=int(self.n_steps))
    return np.asarray(jnp.argmin(distances, axis=1), np.int32)

  def predict(self, X) -> np.ndarray:
    """AM dynamics from each row of ``X [m, d]``, then the nearest memory."""
    validation.check_is_fitted(self, "cluster_centers_")
    return self._assign(self._validate(X, reset=False))


# --------------------------------------------------------------------------
# MCR2Clustering


@dataclasses.dataclass(frozen=True)
class _CPPFit:
  eps_sq: float
  eta: float
  frobenius_weight: float


def _cpp_objective(model, rows, key, data, hp: _CPPFit):
  del key
  z, c = model(data["z"][rows], train=True)
  return mcr2.mlc_loss(z[None], c[None], eps_sq=hp.eps_sq, eta=hp.eta,
                       differentiation="cpp",
                       frobenius_weight=hp.frobenius_weight)


class MCR2Clustering(JaxClusterer):
  r"""MLC/CPP clustering: doubly stochastic membership, then spectral.

  Rows of ``X`` are centred (``center=True``) and L2-normalised to ``Z``;
  the labels are MLC/CPP's assignment
  (:func:`clustering.methods.mcr2.assign`): spectral clustering of the
  membership ``Gamma`` of ``Z`` at ``eta`` (Sinkhorn to convergence, its
  diagonal dropped).

  With ``learn_head=True`` (CPP on frozen features) MLC/CPP's two heads
  (:class:`clustering.models.MCR2Model` on an identity backbone, the
  cluster head starting as a copy of the feature head) are first trained
  on minibatches by CPP's loss, :func:`clustering.methods.mcr2.mlc_loss`
  with ``eps_sq``, ``frobenius_weight`` (``w/2 ||Gamma||_F^2``, not divided
  by the batch size) and ``head_eta`` for the training membership
  (``None``: CPP's 0.175 at 10 clusters, sharpened for more clusters by
  :func:`clustering.methods.mcr2.membership_eta`), and ``Gamma`` comes from
  the learned cluster head instead. This is CPP's recipe for pre-trained
  (CLIP/DINO) features.

  Up to ``m = max(n_anchors, 8 * n_clusters)`` samples ``Gamma`` is
  ``[n, n]``; above, it is the ``Gamma`` of ``m`` samples drawn with
  ``random_state``, every sample joining the cluster that holds most of
  its row against them (memory ``O(m^2 + n)``; ``None``: always dense). The method is
  transductive, so there is no ``predict``.

  Attributes:
    labels_: ``[n]``.
    embedding_: ``[n, d']`` the unit-norm rows ``Gamma`` was computed from.
    converged_: whether ``Gamma``'s Sinkhorn reached its tolerance.
    n_iter_: head-training steps (``learn_head=True``), else the Sinkhorn
      iterations of ``Gamma``.
    loss_curve_: head-training losses (``learn_head=True`` only).
  """

  def __init__(self, n_clusters: int = 8, *, eta: float = 0.05,
               center: bool = True, learn_head: bool = False,
               head_eta: float | None = None,
               hidden_layer_sizes: Sequence[int] = (256,), z_dim: int = 32,
               eps_sq: float = 0.1, frobenius_weight: float = 0.05,
               max_iter: int = 500, batch_size: int = 512,
               learning_rate: float = 1e-3, n_anchors: int | None = 4096,
               random_state=None):
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
    self.n_anchors = n_anchors
    self.random_state = random_state

  def fit(self, X, y=None):
    del y
    X = self._validate_fit(X)
    eta = _check_positive(self.eta, "eta")
    if self.n_anchors is not None and not (
        isinstance(self.n_anchors, (int, np.integer)) and self.n_anchors >= 2):
      raise ValueError(f"`n_anchors`={self.n_anchors!r} must be an integer "
                       ">= 2 or None.")
    seed = self._seed()
    if self.center:
      X = X - X.mean(axis=0, keepdims=True)
    z = models.l2_normalize(jnp.asarray(X))
    if self.learn_head:
      heads = models.MCR2Model(models.Identity((X.shape[1],)),
                               head_hidden=tuple(self.hidden_layer_sizes),
                               z_dim=int(self.z_dim), rngs=nnx.Rngs(seed))
      mcr2.init_cluster_head(heads)
      hp = _CPPFit(_check_positive(self.eps_sq, "eps_sq"),
                   mcr2.membership_eta(0.175, self.n_clusters)
                   if self.head_eta is None
                   else _check_positive(self.head_eta, "head_eta"),
                   float(self.frobenius_weight))
      heads, self.loss_curve_ = fit_lib.fit(
          _cpp_objective, heads, {"z": z}, hp, key=jax.random.key(seed),
          num_examples=X.shape[0], num_steps=self.max_iter,
          batch_size=self.batch_size, learning_rate=self.learning_rate)
      z = heads(z, train=False)[1]
    self.embedding_ = np.asarray(z)
    if self.n_clusters == 1:
      self.labels_ = np.zeros((X.shape[0],), np.int32)
      self.converged_, self.n_iter_ = True, int(self.max_iter)
      return self
    num_anchors = None if self.n_anchors is None else max(
        self.n_anchors, mcr2.ANCHORS_PER_CLUSTER * self.n_clusters)
    self.labels_, info = mcr2.assign(z, self.n_clusters, eta=eta, seed=seed,
                                     num_anchors=num_anchors)
    self.converged_ = info["membership_converged"]
    self.n_iter_ = (int(self.max_iter) if self.learn_head
                    else info["membership_iterations"])
    return self


# --------------------------------------------------------------------------
# IConClustering


@dataclasses.dataclass(frozen=True)
class _IConFit:
  alpha: float
  temperature: float


def _icon_objective(model, rows, key, data, hp: _IConFit):
  """I-Con's loss on ``rows`` and one random kNN partner of each."""
  neighbors = data["neighbors"]
  partners = neighbors[rows, jax.random.randint(
      key, rows.shape, 0, neighbors.shape[1])]
  _, logits = model(data["x"][jnp.concatenate([rows, partners])], train=True)
  return icon.icon_clustering_loss(logits, temperature=hp.temperature,
                                   alpha_p=hp.alpha, alpha_q=hp.alpha)


class IConClustering(JaxClusterer):
  r"""A cluster head trained by I-Con's debiased kNN InfoNCE clustering.

  Features are standardised (one global mean and scale). Each sample's
  ``n_neighbors`` nearest neighbours are mined once
  (:func:`clustering.nearest_neighbors`); every step draws ``batch_size``
  anchors and one random neighbour of each and minimises I-Con's loss
  (:func:`clustering.methods.icon.icon_clustering_loss`, ``p`` on the pair
  partner, ``q`` the cluster kernel, both debiased by ``alpha``;
  Alshammari et al., 2025). ``n_init`` heads
  (:class:`clustering.models.IConModel` on an identity backbone) are trained
  at once (under ``vmap``) and the one with the lowest loss on a fixed set of
  held-out draws is kept: the objective has merge-and-split local optima,
  and its value tells them apart. ``predict`` is the most probable cluster.

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
    if not self.n_init >= 1:
      raise ValueError(f"`n_init` must be >= 1, got {self.n_init!r}.")
    seed = self._seed()
    self.mean_ = X.mean(axis=0)
    self.scale_ = float(max(X.std(), 1e-12))
    x = (X - self.mean_) / self.scale_
    nn = neighbors_lib.nearest_neighbors(x, int(min(self.n_neighbors, n - 1)),
                                         metric="sqeuclidean")
    heads = [models.IConModel(models.Identity((X.shape[1],)),
                              head_hidden=tuple(self.hidden_layer_sizes),
                              num_clusters=self.n_clusters,
                              rngs=nnx.Rngs(seed + i))
             for i in range(int(self.n_init))]
    data = {"x": jnp.asarray(x), "neighbors": jnp.asarray(nn)}
    hp = _IConFit(float(self.alpha), float(self.temperature))
    fit_key, score_key = jax.random.split(jax.random.key(seed))
    heads, losses = fit_lib.fit(
        _icon_objective, heads, data, hp, key=fit_key, num_examples=n,
        num_steps=self.max_iter, batch_size=self.batch_size,
        learning_rate=self.learning_rate)
    # The same draws for every restart: an unsupervised score to pick by.
    self.restart_scores_ = fit_lib.mean_loss(
        _icon_objective, heads, data, hp,
        keys=jax.random.split(score_key, 16), num_examples=n,
        batch_size=self.batch_size)
    best = int(np.argmin(self.restart_scores_))
    self.model_, self.loss_curve_ = heads[best], losses[best]
    self.n_iter_ = int(self.max_iter)
    self.labels_ = np.argmax(self._logits(x), axis=1).astype(np.int32)
    return self

  def _logits(self, x):
    return np.asarray(self.model_(jnp.asarray(x), train=False)[1])

  def predict_proba(self, X) -> np.ndarray:
    """Cluster probabilities ``[m, k]``."""
    validation.check_is_fitted(self, "model_")
    x = (self._validate(X, reset=False) - self.mean_) / self.scale_
    return np.asarray(jax.nn.softmax(self._logits(x) / self.temperature, -1))

  def predict(self, X) -> np.ndarray:
    """Most probable cluster ``[m]``."""
    return np.argmax(self.predict_proba(X), axis=1).astype(np.int32)
