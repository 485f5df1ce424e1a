"""Online clustering with Sinkhorn codes and swapped prediction (SwAV).

Caron et al., "Unsupervised Learning of Visual Features by Contrasting
Cluster Assignments" (NeurIPS 2020). Two augmented views, projected and
L2-normalised (``z_v [B, d]``), are scored against L2-normalised prototypes
(``s_v = z_v c^T [B, k]``) and each view's codes are predicted from the
other (:func:`swav_loss`).

As in SwAV, the prototypes are frozen for the first
``freeze_prototypes_steps`` steps; we normalise them in the forward pass
instead of after each update (the loss only sees the normalised prototypes
either way). Assignment: the highest-scoring prototype of the un-augmented
input.

With ``objective.num_heads > 1`` several prototype sets share the backbone
and projector, each trained on its own swapped prediction (the backbone on
their mean), and the set with the lowest running loss assigns: SCAN's
heads, chosen without labels.

``objective.neighbors='input'`` swaps predictions between an image and one
of its ``num_neighbors`` nearest neighbours in the training set (each
augmented) instead of between two views of the same image, as NNCLR and
SCAN do; the loop mines the neighbours on the inputs before training.
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

__all__ = ["Hparams", "swav_loss", "SwAV"]


def swav_loss(scores: jax.Array, *, epsilon: float = 0.05,
              sinkhorn_iters: int = 3, temperature: float = 0.1
              ) -> tuple[jax.Array, dict]:
  r"""SwAV's swapped prediction on two views' prototype scores.

  Codes ``q_v = swav_codes(s_v)`` (Sinkhorn at ``epsilon`` for
  ``sinkhorn_iters`` iterations, each row rescaled to sum to 1, no
  gradient) and ``p_v = softmax(s_v / temperature)``:

  .. math::
    L = -\frac{1}{2B} \sum_i \left[q_{1i} \cdot \log p_{2i}
        + q_{2i} \cdot \log p_{1i}\right]

  Args:
    scores: ``[2, B, k]`` cosine scores of the two views against the
      (unit-norm) prototypes.
    epsilon, sinkhorn_iters: SwAV's codes (defaults 0.05 and 3).
    temperature: of the predicted distribution (SwAV: 0.1).

  Returns:
    ``(loss, {'swapped_ce': loss, 'balance'})``, ``balance`` the perplexity
    of view 1's hard assignments over ``k`` (1 = uniform over prototypes).
  """
  codes = jnp.stack([O.swav_codes(s, epsilon=epsilon,
                                  num_iters=sinkhorn_iters) for s in scores])
  log_p = jax.nn.log_softmax(scores / temperature, axis=-1)
  swapped = -(jnp.sum(codes[0] * log_p[1], -1)
              + jnp.sum(codes[1] * log_p[0], -1))
  loss = 0.5 * jnp.mean(swapped)
  k = scores.shape[-1]
  counts = jnp.mean(jax.nn.one_hot(jnp.argmax(scores[0], -1), k), 0)
  balance = jnp.exp(-jnp.sum(counts * jnp.log(counts + 1e-12))) / k
  return loss, {"swapped_ce": loss, "balance": balance}


@dataclasses.dataclass(frozen=True)
class Hparams:
  """``config.objective`` of SwAV (see ``configs/swav.py``)."""
  epsilon: float
  sinkhorn_iters: int
  temperature: float
  freeze_prototypes_steps: int
  neighbors: str          # none | input
  num_neighbors: int
  num_heads: int = 1      # prototype sets trained at once; lowest loss assigns

  def __post_init__(self):
    base.choice(self.neighbors, "objective.neighbors", ("none", "input"))
    base.check_num_heads(self.num_heads)


class SwAV(base.Method):

  Hparams = Hparams

  def create_model(self, rngs, example_shape):
    spec = self.model_spec
    return models.SwAVModel(
        models.make_encoder(spec, example_shape, rngs=rngs),
        head_hidden=spec.head_hidden, z_dim=spec.z_dim,
        num_prototypes=self.num_clusters, rngs=rngs,
        num_heads=self.hp.num_heads)

  def loss(self, model, inputs, key, step, phase):
    del key, phase
    hp = self.hp
    protos = model.unit_prototypes()
    protos = jnp.where(step < hp.freeze_prototypes_steps,
                       jax.lax.stop_gradient(protos), protos)
    z = base.view_batch(functools.partial(model, train=True), inputs.views)
    per_head = [swav_loss(z @ head.T,  # [2, B, k]
                          epsilon=hp.epsilon, sinkhorn_iters=hp.sinkhorn_iters,
                          temperature=hp.temperature) for head in protos]
    return base.mean_over_heads(model, per_head, "swapped_ce")

  def embed(self, model, x, *, train):
    return model(x, train=train)

  def outputs(self, model, x):
    z = model(x, train=False)
    protos = model.unit_prototypes()[model.best_head()]
    return {"features": z, "scores": z @ protos.T,
            "head_losses": base.head_losses_output(model, x.shape[0])}

  def assign(self, outputs):
    """Argmax of the best prototype set's scores; with several sets,
    ``info`` names the set (``head``) and every set's running loss."""
    clusters = np.argmax(outputs["scores"], axis=-1).astype(np.int32)
    return clusters, base.head_choice(outputs)
