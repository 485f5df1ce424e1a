"""Online clustering with Sinkhorn codes and swapped prediction (SwAV).

Caron et al., "Unsupervised Learning of Visual Features by Contrasting
Cluster Assignments" (NeurIPS 2020). Two augmented views, projected and
L2-normalised (``z_v [B, d]``), are scored against L2-normalised prototypes
(``s_v = z_v c^T [B, k]``). Codes ``q_v = swav_codes(s_v)`` (Sinkhorn,
eps 0.05, 3 iterations, no gradient) are predicted from the other view:

    loss = -1/2 mean_i [ q_1 . log softmax(s_2 / tau) + q_2 . log softmax(s_1 / tau) ]

As in SwAV, the prototypes are frozen for the first ``freeze_prototypes_steps``
steps; we normalise them in the forward pass instead of after each update
(the loss only sees the normalised prototypes either way). Assignment: the
highest-scoring prototype of the un-augmented input.

``objective.neighbors='input'`` swaps predictions between an image and one
of its ``num_neighbors`` nearest neighbours in the training set (each
augmented) instead of between two views of the same image, as NNCLR and
SCAN do; neighbours are mined once on the inputs before training.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

import objectives as O
from clustering import models
from clustering.methods import base


class SwAVModel(nnx.Module):

  def __init__(self, encoder, *, head_hidden, z_dim, num_prototypes, rngs):
    self.encoder = encoder
    self.projector = models.ProjectionHead(encoder.out_dim, head_hidden, z_dim,
                                           rngs=rngs)
    init = jax.random.normal(rngs.params(), (num_prototypes, z_dim))
    self.prototypes = nnx.Param(models.l2_normalize(init))

  def scores(self, z):
    return z @ models.l2_normalize(self.prototypes[...]).T

  def __call__(self, x, *, train: bool = False):
    z = self.projector(self.encoder(x, train=train), train=train)
    return z, self.scores(z)


class SwAV(base.Method):

  name = "swav"

  def create_model(self, rngs, x_init):
    del x_init
    m = self.config.model
    encoder = models.make_encoder(m, self.example_shape, rngs=rngs)
    return SwAVModel(encoder, head_hidden=tuple(m.head_hidden), z_dim=m.z_dim,
                     num_prototypes=self.num_clusters, rngs=rngs)

  def loss(self, model, x, key, step, phase):
    del phase
    obj = self.config.objective
    views = self.two_views(key, x)
    frozen = step < obj.freeze_prototypes_steps
    protos = model.prototypes[...]
    protos = jnp.where(frozen, jax.lax.stop_gradient(protos), protos)
    protos = models.l2_normalize(protos)
    z, _ = base.view_batch(lambda v: model(v, train=True), views)
    scores = z @ protos.T  # [2, B, k]
    codes = jnp.stack([O.swav_codes(s, epsilon=obj.epsilon,
                                    num_iters=obj.sinkhorn_iters)
                       for s in scores])
    log_p = jax.nn.log_softmax(scores / obj.temperature, axis=-1)
    swapped = -(jnp.sum(codes[0] * log_p[1], -1)
                + jnp.sum(codes[1] * log_p[0], -1))
    loss = 0.5 * jnp.mean(swapped)
    # How balanced the hard assignments are (1 = uniform over prototypes).
    counts = jnp.mean(jax.nn.one_hot(jnp.argmax(scores[0], -1),
                                     self.num_clusters), 0)
    balance = jnp.exp(-jnp.sum(counts * jnp.log(counts + 1e-12))) / (
        self.num_clusters)
    return loss, {"swapped_ce": loss, "balance": balance}

  def outputs(self, model, x):
    z, scores = model(self.normalize(x), train=False)
    return {"features": z, "scores": scores}

  def assign(self, outputs):
    return np.argmax(outputs["scores"], axis=-1).astype(np.int32)
