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
    # Two views of each sample: its row and the row with features rolled.
    "total_coding_rate": lambda z, pi, ax=None: O.total_coding_rate_loss(jnp.stack([z, jnp.roll(z, 1, axis=1)]), eps_sq=0.5, axis_name=ax),
    "soft_kmeans_centroids": lambda z, pi, ax=None: O.soft_kmeans_centroids(z, pi, axis_name=ax),
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


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
@pytest.mark.parametrize("mode", ["implicit", "unroll"])
def test_doubly_stochastic_membership_modes_sharded(mesh, mode):
  z, _, _ = _data(n=64)
  kwargs = dict(eta=0.2, differentiation=mode)
  single = jax.jit(lambda z: O.doubly_stochastic_membership(z, **kwargs))(z)
  mapped = _shard_map(
      mesh, lambda z: O.doubly_stochastic_membership(z, axis_name="data",
                                                     **kwargs),
      in_specs=(P("data"),), out_specs=P("data"))(z)
  # Every device's [8, 64] block of rows, stacked: the full membership.
  assert mapped.shape == (64, 64)
  np.testing.assert_allclose(mapped, single, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(mapped.sum(1), 1.0, atol=1e-5)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_unbalanced_sinkhorn_sharded(mesh):
  # Fixed iterations (unrolled). Tolerance mode is not checked here: with
  # rho_a/rho_b it raises under any trace (jit, shard_map, pmap), as
  # `sinkhorn` turns the concrete epsilon into a tracer before checking it.
  z, _, protos = _data(n=64, k=5)
  scores = z @ protos.T
  kwargs = dict(epsilon=0.1, rho_a=1.0, rho_b=0.5, num_iters=200)
  single = jax.jit(lambda s: O.sinkhorn(s, **kwargs))(scores)
  plan, f, g, error = _shard_map(
      mesh, lambda s: (lambda o: (o.plan, o.f, o.g, o.error))(
          O.sinkhorn(s, axis_name="data", **kwargs)),
      in_specs=(P("data"),), out_specs=(P("data"), P("data"), P(), P()))(
          scores)
  np.testing.assert_allclose(plan, single.plan, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(f, single.f, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(g, single.g, rtol=1e-4, atol=1e-5)
  # The stopping error includes the row term, psum-reduced over devices.
  np.testing.assert_allclose(error, single.error, rtol=1e-3, atol=1e-7)


PMAP_DEVICES = 4


@pytest.fixture(scope="module")
def pmap_devices():
  if jax.device_count() < PMAP_DEVICES:
    pytest.skip(f"needs {PMAP_DEVICES} devices, JAX has {jax.device_count()}")
  return jax.devices()[:PMAP_DEVICES]


def _pmap(devices, fn):
  return jax.pmap(fn, axis_name="batch", devices=devices)


def _split(x, axis=0):
  """``[..., n, ...]`` -> ``[devices, ..., n / devices, ...]``."""
  x = np.moveaxis(x, axis, 0)
  x = x.reshape((PMAP_DEVICES, -1) + x.shape[1:])
  return np.moveaxis(x, 1, axis + 1)


def _join(x, axis=0):
  """Inverse of `_split`."""
  x = np.moveaxis(np.asarray(x), axis + 1, 1)
  x = x.reshape((-1,) + x.shape[2:])
  return np.moveaxis(x, 0, axis)


def _pmap_scores():
  z, _, protos = _data(n=32, k=5)
  return z @ protos.T


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_pmap_sinkhorn_equals_single_device(pmap_devices):
  scores = _pmap_scores()
  single = jax.jit(lambda s: O.sinkhorn(s, epsilon=0.1, tol=1e-6))(scores)
  plan, g = _pmap(pmap_devices, lambda s: (lambda o: (o.plan, o.g))(
      O.sinkhorn(s, epsilon=0.1, tol=1e-6, axis_name="batch")))(
          _split(scores))
  plan = _join(plan)
  np.testing.assert_allclose(plan, single.plan, rtol=1e-4, atol=1e-7)
  for device_g in g:  # the prototypes' potentials are global
    np.testing.assert_allclose(device_g, single.g, rtol=1e-4, atol=1e-5)
  # The global marginals: 1/n per sample (exact), 1/k per prototype.
  np.testing.assert_allclose(plan.sum(1), 1 / 32, rtol=1e-5)
  np.testing.assert_allclose(plan.sum(0), 1 / 5, atol=1e-5)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_pmap_swav_codes_equal_single_device(pmap_devices):
  scores = _pmap_scores()
  codes = _join(_pmap(pmap_devices, lambda s: O.swav_codes(
      s, axis_name="batch"))(_split(scores)))
  np.testing.assert_allclose(codes, jax.jit(O.swav_codes)(scores), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(  # SwAV's own loop on the full batch
      codes, helpers.swav_sinkhorn_reference(scores, 0.05, 3), rtol=1e-4,
      atol=1e-6)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_pmap_rates_equal_single_device(pmap_devices):
  z, pi, _ = _data(n=32)
  views = np.stack([z, helpers.unit_rows(
      z + 0.3 * helpers.normal(5, z.shape))])  # [2, n, d]

  def rates(z, pi, views, ax=None):
    return (O.coding_rate(z, eps_sq=0.5, axis_name=ax),
            O.mcr2_loss(z, pi, eps_sq=0.5, axis_name=ax),
            O.total_coding_rate_loss(views, eps_sq=0.5, axis_name=ax))

  single = jax.jit(rates)(z, pi, views)
  mapped = _pmap(pmap_devices, functools.partial(rates, ax="batch"))(
      _split(z), _split(pi), _split(views, axis=1))
  for value, device_values in zip(single, mapped):
    np.testing.assert_allclose(device_values, np.full(PMAP_DEVICES, value),
                               rtol=1e-5, atol=1e-6)
  # And the float64 formulas on the full batch.
  z64, mean64 = np.float64(z), np.float64(views).mean(0)
  rate = lambda m: 0.5 * np.linalg.slogdet(
      np.eye(6) + 6 / (32 * 0.5) * m.T @ m)[1]
  np.testing.assert_allclose(mapped[0], rate(z64), rtol=1e-5)
  cos = np.sum(np.float64(views[0]) * views[1], axis=1).mean()
  np.testing.assert_allclose(mapped[2], -rate(mean64) - cos, rtol=1e-5)
