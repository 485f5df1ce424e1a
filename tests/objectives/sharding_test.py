"""On 8 CPU devices, sharded objectives equal their single-device values.

Two ways are checked: `jax.jit` over a batch sharded `P('data')` on an Auto
mesh (XLA inserts the collectives), and `jax.shard_map` with `axis_name`
(the objective reduces its batch statistics with `psum`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import objectives as O
from tests.objectives import helpers

NUM_DEVICES = 8


@pytest.fixture(scope="module")
def mesh():
  if jax.device_count() < NUM_DEVICES:
    pytest.skip(f"needs {NUM_DEVICES} devices, JAX has {jax.device_count()}")
  return jax.make_mesh((NUM_DEVICES,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def _data(n=64, d=6, k=5):
  z = helpers.unit_rows(helpers.normal(0, (n, d)))
  logits = helpers.normal(1, (n, k))
  pi = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
  protos = helpers.unit_rows(helpers.normal(2, (k, d)))
  return z, pi, protos


def _shard_map(mesh, fn, in_specs, out_specs=P()):
  return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=in_specs,
                               out_specs=out_specs))


def _batch_sharded(mesh, *arrays):
  sharding = NamedSharding(mesh, P("data"))
  return [jax.device_put(a, sharding) for a in arrays]


LOSSES = {
    "coding_rate": lambda z, pi, ax=None: O.coding_rate(z, eps_sq=0.5, axis_name=ax),
    "compression_rate": lambda z, pi, ax=None: O.compression_rate(z, pi, eps_sq=0.5, axis_name=ax),
    "mcr2": lambda z, pi, ax=None: O.mcr2_loss(z, pi, eps_sq=0.5, axis_name=ax),
    "soft_kmeans": lambda z, pi, ax=None: O.soft_kmeans_loss(z, z[:5] * 0 + jnp.eye(5, 6), temperature=0.3, axis_name=ax),
    "clam": lambda z, pi, ax=None: O.clam_loss(z, jnp.eye(5, 6), (z > 0.3).astype(z.dtype), beta=1.5, axis_name=ax),
    "icon": lambda z, pi, ax=None: O.icon_loss(jnp.log(pi), jax.nn.log_softmax(z[:, :5]), axis_name=ax),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_sharded_equal_single_device(mesh, name):
  z, pi, _ = _data()
  fn = LOSSES[name]
  single = jax.jit(fn)(z, pi)
  jit_sharded = jax.jit(fn)(*_batch_sharded(mesh, z, pi))
  mapped = _shard_map(mesh, functools.partial(fn, ax="data"),
                      in_specs=(P("data"), P("data")))(z, pi)
  np.testing.assert_allclose(jit_sharded, single, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(mapped, single, rtol=1e-5, atol=1e-6)


def test_mcr2_gradient_sharded_equals_single_device(mesh):
  z, pi, _ = _data()
  grad_fn = jax.grad(lambda z, pi: O.mcr2_loss(z, pi, eps_sq=0.5))
  single = jax.jit(grad_fn)(z, pi)
  mapped = _shard_map(
      mesh,
      jax.grad(lambda z, pi: O.mcr2_loss(z, pi, eps_sq=0.5, axis_name="data")),
      in_specs=(P("data"), P("data")), out_specs=P("data"))(z, pi)
  np.testing.assert_allclose(mapped, single, rtol=1e-4, atol=1e-6)


def test_sinkhorn_marginals_and_swav_codes_sharded(mesh):
  z, _, protos = _data(n=64, k=5)
  scores = z @ protos.T
  single = O.sinkhorn(scores, epsilon=0.1, tol=1e-5)
  mapped_plan = _shard_map(
      mesh,
      lambda s: O.sinkhorn(s, epsilon=0.1, tol=1e-5, axis_name="data").plan,
      in_specs=(P("data"),), out_specs=P("data"))(scores)
  np.testing.assert_allclose(mapped_plan, single.plan, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(mapped_plan.sum(0), 1 / 5, atol=1e-5)
  np.testing.assert_allclose(mapped_plan.sum(1), 1 / 64, rtol=1e-5)
  (sharded_scores,) = _batch_sharded(mesh, scores)
  jit_plan = jax.jit(lambda s: O.sinkhorn(s, epsilon=0.1, tol=1e-5).plan)(
      sharded_scores)
  np.testing.assert_allclose(jit_plan, single.plan, rtol=1e-4, atol=1e-7)

  codes = O.swav_codes(scores)
  mapped_codes = _shard_map(
      mesh, lambda s: O.swav_codes(s, axis_name="data"),
      in_specs=(P("data"),), out_specs=P("data"))(scores)
  jit_codes = jax.jit(O.swav_codes)(sharded_scores)
  np.testing.assert_allclose(mapped_codes, codes, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jit_codes, codes, rtol=1e-5, atol=1e-6)


def test_doubly_stochastic_membership_sharded(mesh):
  z, _, _ = _data(n=64)
  single = O.compression_rate(z, O.doubly_stochastic_membership(z, eta=0.2),
                              eps_sq=0.5)

  def local(z):
    gamma = O.doubly_stochastic_membership(z, eta=0.2, axis_name="data")
    return O.compression_rate(z, gamma, eps_sq=0.5, axis_name="data")

  mapped = _shard_map(mesh, local, in_specs=(P("data"),))(z)
  np.testing.assert_allclose(mapped, single, rtol=1e-5)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
@pytest.mark.parametrize("mode", ["implicit", "unroll"])
def test_sinkhorn_gradient_inside_shard_map(mesh, mode):
  rng = np.random.default_rng(3)
  scores = rng.standard_normal((64, 5)).astype(np.float32)
  weights = rng.standard_normal((64, 5)).astype(np.float32)
  kwargs = dict(tol=1e-6) if mode == "implicit" else dict(num_iters=300)
  single = jax.grad(lambda s: jnp.sum(
      O.sinkhorn(s, epsilon=0.5, differentiation=mode, **kwargs).plan
      * weights))(scores)

  def local(s, w):
    plan = O.sinkhorn(s, epsilon=0.5, differentiation=mode, axis_name="data",
                      **kwargs).plan
    return jax.lax.psum(jnp.sum(plan * w), "data")

  mapped = _shard_map(mesh, jax.grad(local), in_specs=(P("data"), P("data")),
                      out_specs=P("data"))(scores, weights)
  np.testing.assert_allclose(mapped, single, atol=1e-6)
