"""Clustering with associative memories (ClAM).

Saha et al., "End-to-end Differentiable Clustering with Associative Memories"
(ICML 2023). Loss (:func:`clam_completion_loss`): mask a fraction of each
sample's coordinates, fill them with the feature mean, evolve the masked
coordinates ``num_steps`` steps of the associative-memory dynamics, and
score the completion on the masked entries (:func:`objectives.clam_loss`).
Assignment (:func:`memory_distances`): evolve the full sample, take the
nearest memory.

The memories start at k-means centroids (10 restarts) of the training set
in the space ClAM runs in, and the fill value is that set's mean, when
clustering starts. The space (``model.encoder`` and
``objective.representation``):

* ``encoder='identity'``: the inputs, z-scored per feature
  (``standardize=False``: raw); only the memories are trained (the
  reference setting);
* ``encoder='mlp'``: an autoencoder's latent, standardised by BatchNorm so
  that the encoder cannot shrink it to shrink the completion error,
  pre-trained on reconstruction for ``warmup_steps``, then reconstruction
  plus ``clam_weight`` times the ClAM loss;
* ``representation='tcr'``: a backbone and unit-norm head learned by MLC's
  total coding rate on augmented views (TCR alone during the warm-up), then
  ``TCR + clam_weight * ClAM loss``, ClAM on the clean batch's embedding as
  evaluation computes it. With ``clam_trains_encoder=False`` the embedding
  gets no gradient from ClAM and only the memories train after the warm-up.
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

__all__ = ["Hparams", "clam_completion_loss", "memory_distances",
           "auto_beta", "ClAM"]


def clam_completion_loss(z: jax.Array, memories: jax.Array, key: jax.Array,
                         *, fill_value, beta, alpha: float = 0.1,
                         num_steps: int = 10, mask_fraction: float = 0.2,
                         clam_weight: float = 1.0, space=(0.0, {})
                         ) -> tuple[jax.Array, dict]:
  """ClAM's masked pattern completion (plus the term learning its space).

  Each entry of ``z`` is masked with probability ``mask_fraction`` (drawn
  from ``key``), set to ``fill_value`` and completed by ``num_steps`` AM
  steps of size ``alpha`` at inverse temperature ``beta``; the completion
  error is the mean over all ``B * dim`` entries of ``m * (z - v_T)^2``
  (the reference's convention).

  Args:
    z: ``[B, dim]`` samples in ClAM's space.
    memories: ``[k, dim]``.
    key: PRNG key of the mask.
    fill_value: scalar or ``[dim]``: the feature mean.
    beta, alpha, num_steps: the AM dynamics (reference: beta in
      {1.1, 1.5, 1.9, 2.4} on z-scores, 0.1, 10).
    mask_fraction: the reference's 0.2.
    clam_weight: weight of the completion error against ``space``.
    space: ``(loss, terms)`` of the term that learns the space, added as it
      is (:mod:`clustering.methods.spaces`).

  Returns:
    ``(loss, {**space terms, 'completion_mse'})``.
  """
  mask = jax.random.bernoulli(key, mask_fraction, z.shape).astype(z.dtype)
  completion = O.clam_loss(z, memories, mask, beta=beta, alpha=alpha,
                           num_steps=num_steps, fill_value=fill_value)
  space_loss, space_terms = space
  return space_loss + clam_weight * completion, dict(
      space_terms, completion_mse=completion)


def memory_distances(z: jax.Array, memories: jax.Array, *, beta,
                     alpha: float = 0.1, num_steps: int = 10) -> jax.Array:
  """ClAM's assignment scores: ``[n, k]`` squared distances from each
  sample, evolved ``num_steps`` AM steps, to the memories (the argmin is
  the cluster)."""
  evolved = O.am_evolve(z, memories, beta=beta, alpha=alpha,
                        num_steps=num_steps)
  return O.squared_distances(evolved, memories)


def auto_beta(z, memories) -> float:
  """``16 / mean_i min_j ||z_i - memory_j||^2``: sharp enough that each
  sample is pulled mostly by one memory, whatever the scale of ``z``."""
  spread = float(jnp.mean(jnp.min(O.squared_distances(
      jnp.asarray(z), jnp.asarray(memories)), axis=1)))
  return 16.0 / max(spread, 1e-30)


@dataclasses.dataclass(frozen=True)
class Hparams:
  """``config.objective`` of ClAM (see ``configs/clam.py``)."""
  beta: float
  alpha: float
  num_steps: int
  mask_fraction: float
  standardize: bool        # identity/mlp: z-score the input features
  warmup_steps: int        # learned space: steps that learn it alone
  clam_weight: float       # learned space: ClAM against its space's loss
  representation: str      # autoencoder | tcr
  eps_sq: float            # tcr
  invariance_weight: float  # tcr
  clam_trains_encoder: bool  # tcr
  neighbors: str = "none"   # tcr: 'input' pairs views with neighbours
  num_neighbors: int = 5

  def __post_init__(self):
    base.choice(self.representation, "objective.representation",
                spaces.REPRESENTATIONS)
    spaces.check_neighbors(self.neighbors, self.num_neighbors,
                           self.representation)
    if not 0 < self.mask_fraction <= 1 or not self.beta > 0:
      raise ValueError("objective.mask_fraction must be in (0, 1] and "
                       f"objective.beta > 0; got {self.mask_fraction} and "
                       f"{self.beta}.")


class ClAM(base.Method):

  Hparams = Hparams

  def __init__(self, hparams, **kwargs):
    super().__init__(hparams, **kwargs)
    if hparams.representation == "tcr":
      self.space = "tcr"
    elif self.model_spec.encoder in ("identity", "mlp"):
      self.space = ("identity" if self.model_spec.encoder == "identity"
                    else "autoencoder")
    else:
      raise ValueError("clam runs on the inputs (model.encoder='identity'), "
                       "in an MLP autoencoder's latent ('mlp') or in a TCR "
                       "embedding (objective.representation='tcr'); got "
                       f"model.encoder={self.model_spec.encoder!r}.")

  @property
  def phases(self):
    warmup = self.hp.warmup_steps if self.space != "identity" else 0
    cluster = base.Phase("cluster", warmup, needs_features=True)
    return [base.Phase("pretrain", 0), cluster] if warmup else [cluster]

  @property
  def input_spec(self):
    if self.space == "tcr":
      return base.InputSpec(num_views=2, clean=True)
    return base.InputSpec(num_views=0, clean=True, standardize=(
        "feature" if self.hp.standardize else "none"))

  def create_model(self, rngs, example_shape):
    space = spaces.create_space(self.space, self.model_spec,
                                example_shape, rngs=rngs,
                                standardize_latent=True)
    return models.PrototypeModel(space, self.num_clusters)

  def start_phase(self, phase, model, features):
    if phase == "cluster":
      base.init_prototypes(model, features, seed=self.seed)

  def loss(self, model, inputs, key, step, phase):
    del step
    hp = self.hp
    if self.space == "tcr":
      z, _ = base.view_batch(functools.partial(model, train=True),
                             inputs.views)
      space = mcr2.tcr_loss(z, eps_sq=hp.eps_sq,
                              invariance_weight=hp.invariance_weight)
      if phase == "pretrain":
        return space
      # ClAM sees the clean batch as evaluation does (no augmentation,
      # running BatchNorm statistics): memories fitted to augmented views
      # drift away from where the clean embeddings are assigned.
      z, _ = model(inputs.clean, train=False)
      if not hp.clam_trains_encoder:  # two-stage: the embedding stays put
        z, space = jax.lax.stop_gradient(z), (0.0, space[1])
    elif self.space == "autoencoder":
      z, recon = model(inputs.clean, train=True)
      space = spaces.reconstruction_loss(inputs.clean, recon)
      if phase == "pretrain":
        return space
    else:
      z, _ = model(inputs.clean, train=True)
      space = (0.0, {})
    return clam_completion_loss(
        z, model.prototypes[...], key, fill_value=model.fill[...],
        beta=hp.beta, alpha=hp.alpha, num_steps=hp.num_steps,
        mask_fraction=hp.mask_fraction, clam_weight=hp.clam_weight,
        space=space)

  def embed(self, model, x, *, train):
    return model(x, train=train)[0]

  def outputs(self, model, x):
    z, _ = model(x, train=False)
    return {"features": z, "distances": memory_distances(
        z, model.prototypes[...], beta=self.hp.beta, alpha=self.hp.alpha,
        num_steps=self.hp.num_steps)}

  def assign(self, outputs):
    return np.argmin(outputs["distances"], axis=-1).astype(np.int32), {}
