"""Deep k-means (DKM): an autoencoder with annealed soft k-means.

Fard, Thonet and Gaussier, "Deep k-Means: Jointly clustering with k-Means and
learning representations" (Pattern Recognition Letters 2020). Loss
``||x - g(f(x))||^2 / D + lambda * soft_kmeans_loss(f(x), mu; T_t)`` with
trainable centroids ``mu [k, z]`` and DKM's annealing ``1/T_t = alpha_t``
(``alpha_0 = 0.1``, ``alpha_t = 2^(1/ln(t+1)^2) alpha_{t-1}``), advanced every
``anneal_every`` steps. Recipe: autoencoder pre-training (``pretrain``),
then centroids initialised by k-means on the embeddings (``cluster``), as in
DKM's pre-trained variant. Assignment: nearest centroid.

``objective.representation='tcr'`` replaces the autoencoder by a backbone
(``config.model``, e.g. a CNN) with a unit-norm head learned by MLC's
self-supervised total coding rate on two augmented views: the warm-up is
TCR alone, and the clustering loss is
``TCR + kmeans_weight * soft_kmeans_loss(mean of the views, mu; T_t)``,
TCR keeping the embedding from collapsing onto the centroids.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

import objectives as O
from clustering import models
from clustering.methods import base


class AutoEncoder(nnx.Module):

  def __init__(self, in_dim, hidden, z_dim, num_clusters, *, rngs):
    self.encoder, self.decoder = models.mlp_autoencoder(in_dim, hidden, z_dim,
                                                        rngs=rngs)
    self.prototypes = nnx.Param(jnp.zeros((num_clusters, z_dim)))

  def __call__(self, x, *, train: bool = False):
    z = self.encoder(x.reshape(x.shape[0], -1), train=train)
    return z, self.decoder(z, train=train)


class SoftKMeans(base.Method):

  name = "soft_kmeans"

  def create_model(self, rngs, x_init):
    del x_init
    m = self.config.model
    if self.representation == "tcr":
      return self.create_embedding(rngs)
    if m.encoder != "mlp":
      raise ValueError("soft_kmeans (DKM) uses an MLP autoencoder; set "
                       f"model.encoder='mlp' (got {m.encoder!r}).")
    return AutoEncoder(int(np.prod(self.example_shape)), tuple(m.hidden),
                       m.z_dim, self.num_clusters, rngs=rngs)

  @property
  def phases(self):
    warmup = self.config.objective.warmup_steps
    return [("pretrain", 0), ("cluster", warmup)] if warmup else [
        ("cluster", 0)]

  def start_phase(self, phase, model, train_outputs):
    if phase != "cluster":
      return
    self.init_prototypes(model, train_outputs()["features"])

  def inverse_temperature(self, step):
    obj = self.config.objective
    t = jnp.maximum(step - obj.warmup_steps, 0) // obj.anneal_every
    return O.dkm_inverse_temperature(t, alpha_0=obj.alpha_0)

  def loss(self, model, x, key, step, phase):
    obj = self.config.objective
    if self.representation == "tcr":
      z, tcr = self.coding_rate_views(model, x, key)
      if phase == "pretrain":
        return tcr, {"tcr": tcr}
      alpha = self.inverse_temperature(step)
      kmeans_loss = O.soft_kmeans_loss(
          models.l2_normalize(jnp.mean(z, axis=0)), model.prototypes[...],
          temperature=1.0 / alpha)
      return tcr + obj.kmeans_weight * kmeans_loss, {
          "tcr": tcr, "soft_kmeans": kmeans_loss, "alpha": alpha}
    aug = self.config.data.augment
    x = self.normalize(x)
    noisy = x + aug.noise * jax.random.normal(key, x.shape) if aug.noise else x
    z, recon = model(noisy, train=True)
    recon_loss = jnp.mean(jnp.square(recon - x.reshape(x.shape[0], -1)))
    if phase == "pretrain":
      return recon_loss, {"reconstruction": recon_loss}
    alpha = self.inverse_temperature(step)
    kmeans_loss = O.soft_kmeans_loss(z, model.prototypes[...],
                                     temperature=1.0 / alpha)
    loss = recon_loss + obj.kmeans_weight * kmeans_loss
    return loss, {"reconstruction": recon_loss, "soft_kmeans": kmeans_loss,
                  "alpha": alpha}

  def outputs(self, model, x):
    if self.representation == "tcr":
      z = model(self.normalize(x), train=False)
    else:
      z, _ = model(self.normalize(x), train=False)
    d = O.squared_distances(z, model.prototypes[...])
    return {"features": z, "distances": d}

  def assign(self, outputs):
    return np.argmin(outputs["distances"], axis=-1).astype(np.int32)
