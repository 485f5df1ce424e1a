"""Debiased InfoNCE Clustering, an I-Con instance.

Alshammari et al., "I-Con: A Unifying Framework for Representation Learning"
(ICLR 2025). A backbone with a linear-softmax cluster head gives cluster
probabilities ``P [2B, k]`` for two augmented views of a batch. The learned
kernel is the cluster kernel ``q(j|i) = sum_c P_ic P_jc / sum_l P_lc``. The
supervisory kernel comes from ``objective.neighbors``:

* ``'batch'``: the augmentation kernel (the other view) mixed with a kNN
  graph (``knn_k`` neighbours, ``knn_walks`` walk steps) of the batch in
  input space;
* ``'input'``: I-Con's kNN kernel over the whole training set, sampled.
  Before training, each example's ``num_neighbors`` nearest neighbours are
  mined in the input space (:mod:`clustering.neighbors`; raw pixels, or
  pre-trained features given as ``data.name='npy'``); each batch pairs ``B``
  anchors with one random neighbour each, both augmented, and ``p(j|i)``
  puts its mass on the pair partner.

Both kernels are debiased, ``(1 - alpha) p + alpha / n``, and the loss is the
mean KL :func:`objectives.icon_loss`. Assignment: ``argmax_c P``.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

import objectives as O
from clustering import models
from clustering.methods import base


class IConModel(nnx.Module):

  def __init__(self, encoder, *, head_hidden, num_clusters, rngs):
    self.encoder = encoder
    self.head = models.ProjectionHead(encoder.out_dim, head_hidden,
                                      num_clusters, normalize=False,
                                      rngs=rngs)

  def __call__(self, x, *, train: bool = False):
    h = self.encoder(x, train=train)
    return h, self.head(h, train=train)


class ICon(base.Method):

  name = "icon"

  def create_model(self, rngs, x_init):
    del x_init
    m = self.config.model
    encoder = models.make_encoder(m, self.example_shape, rngs=rngs)
    return IConModel(encoder, head_hidden=tuple(m.head_hidden),
                     num_clusters=self.num_clusters, rngs=rngs)

  def loss(self, model, x, key, step, phase):
    del step, phase
    obj = self.config.objective
    views = self.two_views(key, x)
    b = views.shape[1]
    flat = views.reshape((2 * b,) + views.shape[2:])
    _, logits = model(flat, train=True)
    probs = jax.nn.softmax(logits / obj.temperature, axis=-1)
    ids = jnp.tile(jnp.arange(b), 2)
    supervision = [O.augmentation_kernel(ids)]
    if obj.knn_k and obj.neighbors == "batch":
      supervision.append(O.knn_kernel(flat.reshape(2 * b, -1), k=obj.knn_k,
                                      walks=obj.knn_walks))
    log_p = O.debias(O.mixture_kernel(*supervision), alpha=obj.alpha_p)
    log_q = O.debias(O.cluster_kernel(probs), alpha=obj.alpha_q)
    loss = O.icon_loss(log_p, log_q)
    usage = jnp.mean(probs, axis=0)
    entropy = -jnp.sum(usage * jnp.log(usage + 1e-12))
    return loss, {"kl": loss, "cluster_entropy": entropy}

  def outputs(self, model, x):
    h, logits = model(self.normalize(x), train=False)
    return {"features": h, "logits": logits}

  def assign(self, outputs):
    return np.argmax(outputs["logits"], axis=-1).astype(np.int32)
