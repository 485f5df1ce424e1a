"""Encoders, heads and each method's model, in flax.nnx.

``make_encoder(spec, example_shape, rngs)`` builds the backbone named by
``spec.encoder`` (:class:`ModelSpec`, read once from ``config.model``):

* ``identity``: flattens the input (ClAM on features, CPP on CLIP features);
* ``mlp``: ``hidden`` widths with BatchNorm + ReLU;
* ``cnn``: a small conv net (``widths`` channels, 3x3 convs, 2x2 pools);
* ``resnet18``: ResNet-18 with the CIFAR stem (3x3 conv, no max-pool).

Every encoder maps ``[n, *example_shape] -> [n, out_dim]`` and takes
``train`` (BatchNorm statistics: batch vs running). BatchNorm under ``jit``
with a batch sharded over the mesh normalises with global-batch statistics,
so the data-parallel math equals the single-device math.

The methods' models (one each; the estimators build the same ones on an
:class:`Identity` backbone): :class:`MCR2Model` (MLC/CPP's feature and
cluster heads), :class:`SwAVModel`, :class:`IConModel`, and
:class:`PrototypeModel` (DKM's centroids, ClAM's memories) in the space of
an :class:`Embedding` or an :class:`AutoEncoder`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from clustering import specs

__all__ = ["ModelSpec", "MLP", "SmallCNN", "ResNet18", "Identity",
           "ProjectionHead", "make_encoder", "l2_normalize", "Embedding",
           "AutoEncoder", "PrototypeModel", "MCR2Model", "HeadLosses",
           "SwAVModel", "IConModel", "ENCODERS"]

ENCODERS = ("identity", "mlp", "cnn", "resnet18")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """``config.model``, read once.

  Attributes:
    encoder: one of :data:`ENCODERS`.
    hidden: ``mlp`` widths (and the autoencoders' hidden widths).
    widths: ``cnn`` channels.
    stem_stride, stem_kernel: ``cnn``'s first convolution.
    width: ``resnet18`` base width.
    head_hidden: hidden widths of the projection/cluster heads.
    z_dim: embedding dimension.
    cap_z_dim: MLC/CPP: use ``min(z_dim, backbone output dimension)``, so
      that the heads never widen what they are given (a wider ``Z`` lets
      the coding rate grow by distorting the input's geometry: frozen 64-d
      pixels with ``z_dim=128`` cluster far below k-means).
  """
  encoder: str = "mlp"
  hidden: tuple[int, ...] = (512, 512)
  widths: tuple[int, ...] = (32, 64, 128)
  stem_stride: int = 1
  stem_kernel: int = 3
  width: int = 64
  head_hidden: tuple[int, ...] = (512,)
  z_dim: int = 32
  cap_z_dim: bool = False

  def z_dim_for(self, in_dim: int) -> int:
    """The heads' output dimension over a backbone of ``in_dim`` outputs."""
    return min(self.z_dim, in_dim) if self.cap_z_dim else self.z_dim

  @classmethod
  def from_config(cls, config) -> "ModelSpec":
    return specs.from_config(cls, config, "model")

  def __post_init__(self):
    if self.encoder not in ENCODERS:
      raise ValueError(f"Unknown model.encoder {self.encoder!r}; expected "
                       "'identity', 'mlp', 'cnn' or 'resnet18'.")
    if self.z_dim < 1:
      raise ValueError(f"model.z_dim must be >= 1; got {self.z_dim}.")


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  """Rows scaled to unit norm (zero rows stay zero rather than NaN)."""
  sq = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, 1e-12))


class Identity(nnx.Module):
  """Flattens ``[n, ...] -> [n, prod(...)]``."""

  def __init__(self, example_shape: Sequence[int]):
    self.out_dim = int(np.prod(example_shape))

  def __call__(self, x, *, train: bool = False):
    del train
    return x.reshape(x.shape[0], -1)


class MLP(nnx.Module):
  """Linear -> BatchNorm -> ReLU for each hidden width; output is the last."""

  def __init__(self, in_dim: int, hidden: Sequence[int], *, rngs: nnx.Rngs,
               final_activation: bool = True):
    dims = [in_dim, *hidden]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs)
                            for a, b in zip(dims[:-1], dims[1:])])
    self.norms = nnx.List([nnx.BatchNorm(b, rngs=rngs) for b in dims[1:]])
    self.final_activation = final_activation
    self.out_dim = dims[-1]

  def __call__(self, x, *, train: bool = False):
    x = x.reshape(x.shape[0], -1)
    last = len(self.layers) - 1
    for i, (layer, norm) in enumerate(zip(self.layers, self.norms)):
      x = layer(x)
      if i < last or self.final_activation:
        x = nnx.relu(norm(x, use_running_average=not train))
    return x


