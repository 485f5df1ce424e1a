"""What every clustering method provides to the training loop.

A method owns a flax.nnx model and says, as pure functions the loop jits:

* ``loss(model, x, key, step, phase) -> (loss, {name: scalar})`` on a global
  batch ``x [B, *example_shape]`` (augmentations are drawn inside, on device);
* ``outputs(model, x) -> {name: [m, ...]}`` per-example evaluation outputs
  (``'features'`` is always there, for silhouette and the embedding plot);

and, on the host:

* ``phases``: ``[(name, first_step), ...]``; the loss may differ per phase
  (e.g. MCR^2's TCR warm-up) and ``start_phase`` may re-initialise part of
  the model from the training data when a phase begins (MLC's one-shot
  cluster-head init, DKM's k-means init of the centroids);
* ``assign(outputs) -> clusters [m]``: the method's own assignment rule;
* ``prepare(dataset)``: host-side work on the training set before step 0,
  a deterministic function of the data and the config (so a resumed run
  redoes it identically). A method that sets ``self.neighbors`` (``[n, K]``
  training-set indices) there is trained on pairs: batch ``s`` is then
  ``(anchors, partners)``, each partner one of its anchor's ``K`` neighbours
  drawn from ``(seed, s)``.
"""

from __future__ import annotations

from typing import Callable

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

import objectives as O
from clustering import data as data_lib
from clustering.kmeans import kmeans as fit_kmeans
from clustering import models
from clustering import neighbors as neighbors_lib

REPRESENTATIONS = ("autoencoder", "tcr")


class Method:
  """Base class; subclasses fill in the model, the loss and the assignment."""

  name = "base"
  neighbors: np.ndarray | None = None

  def __init__(self, config, *, example_shape, stats: dict):
    """``stats``: training-set ``channel_mean``/``channel_std`` (per last-axis
    entry) and ``feature_mean``/``feature_std`` (per flattened feature)."""
    self.config = config
    self.example_shape = tuple(example_shape)
    self.num_clusters = config.num_clusters
    self.stats = {k: np.asarray(v, np.float32) for k, v in stats.items()}

  # ---------------------------------------------------------------- model
  def create_model(self, rngs: nnx.Rngs, x_init: np.ndarray) -> nnx.Module:
    raise NotImplementedError

  @property
  def phases(self) -> list[tuple[str, int]]:
    return [("train", 0)]

  def phase(self, step: int) -> str:
    current = self.phases[0][0]
    for name, first in self.phases:
      if step >= first:
        current = name
    return current

  def start_phase(self, phase: str, model: nnx.Module,
                  train_outputs: Callable[[], dict]) -> None:
    """Hook at the first step of ``phase``; may modify ``model`` in place."""
    del phase, model, train_outputs

  # ------------------------------------------------------------- training
  def normalize(self, x: jax.Array) -> jax.Array:
    """Standardises inputs with the training set's per-channel statistics."""
    return (x - self.stats["channel_mean"]) / self.stats["channel_std"]

  def views(self, key: jax.Array, x: jax.Array, num_views: int = 2):
    """``[V, B, ...]`` augmented, standardised views of the batch."""
    aug = self.config.data.augment
    keys = jax.random.split(key, num_views)
    return jnp.stack([
        self.normalize(data_lib.augment(
            k, x, crop_scale=tuple(aug.crop_scale), max_shift=aug.max_shift,
            flip=aug.flip, noise=aug.noise,
            rotation=aug.get("rotation", 0.0))) for k in keys])

  def two_views(self, key: jax.Array, x) -> jax.Array:
    """``[2, B, ...]``: two augmentations of a batch ``x``, or one of each
    side of an ``(anchors, partners)`` neighbour-pair batch."""
    if isinstance(x, (tuple, list)):
      k_a, k_p = jax.random.split(key)
      return jnp.stack([self.views(k_a, x[0], 1)[0],
                        self.views(k_p, x[1], 1)[0]])
    return self.views(key, x, 2)

  def prepare(self, dataset: data_lib.Dataset) -> None:
    """Mines ``objective.num_neighbors`` input-space neighbours when
    ``objective.neighbors == 'input'``; subclasses may do more."""
    obj = self.config.objective
    choice = obj.get("neighbors", "none")
    if choice not in ("none", "batch", "input"):
      raise ValueError("objective.neighbors must be 'none', 'batch' or "
                       f"'input'; got {choice!r}.")
    if choice == "input":
      self.mine_neighbors(dataset, obj.num_neighbors)

  def mine_neighbors(self, dataset: data_lib.Dataset, k: int) -> None:
    """Sets ``self.neighbors``: each training example's ``k`` nearest
    neighbours (cosine) in the input space: pixels as they are, feature
    vectors z-scored first."""
    x, _ = dataset.all()
    flat = x.reshape(len(x), -1)
    if not dataset.is_image:
      flat = (flat - self.stats["feature_mean"]) / self.stats["feature_std"]
    self.neighbors = neighbors_lib.nearest_neighbors(flat, k,
                                                     metric="cosine")

  # ------------------------------------- learned space for prototype methods
  @property
  def representation(self) -> str:
    """How DKM/ClAM learn the space their prototypes live in:
    ``'autoencoder'`` (reconstruction, as in their papers) or ``'tcr'``
    (MLC's self-supervised total coding rate on augmented views)."""
    choice = self.config.objective.get("representation", "autoencoder")
    if choice not in REPRESENTATIONS:
      raise ValueError(f"objective.representation must be one of "
                       f"{REPRESENTATIONS}; got {choice!r}.")
    return choice

  def create_embedding(self, rngs: nnx.Rngs) -> models.EmbeddingWithPrototypes:
    """``config.model``'s backbone, a unit-norm head and ``k`` prototypes."""
    m = self.config.model
    return models.EmbeddingWithPrototypes(
        models.make_encoder(m, self.example_shape, rngs=rngs),
        tuple(m.head_hidden), m.z_dim, self.num_clusters, rngs=rngs)

  def coding_rate_views(self, embed: Callable, x, key: jax.Array):
    """MLC's self-supervised warm-up loss on two augmented views.

    Returns:
      (``[2, B, z]`` embeddings of the views, scalar
      :func:`objectives.total_coding_rate_loss` with the objective's
      ``eps_sq`` and ``invariance_weight``).
    """
    obj = self.config.objective
    z = view_batch(lambda v: embed(v, train=True), self.two_views(key, x))
    return z, O.total_coding_rate_loss(
        z, eps_sq=obj.eps_sq, invariance_weight=obj.invariance_weight)

  def init_prototypes(self, model: nnx.Module, features) -> None:
    """Sets ``model.prototypes`` to k-means centroids (10 restarts) of the
    training set's ``features [n, z]``."""
    fit = fit_kmeans(features, self.num_clusters, n_init=10,
                     seed=self.config.seed)
    model.prototypes[...] = jnp.asarray(fit.centroids)

  def loss(self, model, x, key, step, phase):
    raise NotImplementedError

  # ----------------------------------------------------------- evaluation
  def outputs(self, model, x) -> dict:
    raise NotImplementedError

  def assign(self, outputs: dict) -> np.ndarray:
    raise NotImplementedError


def view_batch(model_fn, views):
  """Applies ``model_fn`` to ``[V, B, ...]`` views as one ``[V*B, ...]`` batch.

  BatchNorm then sees all views together, as in SwAV/CPP's multi-crop code.
  """
  v, b = views.shape[:2]
  out = model_fn(views.reshape((v * b,) + views.shape[2:]))
  return jax.tree.map(lambda o: o.reshape((v, b) + o.shape[1:]), out)
