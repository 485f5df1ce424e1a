"""Clustering with associative memories (ClAM).

Saha et al., "End-to-end Differentiable Clustering with Associative Memories"
(ICML 2023). Loss: mask a fraction of each sample's coordinates (filled with
the feature mean, 0 after z-scoring), evolve the masked coordinates
``num_steps`` steps of the associative-memory dynamics, and score the
completion on the masked entries (:func:`objectives.clam_loss`).
Assignment: evolve the full sample, take the nearest memory.

Two spaces (``model.encoder``):

* ``'identity'``: the only parameters are ``k`` memories in the z-scored
  input space (``standardize=False``: the raw input space), initialised from
  random training samples; silhouette is measured in that space;
* ``'mlp'``: ClAM in an autoencoder's latent space, trained end to end. The
  autoencoder is first pre-trained on reconstruction (``warmup_steps``);
  then the memories start at k-means centroids of the latent, and the loss
  is reconstruction plus ``clam_weight`` times the ClAM loss on the latent,
  standardised per batch (running statistics at evaluation) so that the
  encoder cannot shrink the latent to shrink the completion error.

``objective.representation='tcr'`` instead learns the space with MLC's
self-supervised total coding rate on two augmented views (any backbone,
e.g. a CNN, and a unit-norm head): TCR alone during the warm-up, then
memories at k-means centroids of the embedding and
``TCR + clam_weight * ClAM loss``, ClAM on the clean batch's embedding as
evaluation computes it (masked coordinates filled with 0, the centre of the
sphere); TCR keeps the embedding from collapsing onto the memories. With
``objective.clam_trains_encoder=False`` the recipe is two-stage instead:
after the warm-up the embedding gets no gradient and the ClAM loss trains
the memories only (the encoder's BatchNorm statistics still follow the
batches).
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

import objectives as O
from clustering import models
from clustering.methods import base


class Memories(nnx.Module):

  def __init__(self, init):
    self.prototypes = nnx.Param(jnp.asarray(init))


class LatentMemories(nnx.Module):
  """An MLP autoencoder and ``k`` memories in its standardised latent."""

  def __init__(self, in_dim, hidden, z_dim, num_clusters, *, rngs):
    self.encoder, self.decoder = models.mlp_autoencoder(in_dim, hidden, z_dim,
                                                        rngs=rngs)
    self.prototypes = nnx.Param(jnp.zeros((num_clusters, z_dim)))
    # Batch statistics while training, running ones at evaluation: without
    # it the encoder shrinks the latent to shrink the completion error.
    self.standardize = nnx.BatchNorm(z_dim, use_bias=False, use_scale=False,
                                     rngs=rngs)

  def __call__(self, x, *, train: bool = False):
    """``x [n, d]`` -> (standardised latent ``[n, z]``, reconstruction)."""
    z = self.encoder(x, train=train)
    return (self.standardize(z, use_running_average=not train),
            self.decoder(z, train=train))


class ClAM(base.Method):

  name = "clam"

  @property
  def latent(self) -> bool:
    """Memories in a learned space (autoencoder latent or TCR embedding)."""
    return (self.representation == "tcr"
            or self.config.model.encoder != "identity")

  def normalize(self, x):
    if self.representation == "tcr":  # images stay images for the backbone
      return super().normalize(x)
    x = x.reshape(x.shape[0], -1)
    if not self.config.objective.standardize:
      return x
    return (x - self.stats["feature_mean"]) / self.stats["feature_std"]

  @property
  def phases(self):
    warmup = self.config.objective.get("warmup_steps", 0)
    if self.latent and warmup:
      return [("pretrain", 0), ("cluster", warmup)]
    return [("cluster", 0)]

  def start_phase(self, phase, model, train_outputs):
    if not self.latent or phase != "cluster":
      return
    self.init_prototypes(model, train_outputs()["features"])

  def fill_value(self):
    """The feature mean: 0 after z-scoring."""
    if self.config.objective.standardize:
      return 0.0
    return jnp.asarray(self.stats["feature_mean"])

  def create_model(self, rngs, x_init):
    m = self.config.model
    if self.representation == "tcr":
      return self.create_embedding(rngs)
    if m.encoder not in ("identity", "mlp"):
      raise ValueError("clam runs on the inputs (model.encoder='identity') "
                       "or in an MLP autoencoder's latent ('mlp'); got "
                       f"{m.encoder!r}.")
    if self.latent:
      return LatentMemories(int(np.prod(self.example_shape)),
                            tuple(m.hidden), m.z_dim, self.num_clusters,
                            rngs=rngs)
    x = np.asarray(self.normalize(jnp.asarray(x_init)))
    pick = jax.random.choice(rngs.params(), x.shape[0], (self.num_clusters,),
                             replace=False)
    return Memories(x[np.asarray(pick)])

  def loss(self, model, x, key, step, phase):
    del step
    obj = self.config.objective
    if self.representation == "tcr":
      z, tcr = self.coding_rate_views(model, x, key)
      if phase == "pretrain":
        return tcr, {"tcr": tcr}
      # ClAM sees the clean batch as evaluation does (no augmentation,
      # running BatchNorm statistics): memories fitted to augmented views
      # drift away from where the clean embeddings are assigned.
      z = model(self.normalize(x), train=False)
      joint = obj.get("clam_trains_encoder", True)
      if not joint:
        z = jax.lax.stop_gradient(z)
      mask = jax.random.bernoulli(jax.random.fold_in(key, 1),
                                  obj.mask_fraction, z.shape)
      clam = O.clam_loss(z, model.prototypes[...], mask.astype(z.dtype),
                         beta=obj.beta, alpha=obj.alpha,
                         num_steps=obj.num_steps, fill_value=0.0)
      # Two-stage (not joint): the embedding stays as the warm-up left it.
      loss = obj.clam_weight * clam + (tcr if joint else 0.0)
      return loss, {"tcr": tcr, "completion_mse": clam}
    x = self.normalize(x)
    if self.latent:
      z, recon = model(x, train=True)
      recon_loss = jnp.mean(jnp.square(recon - x))
      if phase == "pretrain":
        return recon_loss, {"reconstruction": recon_loss}
      mask = jax.random.bernoulli(key, obj.mask_fraction, z.shape)
      clam = O.clam_loss(z, model.prototypes[...], mask.astype(z.dtype),
                         beta=obj.beta, alpha=obj.alpha,
                         num_steps=obj.num_steps, fill_value=0.0)
      return recon_loss + obj.clam_weight * clam, {
          "reconstruction": recon_loss, "completion_mse": clam}
    mask = jax.random.bernoulli(key, obj.mask_fraction, x.shape)
    loss = O.clam_loss(x, model.prototypes[...], mask.astype(x.dtype),
                       beta=obj.beta, alpha=obj.alpha,
                       num_steps=obj.num_steps,
                       fill_value=self.fill_value())
    return loss, {"completion_mse": loss}

  def outputs(self, model, x):
    obj = self.config.objective
    x = self.normalize(x)
    if self.representation == "tcr":
      x = model(x, train=False)
    elif self.latent:
      x, _ = model(x, train=False)
    evolved = O.am_evolve(x, model.prototypes[...], beta=obj.beta,
                          alpha=obj.alpha, num_steps=obj.num_steps)
    d = O.squared_distances(evolved, model.prototypes[...])
    return {"features": x, "distances": d}

  def assign(self, outputs):
    return np.argmin(outputs["distances"], axis=-1).astype(np.int32)
