"""Clustering with associative memories (ClAM).

Saha et al., "End-to-end Differentiable Clustering with Associative Memories"
(ICML 2023). The only parameters are ``k`` memories (prototypes) in the
z-scored input space (``standardize=False``: the raw input space),
initialised from random training samples. Loss: mask a
fraction of each sample's coordinates (filled with the feature mean, 0 after
z-scoring), evolve the masked coordinates ``num_steps`` steps of the
associative-memory dynamics, and score the completion on the masked entries
(:func:`objectives.clam_loss`). Assignment: evolve the full input, take the
nearest memory. Silhouette is measured in the z-scored input space.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

import objectives as O
from clustering.methods import base


class Memories(nnx.Module):

  def __init__(self, init):
    self.memories = nnx.Param(jnp.asarray(init))


class ClAM(base.Method):

  name = "clam"

  def normalize(self, x):
    x = x.reshape(x.shape[0], -1)
    if not self.config.objective.standardize:
      return x
    return (x - self.stats["feature_mean"]) / self.stats["feature_std"]

  def fill_value(self):
    """The feature mean: 0 after z-scoring."""
    if self.config.objective.standardize:
      return 0.0
    return jnp.asarray(self.stats["feature_mean"])

  def create_model(self, rngs, x_init):
    if self.config.model.encoder != "identity":
      raise ValueError("clam trains prototypes on the inputs themselves; set "
                       f"model.encoder='identity' (got "
                       f"{self.config.model.encoder!r}).")
    x = np.asarray(self.normalize(jnp.asarray(x_init)))
    pick = jax.random.choice(rngs.params(), x.shape[0], (self.num_clusters,),
                             replace=False)
    return Memories(x[np.asarray(pick)])

  def loss(self, model, x, key, step, phase):
    del step, phase
    obj = self.config.objective
    x = self.normalize(x)
    mask = jax.random.bernoulli(key, obj.mask_fraction, x.shape)
    loss = O.clam_loss(x, model.memories[...], mask.astype(x.dtype),
                       beta=obj.beta, alpha=obj.alpha,
                       num_steps=obj.num_steps,
                       fill_value=self.fill_value())
    return loss, {"completion_mse": loss}

  def outputs(self, model, x):
    obj = self.config.objective
    x = self.normalize(x)
    evolved = O.am_evolve(x, model.memories[...], beta=obj.beta,
                          alpha=obj.alpha, num_steps=obj.num_steps)
    d = O.squared_distances(evolved, model.memories[...])
    return {"features": x, "distances": d}

  def assign(self, outputs):
    return np.argmin(outputs["distances"], axis=-1).astype(np.int32)