class SmallCNN(nnx.Module):
  """Conv-BN-ReLU blocks, a 2x2 max-pool after each but the last, GAP.

  The first conv is ``stem_kernel`` wide with stride ``stem_stride``; the
  others are 3x3, stride 1.
  """

  def __init__(self, in_channels: int, widths: Sequence[int], *,
               stem_stride: int = 1, stem_kernel: int = 3, rngs: nnx.Rngs):
    chans = [in_channels, *widths]
    # A strided stem (e.g. 5x5, stride 2) makes 28x28 inputs ~5x cheaper on
    # CPU at little cost in accuracy.
    self.convs = nnx.List([
        nnx.Conv(a, b, (stem_kernel, stem_kernel) if i == 0 else (3, 3),
                 strides=stem_stride if i == 0 else 1, use_bias=False,
                 rngs=rngs)
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))])
    self.norms = nnx.List([nnx.BatchNorm(b, rngs=rngs) for b in chans[1:]])
    self.out_dim = chans[-1]

  def __call__(self, x, *, train: bool = False):
    last = len(self.convs) - 1
    for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
      x = nnx.relu(norm(conv(x), use_running_average=not train))
      if i < last and min(x.shape[1:3]) >= 4:
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))
    return jnp.mean(x, axis=(1, 2))


class _BasicBlock(nnx.Module):

  def __init__(self, in_ch: int, out_ch: int, stride: int, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(in_ch, out_ch, (3, 3), strides=stride,
                          use_bias=False, rngs=rngs)
    self.bn1 = nnx.BatchNorm(out_ch, rngs=rngs)
    self.conv2 = nnx.Conv(out_ch, out_ch, (3, 3), use_bias=False, rngs=rngs)
    self.bn2 = nnx.BatchNorm(out_ch, rngs=rngs)
    if stride != 1 or in_ch != out_ch:
      self.shortcut = nnx.Conv(in_ch, out_ch, (1, 1), strides=stride,
                               use_bias=False, rngs=rngs)
      self.shortcut_bn = nnx.BatchNorm(out_ch, rngs=rngs)
    else:
      self.shortcut = None
      self.shortcut_bn = None

  def __call__(self, x, *, train: bool):
    ra = not train
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=ra))
    y = self.bn2(self.conv2(y), use_running_average=ra)
    if self.shortcut is not None:
      x = self.shortcut_bn(self.shortcut(x), use_running_average=ra)
    return nnx.relu(x + y)


class ResNet18(nnx.Module):
  """ResNet-18 with the CIFAR stem: 3x3 conv, stride 1, no max-pool."""

  def __init__(self, in_channels: int, *, width: int = 64, rngs: nnx.Rngs):
    self.stem = nnx.Conv(in_channels, width, (3, 3), use_bias=False,
                         rngs=rngs)
    self.stem_bn = nnx.BatchNorm(width, rngs=rngs)
    blocks, ch = [], width
    for stage, mult in enumerate((1, 2, 4, 8)):
      for i in range(2):
        stride = 2 if (stage > 0 and i == 0) else 1
        blocks.append(_BasicBlock(ch, width * mult, stride, rngs=rngs))
        ch = width * mult
    self.blocks = nnx.List(blocks)
    self.out_dim = ch

  def __call__(self, x, *, train: bool = False):
    x = nnx.relu(self.stem_bn(self.stem(x), use_running_average=not train))
    for block in self.blocks:
      x = block(x, train=train)
    return jnp.mean(x, axis=(1, 2))


class ProjectionHead(nnx.Module):
  """``hidden`` (BN + ReLU) then a linear map to ``out_dim``.

  MLC/CPP's feature and cluster heads; SwAV's projector. With
  ``normalize=True`` the output rows are L2-normalised.
  """

  def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, *,
               normalize: bool = True, rngs: nnx.Rngs):
    self.mlp = MLP(in_dim, hidden, rngs=rngs) if hidden else None
    last_in = hidden[-1] if hidden else in_dim
    self.out = nnx.Linear(last_in, out_dim, rngs=rngs)
    self.normalize = normalize
    self.out_dim = out_dim

  def __call__(self, x, *, train: bool = False):
    if self.mlp is not None:
      x = self.mlp(x, train=train)
    x = self.out(x)
    return l2_normalize(x) if self.normalize else x


def make_encoder(spec: ModelSpec, example_shape: Sequence[int], *,
                 rngs: nnx.Rngs):
  """The backbone named by ``spec.encoder`` (see the module docstring)."""
  name = spec.encoder
  example_shape = tuple(example_shape)
  if name == "identity":
    return Identity(example_shape)
  if name == "mlp":
    return MLP(int(np.prod(example_shape)), spec.hidden, rngs=rngs)
  if len(example_shape) != 3:
    raise ValueError(f"model.encoder={name!r} needs images [h, w, c]; the "
                     f"data has examples of shape {example_shape}. Use "
                     "'mlp' or 'identity' for feature vectors.")
  if name == "cnn":
    return SmallCNN(example_shape[-1], spec.widths,
                    stem_stride=spec.stem_stride,
                    stem_kernel=spec.stem_kernel, rngs=rngs)
  return ResNet18(example_shape[-1], width=spec.width, rngs=rngs)


