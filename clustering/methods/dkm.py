"""Deep k-means (DKM): annealed soft k-means in a learned embedding.

Fard, Thonet and Gaussier, "Deep k-Means: Jointly clustering with k-Means and
learning representations" (Pattern Recognition Letters 2020). Loss
(:func:`dkm_loss`): the term that learns the space plus
``kmeans_weight * soft_kmeans_loss(z, mu; T_t)`` with trainable centroids
``mu [k, z]`` and DKM's annealing ``1/T_t = alpha_t`` (``alpha_0 = 0.1``,
``alpha_t = 2^(1/ln(t+1)^2) alpha_{t-1}``), advanced every ``anneal_every``
steps. Recipe: the space is learned alone first (``pretrain``), then the
centroids start at k-means of the embeddings (``cluster``), as in DKM's
pre-trained variant. Assignment: the nearest centroid.

The space (``objective.representation``, :mod:`clustering.methods.spaces`):
DKM's MLP autoencoder (reconstruction; ``model.encoder='mlp'``), or a
backbone with a unit-norm head learned by MLC's total coding rate on
augmented views (``'tcr'``), the soft k-means term then applied to the mean
of the views' embeddings.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

import objectives as O
from clustering import models
from clustering.methods import base
from clustering.methods import mcr2
from clustering.methods import spaces

__all__ = ["Hparams", "dkm_loss", "DKM"]


def dkm_loss(z: jax.Array, prototypes: jax.Array, *, alpha,
             kmeans_weight: float = 1.0, space=(0.0, {})
             ) -> tuple[jax.Array, dict]:
  """DKM: ``space_loss + kmeans_weight * soft_kmeans_loss(z, mu; 1/alpha)``.

  Args:
    z: ``[B, dim]`` embeddings.
    prototypes: ``[k, dim]`` centroids ``mu``.
    alpha: inverse temperature (DKM's annealed ``alpha_t``).
    kmeans_weight: DKM's ``lambda``.
    space: ``(loss, terms)`` of the term that learns the space
      (:func:`~clustering.methods.spaces.reconstruction_loss` in DKM,
      :func:`~clustering.methods.mcr2.tcr_loss`), added as it is.

  Returns:
    ``(loss, {**space terms, 'soft_kmeans', 'alpha'})``.
  """
  space_loss, space_terms = space
  kmeans = O.soft_kmeans_loss(z, prototypes, temperature=1.0 / alpha)
  return space_loss + kmeans_weight * kmeans, dict(
      space_terms, soft_kmeans=kmeans, alpha=alpha)


@dataclasses.dataclass(frozen=True)
class Hparams:
  """``config.objective`` of DKM (see ``configs/soft_kmeans.py``)."""
  warmup_steps: int
  alpha_0: float
  anneal_every: int
  kmeans_weight: float
  representation: str     # autoencoder | tcr
  eps_sq: float           # tcr
  invariance_weight: float  # tcr
  neighbors: str = "none"   # tcr: 'input' pairs views with neighbours
  num_neighbors: int = 5

  def __post_init__(self):
    base.choice(self.representation, "objective.representation",
                spaces.REPRESENTATIONS)
    spaces.check_neighbors(self.neighbors, self.num_neighbors,
                           self.representation)
    if self.anneal_every < 1 or not 0 < self.alpha_0 <= 1e4:
      raise ValueError("objective.anneal_every must be >= 1 and "
                       "objective.alpha_0 in (0, 1e4]; got "
                       f"{self.anneal_every} and {self.alpha_0}.")


class DKM(base.Method):

  Hparams = Hparams

  def __init__(self, hparams, **kwargs):
    super().__init__(hparams, **kwargs)
    if hparams.representation == "autoencoder" and (
        self.model_spec.encoder != "mlp"):
      raise ValueError("soft_kmeans (DKM) uses an MLP autoencoder; set "
                       f"model.encoder='mlp' (got {self.model_spec.encoder!r})"
                       " or objective.representation='tcr'.")

  @property
  def tcr(self) -> bool:
    return self.hp.representation == "tcr"

  @property
  def phases(self):
    cluster = base.Phase("cluster", self.hp.warmup_steps, needs_features=True)
    return [base.Phase("pretrain", 0), cluster] if self.hp.warmup_steps \
        else [cluster]

  @property
  def input_spec(self):
    return base.InputSpec(num_views=2 if self.tcr else 0, clean=not self.tcr)

  def create_model(self, rngs, example_shape):
    space = spaces.create_space(self.hp.representation, self.model_spec,
                                example_shape, rngs=rngs)
    return models.PrototypeModel(space, self.num_clusters)

  def start_phase(self, phase, model, features):
    if phase == "cluster":
      base.init_prototypes(model, features, seed=self.seed)

  def inverse_temperature(self, step):
    t = jnp.maximum(step - self.hp.warmup_steps, 0) // self.hp.anneal_every
    return O.dkm_inverse_temperature(t, alpha_0=self.hp.alpha_0)

  def loss(self, model, inputs, key, step, phase):
    del key
    hp = self.hp
    if self.tcr:
      z, _ = base.view_batch(functools.partial(model, train=True),
                             inputs.views)
      space = mcr2.tcr_loss(z, eps_sq=hp.eps_sq,
                              invariance_weight=hp.invariance_weight)
      z = models.l2_normalize(jnp.mean(z, axis=0))
    else:
      z, recon = model(inputs.clean, train=True)
      space = spaces.reconstruction_loss(inputs.clean, recon)
    if phase == "pretrain":
      return space
    return dkm_loss(z, model.prototypes[...],
                    alpha=self.inverse_temperature(step),
                    kmeans_weight=hp.kmeans_weight, space=space)

  def embed(self, model, x, *, train):
    return model(x, train=train)[0]

  def outputs(self, model, x):
    z, _ = model(x, train=False)
    return {"features": z,
            "distances": O.squared_distances(z, model.prototypes[...])}

  def assign(self, outputs):
    return np.argmin(outputs["distances"], axis=-1).astype(np.int32), {}
