"""MCR^2 clustering with a doubly stochastic membership: MLC and CPP.

Ding et al., "Unsupervised Manifold Linearizing and Clustering" (ICCV 2023,
MLC) and Chu et al., "Image Clustering via the Principle of Rate Reduction in
the Age of Pretrained Models" (ICLR 2024, CPP). The model is a backbone with a
feature head ``Z`` and a cluster head ``C`` (both L2-normalised). Recipe:

1. ``warmup``: self-supervised total coding rate on two augmented views,
   ``-R(mean_v Z_v) - lambda * cos(Z_1, Z_2)`` (NMCE/MLC);
2. at the first clustering step the cluster head is initialised as a copy of
   the feature head (MLC's one-shot initialisation: the first memberships
   then come from the learned features instead of noise);
3. ``cluster``: ``-gamma_r R(Z) + R_c(Z, Gamma)`` with
   ``Gamma = doubly_stochastic_membership(C)`` (``[B, B]``, each column a
   cluster), ``Z`` and ``C`` averaged over the views; CPP adds
   ``frobenius_weight / 2 * ||Gamma||_F^2``.

Assignment: spectral clustering on ``Gamma`` of the whole evaluation set.
"""

from __future__ import annotations

from flax import nnx
import jax.numpy as jnp
import numpy as np

import objectives as O
from clustering import models
from clustering import spectral
from clustering.methods import base


class MCR2Model(nnx.Module):

  def __init__(self, encoder, *, head_hidden, z_dim, rngs):
    self.encoder = encoder
    self.feature_head = models.ProjectionHead(encoder.out_dim, head_hidden,
                                              z_dim, rngs=rngs)
    self.cluster_head = models.ProjectionHead(encoder.out_dim, head_hidden,
                                              z_dim, rngs=rngs)

  def __call__(self, x, *, train: bool = False):
    h = self.encoder(x, train=train)
    return (self.feature_head(h, train=train),
            self.cluster_head(h, train=train))


class MCR2(base.Method):
  """MLC (``method='mcr2'``) and CPP (``method='cpp'``)."""

  name = "mcr2"

  def create_model(self, rngs, x_init):
    del x_init
    m = self.config.model
    encoder = models.make_encoder(m, self.example_shape, rngs=rngs)
    return MCR2Model(encoder, head_hidden=tuple(m.head_hidden),
                     z_dim=m.z_dim, rngs=rngs)

  @property
  def phases(self):
    warmup = self.config.objective.warmup_steps
    return [("warmup", 0), ("cluster", warmup)] if warmup else [("cluster", 0)]

  def start_phase(self, phase, model, train_outputs):
    del train_outputs
    if phase == "cluster" and self.config.objective.init_cluster_head:
      nnx.update(model.cluster_head, nnx.state(model.feature_head))

  def membership(self, c, **overrides):
    obj = self.config.objective
    kwargs = dict(eta=obj.eta, num_iters=obj.sinkhorn_iters,
                  differentiation=obj.differentiation)
    kwargs.update(overrides)
    return O.doubly_stochastic_membership(c, **kwargs)

  def loss(self, model, x, key, step, phase):
    obj = self.config.objective
    views = self.views(key, x, obj.num_views)
    z, c = base.view_batch(lambda v: model(v, train=True), views)
    if phase == "warmup":
      loss = O.total_coding_rate_loss(
          z, eps_sq=obj.eps_sq, invariance_weight=obj.invariance_weight)
      return loss, {"tcr": loss}
    z_mean = models.l2_normalize(jnp.mean(z, axis=0))
    c_mean = models.l2_normalize(jnp.mean(c, axis=0))
    gamma = self.membership(c_mean)
    rate = O.coding_rate(z_mean, eps_sq=obj.eps_sq, gamma=obj.gamma_in)
    rate_c = O.compression_rate(z_mean, gamma, eps_sq=obj.eps_sq)
    frobenius = jnp.sum(jnp.square(gamma))
    cosine = jnp.mean(jnp.sum(z[0] * z[1], axis=-1))
    loss = (-obj.gamma_r * rate + rate_c
            + 0.5 * obj.frobenius_weight * frobenius
            - obj.cluster_invariance_weight * cosine)
    return loss, {"R": rate, "Rc": rate_c, "gamma_fro2": frobenius,
                  "cosine": cosine}

  def outputs(self, model, x):
    z, c = model(self.normalize(x), train=False)
    return {"features": z, "cluster_features": c}

  def _eval_membership(self, outputs):
    c = jnp.asarray(outputs["cluster_features"])
    # The evaluation set's membership, run to convergence (no gradient).
    return np.asarray(self.membership(c, differentiation="implicit",
                                      tol=1e-5, max_iters=2000))

  def assign(self, outputs):
    return spectral.spectral_clustering(self._eval_membership(outputs),
                                        self.num_clusters,
                                        seed=self.config.seed)

  def estimate_num_clusters(self, outputs, candidates) -> dict:
    """CPP's model selection: the cluster count with the shortest code.

    For each ``k`` in ``candidates`` the membership is cut into ``k``
    clusters by spectral clustering and the learned features are coded
    under that partition (:func:`objectives.coding_length`, CPP's
    ``eps_sq``); the shortest total coding length wins.

    Returns:
      ``{'num_clusters': best k, 'coding_length': {k: nats}}``.
    """
    gamma = self._eval_membership(outputs)
    z = jnp.asarray(outputs["features"])
    lengths = {}
    for k in candidates:
      labels = spectral.spectral_clustering(gamma, int(k),
                                            seed=self.config.seed)
      lengths[int(k)] = float(O.coding_length(
          z, jnp.asarray(labels), eps_sq=self.config.objective.eps_sq,
          num_clusters=int(k)))
    return dict(num_clusters=min(lengths, key=lengths.get),
                coding_length=lengths)