# ------------------------------------------------------- methods' models


class MCR2Model(nnx.Module):
  """MLC/CPP: a backbone, a feature head ``Z`` and a cluster head ``C``
  (both unit-norm ``[n, z_dim]``)."""

  def __init__(self, encoder, *, head_hidden, z_dim, rngs):
    self.encoder = encoder
    self.feature_head = ProjectionHead(encoder.out_dim, head_hidden, z_dim,
                                       rngs=rngs)
    self.cluster_head = ProjectionHead(encoder.out_dim, head_hidden, z_dim,
                                       rngs=rngs)

  def __call__(self, x, *, train: bool = False):
    """``x [n, ...]`` -> ``(Z [n, z], C [n, z])``."""
    h = self.encoder(x, train=train)
    return (self.feature_head(h, train=train),
            self.cluster_head(h, train=train))


class HeadLosses:
  """Several heads on one backbone (SCAN), the lowest running loss chosen.

  A mixin for models with ``num_heads`` heads: ``head_loss [H]`` keeps a
  running mean of each head's training loss (folded in by the loss through
  :meth:`record_head_losses`), and :meth:`best_head` names the head with
  the lowest one: a choice made without labels.
  """

  def init_head_losses(self, num_heads: int):
    self.head_loss = Constant(jnp.zeros((num_heads,)))
    self.head_loss_weight = Constant(jnp.zeros(()))

  @property
  def num_heads(self) -> int:
    return self.head_loss.shape[0]

  def best_head(self) -> jax.Array:
    """Index of the head with the lowest running loss (0 before any)."""
    return jnp.argmin(self.head_loss[...])

  def record_head_losses(self, losses: jax.Array, decay: float = 0.98):
    """Folds one step's per-head losses ``[H]`` into the running means
    (exponential, bias-corrected: the first step counts fully)."""
    weight = decay * self.head_loss_weight[...] + (1 - decay)
    mean = self.head_loss[...] * self.head_loss_weight[...] * decay
    self.head_loss[...] = (mean + (1 - decay)
                           * jax.lax.stop_gradient(losses)) / weight
    self.head_loss_weight[...] = weight


class SwAVModel(nnx.Module, HeadLosses):
  """SwAV: a backbone, a unit-norm projector and ``num_heads`` sets of
  ``k`` prototypes (``[H, k, z]``, used L2-normalised); the set with the
  lowest running loss (:class:`HeadLosses`) assigns."""

  def __init__(self, encoder, *, head_hidden, z_dim, num_prototypes, rngs,
               num_heads: int = 1):
    self.encoder = encoder
    self.projector = ProjectionHead(encoder.out_dim, head_hidden, z_dim,
                                    rngs=rngs)
    init = jax.random.normal(rngs.params(),
                             (num_heads, num_prototypes, z_dim))
    self.prototypes = nnx.Param(l2_normalize(init))
    self.init_head_losses(num_heads)

  def __call__(self, x, *, train: bool = False):
    """``x [n, ...]`` -> unit-norm embeddings ``[n, z]``."""
    return self.projector(self.encoder(x, train=train), train=train)

  def unit_prototypes(self) -> jax.Array:
    """``[H, k, z]`` L2-normalised prototypes."""
    return l2_normalize(self.prototypes[...])


class IConModel(nnx.Module, HeadLosses):
  """I-Con: a backbone and ``num_heads`` linear(-MLP) cluster heads giving
  logits; the model's logits are those of the head with the lowest running
  loss (:class:`HeadLosses`).

  With ``num_overclusters > 0`` as many auxiliary heads with that many
  clusters share the backbone (IIC's over-clustering heads): trained, never
  assigning.
  """

  def __init__(self, encoder, *, head_hidden, num_clusters, rngs,
               num_heads: int = 1, num_overclusters: int = 0):
    self.encoder = encoder

    def heads(k):
      return nnx.List([ProjectionHead(encoder.out_dim, head_hidden, k,
                                      normalize=False, rngs=rngs)
                       for _ in range(num_heads)])

    self.heads = heads(num_clusters)
    # Only with over-clustering: a model without it keeps the state (and
    # the checkpoints) it always had.
    if num_overclusters:
      self.overcluster_heads = heads(num_overclusters)
    self.init_head_losses(num_heads)

  def overcluster_logits(self, h, *, train: bool = False):
    """Backbone features ``h [n, d]`` -> ``[H, n, num_overclusters]``."""
    return jnp.stack([head(h, train=train)
                      for head in self.overcluster_heads])

  def all_logits(self, x, *, train: bool = False):
    """``x [n, ...]`` -> ``(backbone features [n, h], logits [H, n, k])``."""
    h = self.encoder(x, train=train)
    return h, jnp.stack([head(h, train=train) for head in self.heads])

  def __call__(self, x, *, train: bool = False):
    """``x [n, ...]`` -> ``(backbone features [n, h], logits [n, k])`` of
    the best head."""
    h, logits = self.all_logits(x, train=train)
    return h, logits[self.best_head()]


