"""Encoders and heads."""

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from clustering import models


def enc(**kw):
  base = dict(encoder="mlp", hidden=(16, 8), widths=(4, 8), width=8)
  base.update(kw)
  return models.ModelSpec.from_config(ml_collections.ConfigDict(base))


@pytest.mark.parametrize("name,shape,out", [
    ("identity", (5,), 5), ("mlp", (8, 8, 1), 8), ("cnn", (8, 8, 1), 8),
    pytest.param("resnet18", (16, 16, 3), 64, marks=pytest.mark.slow)])
def test_encoders_map_batches_to_vectors(name, shape, out):
  model = models.make_encoder(enc(encoder=name), shape, rngs=nnx.Rngs(0))
  x = jnp.ones((3,) + shape)
  assert model(x, train=True).shape == (3, out) and model.out_dim == out
  assert model(x, train=False).shape == (3, out)


def test_strided_cnn_stem_halves_the_first_feature_map():
  model = models.make_encoder(enc(encoder="cnn", widths=(4, 8), stem_stride=2,
                                  stem_kernel=5), (28, 28, 1),
                              rngs=nnx.Rngs(0))
  assert model.convs[0].kernel_size == (5, 5)
  assert model.convs[0].strides == 2
  assert model(jnp.ones((2, 28, 28, 1)), train=True).shape == (2, 8)


@pytest.mark.slow
def test_resnet18_has_the_cifar_resnet18_parameter_count():
  model = models.ResNet18(3, width=64, rngs=nnx.Rngs(0))
  count = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  # torchvision-style CIFAR ResNet-18 without its 10-way classifier.
  assert count == 11_173_962 - (512 * 10 + 10)


def test_cnn_on_vectors_is_a_clear_error():
  with pytest.raises(ValueError, match=r"images \[h, w, c\]"):
    models.make_encoder(enc(encoder="cnn"), (64,), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="Unknown model.encoder"):
    enc(encoder="vit")


def test_projection_head_rows_are_unit_norm_and_zero_safe():
  head = models.ProjectionHead(4, (8,), 3, rngs=nnx.Rngs(0))
  z = head(jax.random.normal(jax.random.key(0), (5, 4)), train=True)
  np.testing.assert_allclose(jnp.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
  assert bool(jnp.all(models.l2_normalize(jnp.zeros((2, 3))) == 0))
