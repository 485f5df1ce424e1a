"""How DKM and ClAM learn the space their prototypes live in.

* ``'autoencoder'`` (their papers): an MLP autoencoder trained on
  reconstruction, :func:`reconstruction_loss`;
* ``'tcr'``: a backbone and a unit-norm head trained as MLC trains its
  features, by the self-supervised total coding rate on augmented views
  (MLC/CPP's warm-up, :func:`clustering.methods.mcr2.tcr_loss`);
* ``'identity'`` (ClAM only): the (standardised) inputs themselves.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from clustering import models
from clustering.methods import base

REPRESENTATIONS = ("autoencoder", "tcr")
NEIGHBORS = ("none", "input")


def check_neighbors(neighbors: str, num_neighbors: int,
                    representation: str) -> None:
  """``objective.neighbors='input'`` pairs each example's first view with
  one of its ``num_neighbors`` nearest training examples' (SCAN, NNCLR):
  only a space learned on views (``'tcr'``) has views to pair."""
  base.choice(neighbors, "objective.neighbors", NEIGHBORS)
  if neighbors == "input" and (num_neighbors < 1 or representation != "tcr"):
    raise ValueError("objective.neighbors='input' needs objective."
                     "num_neighbors >= 1 and objective.representation="
                     f"'tcr'; got {num_neighbors} and {representation!r}.")


def reconstruction_loss(x: jax.Array, reconstruction: jax.Array
                        ) -> tuple[jax.Array, dict]:
  """Autoencoder loss: mean over all ``B * D`` entries of
  ``(x - reconstruction)^2`` (``x`` flattened to ``[B, D]``).

  Returns:
    ``(loss, {'reconstruction': loss})``.
  """
  loss = jnp.mean(jnp.square(reconstruction - x.reshape(x.shape[0], -1)))
  return loss, {"reconstruction": loss}


def create_space(representation: str, spec: models.ModelSpec, example_shape,
                 *, rngs: nnx.Rngs, standardize_latent: bool = False):
  """The embedding DKM/ClAM cluster in (see the module docstring)."""
  if representation == "tcr":
    return models.Embedding(models.make_encoder(spec, example_shape,
                                                rngs=rngs),
                            head_hidden=spec.head_hidden, z_dim=spec.z_dim,
                            rngs=rngs)
  if representation == "identity":
    return models.Embedding(models.Identity(example_shape))
  return models.AutoEncoder(int(np.prod(example_shape)), spec.hidden,
                            spec.z_dim, standardize_latent=standardize_latent,
                            rngs=rngs)
