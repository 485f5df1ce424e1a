"""Debiased InfoNCE Clustering, an I-Con instance.

Alshammari et al., "I-Con: A Unifying Framework for Representation Learning"
(ICLR 2025). A backbone with a linear(-MLP) cluster head
(:class:`clustering.models.IConModel`) gives cluster probabilities for ``B``
pairs of examples; the loss (:func:`icon_clustering_loss`) is the mean KL
between a supervisory kernel ``p`` (mass on each example's pair partner,
optionally mixed with a kNN graph of the batch) and the cluster kernel
``q(j|i) = sum_c P_ic P_jc / sum_l P_lc``, both debiased.

The pairs (``objective.neighbors``):

* ``'batch'``: two augmented views of each image, and ``p`` also holds a
  kNN graph (``knn_k`` neighbours, ``knn_walks`` walk steps) of the batch
  in input space;
* ``'input'``: I-Con's kNN kernel over the whole training set, sampled: the
  loop mines each example's ``num_neighbors`` nearest neighbours in the
  input space before training (raw pixels, or pre-trained features given as
  ``data.name='npy'``), and pairs each anchor with one of them, both
  augmented.

Assignment: ``argmax_c P``. With ``objective.num_heads > 1`` several
cluster heads share the backbone (SCAN's heads: the objective has
merge-and-split local optima, and its value tells them apart); each is
trained on its own loss and the one with the lowest running loss assigns.
With ``objective.overcluster_factor = m > 0`` as many auxiliary heads with
``m k`` clusters are trained on the same pairs (IIC's over-clustering heads,
whose finer partition asks the backbone for distinctions the ``k``-way heads
alone need not make); they never assign.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import objectives as O
from clustering import models
from clustering.methods import base

__all__ = ["Hparams", "icon_clustering_loss", "ICon"]


def icon_clustering_loss(logits: jax.Array, *, temperature: float = 1.0,
                         alpha_p: float = 0.6, alpha_q: float = 0.6,
                         knn_inputs: jax.Array | None = None, knn_k: int = 0,
                         knn_walks: int = 0) -> tuple[jax.Array, dict]:
  """I-Con's Debiased InfoNCE Clustering on ``B`` pairs.

  Rows ``i`` and ``i + B`` of ``logits`` are a pair (two views of an
  example, or an anchor and its neighbour). With ``P = softmax(logits /
  temperature)``:

  * ``p(j|i)``: all mass on ``i``'s pair partner, mixed (equal weights)
    with a kNN kernel of ``knn_inputs`` when ``knn_k > 0``, then debiased,
    ``(1 - alpha_p) p + alpha_p / 2B``;
  * ``q(j|i) = sum_c P_ic P_jc / sum_l P_lc``, debiased with ``alpha_q``;
  * ``L = (1/2B) sum_i KL(p(.|i) || q(.|i))``.

  Args:
    logits: ``[2B, k]`` cluster-head outputs.
    temperature: of the cluster softmax.
    alpha_p, alpha_q: debiasing weights (paper: 0.6-0.8).
    knn_inputs: ``[2B, D]`` inputs the batch kNN graph is built on.
    knn_k, knn_walks: the batch kNN graph (paper: 3 neighbours, 1 walk).

  Returns:
    ``(loss, {'kl': loss, 'cluster_entropy'})``, the entropy (nats) of
    the batch's mean cluster probabilities (``log k`` = balanced).
  """
  probs = jax.nn.softmax(logits / temperature, axis=-1)
  b = logits.shape[0] // 2
  supervision = [O.augmentation_kernel(jnp.tile(jnp.arange(b), 2))]
  if knn_k and knn_inputs is not None:
    supervision.append(O.knn_kernel(knn_inputs, k=knn_k, walks=knn_walks))
  log_p = O.debias(O.mixture_kernel(*supervision), alpha=alpha_p)
  log_q = O.debias(O.cluster_kernel(probs), alpha=alpha_q)
  loss = O.icon_loss(log_p, log_q)
  usage = jnp.mean(probs, axis=0)
  entropy = -jnp.sum(usage * jnp.log(usage + 1e-12))
  return loss, {"kl": loss, "cluster_entropy": entropy}


@dataclasses.dataclass(frozen=True)
class Hparams:
  """``config.objective`` of I-Con (see ``configs/icon.py``)."""
  neighbors: str       # batch | input
  num_neighbors: int   # input: neighbours mined per example
  knn_k: int           # batch: kNN graph of the batch
  knn_walks: int
  alpha_p: float
  alpha_q: float
  temperature: float
  num_heads: int = 1   # cluster heads trained at once; lowest loss assigns
  # > 0: as many heads with this many times the clusters (never assign).
  overcluster_factor: int = 0

  def __post_init__(self):
    base.choice(self.neighbors, "objective.neighbors", ("batch", "input"))
    base.check_num_heads(self.num_heads)
    if self.overcluster_factor < 0:
      raise ValueError("objective.overcluster_factor must be >= 0; got "
                       f"{self.overcluster_factor}.")
    for name in ("alpha_p", "alpha_q"):
      if not 0 <= getattr(self, name) < 1:
        raise ValueError(f"objective.{name} must be in [0, 1); got "
                         f"{getattr(self, name)}.")


class ICon(base.Method):

  Hparams = Hparams

  def create_model(self, rngs, example_shape):
    spec = self.model_spec
    return models.IConModel(
        models.make_encoder(spec, example_shape, rngs=rngs),
        head_hidden=spec.head_hidden, num_clusters=self.num_clusters,
        rngs=rngs, num_heads=self.hp.num_heads,
        num_overclusters=self.hp.overcluster_factor * self.num_clusters)

  def loss(self, model, inputs, key, step, phase):
    """The mean of the heads' losses; with over-clustering, plus the mean
    of the over-clustering heads' (``'kl_overcluster'``)."""
    del key, step, phase
    hp = self.hp
    flat = inputs.views.reshape((-1,) + inputs.views.shape[2:])
    h, logits = model.all_logits(flat, train=True)
    batch_knn = hp.neighbors == "batch"

    def head_loss(head_logits):
      return icon_clustering_loss(
          head_logits, temperature=hp.temperature, alpha_p=hp.alpha_p,
          alpha_q=hp.alpha_q,
          knn_inputs=flat.reshape(flat.shape[0], -1) if batch_knn else None,
          knn_k=hp.knn_k if batch_knn else 0, knn_walks=hp.knn_walks)

    loss, terms = base.mean_over_heads(
        model, [head_loss(l) for l in logits], "kl")
    if not hp.overcluster_factor:
      return loss, terms
    over = jnp.mean(jnp.stack([
        head_loss(l)[0] for l in model.overcluster_logits(h, train=True)]))
    return loss + over, dict(terms, kl_overcluster=over)

  def embed(self, model, x, *, train):
    return model(x, train=train)[0]

  def outputs(self, model, x):
    h, logits = model(x, train=False)
    return {"features": h, "logits": logits,
            "head_losses": base.head_losses_output(model, x.shape[0])}

  def assign(self, outputs):
    """Argmax of the best head's logits; with several heads, ``info``
    names the head (``head``) and every head's running loss."""
    clusters = np.argmax(outputs["logits"], axis=-1).astype(np.int32)
    return clusters, base.head_choice(outputs)