class Embedding(nnx.Module):
  """A backbone and, with ``head_hidden`` given, an L2-normalised
  projection head to ``z_dim`` (learned by self-supervision)."""

  def __init__(self, encoder, *, head_hidden=None, z_dim=None, rngs=None):
    self.encoder = encoder
    self.head = (None if head_hidden is None else ProjectionHead(
        encoder.out_dim, head_hidden, z_dim, rngs=rngs))
    self.out_dim = encoder.out_dim if self.head is None else z_dim

  def __call__(self, x, *, train: bool = False):
    """``x [n, ...]`` -> ``(z [n, out_dim], None)`` (no reconstruction)."""
    z = self.encoder(x, train=train)
    return (z if self.head is None else self.head(z, train=train)), None


class AutoEncoder(nnx.Module):
  """An MLP autoencoder with linear outputs (DKM; ClAM's latent variant).

  With ``standardize_latent`` the latent is standardised by BatchNorm
  (batch statistics in training, running ones at evaluation): ClAM's
  completion loss could otherwise be lowered by shrinking the latent.
  """

  def __init__(self, in_dim, hidden, z_dim, *, standardize_latent=False,
               rngs):
    self.encoder = ProjectionHead(in_dim, hidden, z_dim, normalize=False,
                                  rngs=rngs)
    self.decoder = ProjectionHead(z_dim, tuple(reversed(hidden)), in_dim,
                                  normalize=False, rngs=rngs)
    self.standardize = (nnx.BatchNorm(z_dim, use_bias=False, use_scale=False,
                                      rngs=rngs)
                        if standardize_latent else None)
    self.out_dim = z_dim

  def __call__(self, x, *, train: bool = False):
    """``x [n, ...]`` -> ``(latent [n, z], reconstruction [n, D])``."""
    z = self.encoder(x.reshape(x.shape[0], -1), train=train)
    recon = self.decoder(z, train=train)
    if self.standardize is not None:
      z = self.standardize(z, use_running_average=not train)
    return z, recon


class Constant(nnx.Variable):
  """A value a phase start sets from data (not trained, checkpointed)."""


class PrototypeModel(nnx.Module):
  """``k`` trainable prototypes ``[k, dim]`` in the space of ``space``
  (an :class:`Embedding` or :class:`AutoEncoder`): DKM's centroids and
  ClAM's memories, both set from k-means of the training set's embeddings
  when clustering starts. ``fill`` (``[dim]``) is ClAM's value for masked
  coordinates, the training set's mean embedding."""

  def __init__(self, space, num_prototypes: int):
    self.space = space
    self.prototypes = nnx.Param(jnp.zeros((num_prototypes, space.out_dim)))
    self.fill = Constant(jnp.zeros((space.out_dim,)))

  def __call__(self, x, *, train: bool = False):
    """``x [n, ...]`` -> ``(z [n, dim], reconstruction or None)``."""
    return self.space(x, train=train)


class SelfLabelModel(nnx.Module):
  """A method's model with a linear self-label head on its ``features``
  (:mod:`clustering.methods.selflabel`): logits ``((f - mean) / scale) @
  kernel + bias``, set from a fitted classifier when self-labelling
  starts (``started`` then 1; until then the method assigns as usual)."""

  def __init__(self, inner, feature_dim: int, num_clusters: int, *,
               rngs: nnx.Rngs):
    self.inner = inner
    self.head = nnx.Linear(feature_dim, num_clusters, rngs=rngs)
    self.mean = Constant(jnp.zeros((feature_dim,)))
    self.scale = Constant(jnp.ones((feature_dim,)))
    self.started = Constant(jnp.zeros(()))

  def head_logits(self, features: jax.Array) -> jax.Array:
    """``features [n, feature_dim]`` -> logits ``[n, num_clusters]``."""
    return self.head((features - self.mean[...]) / self.scale[...])

  def set_head(self, *, kernel, bias, mean, scale) -> None:
    self.head.kernel[...] = jnp.asarray(kernel)
    self.head.bias[...] = jnp.asarray(bias)
    self.mean[...] = jnp.asarray(mean)
    self.scale[...] = jnp.asarray(scale)
    self.started[...] = jnp.ones(())
