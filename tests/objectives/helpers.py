"""Shared test helpers: random data, float64 gradient checks, references."""

import jax
import jax.numpy as jnp
import numpy as np
from jax import test_util


def normal(seed, shape, dtype=np.float32):
  return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def unit_rows(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def check_grads_f64(fun, args, order=1, **kwargs):
  """`jax.test_util.check_grads` in float64 (finite differences need it)."""
  with jax.enable_x64(True):
    args64 = [jnp.asarray(np.asarray(a, np.float64)) for a in args]
    test_util.check_grads(fun, args64, order=order, modes=("rev",), **kwargs)


def swav_sinkhorn_reference(scores, eps, iters):
  """SwAV's distributed_sinkhorn on one device, as its repo writes it:
  ``[B, k]`` scores -> ``[B, k]`` codes whose rows sum to 1."""
  q = np.exp(np.float64(scores) / eps).T  # [k, B] as in SwAV
  q /= q.sum()
  k, b = q.shape
  for _ in range(iters):
    q /= q.sum(axis=1, keepdims=True)
    q /= k
    q /= q.sum(axis=0, keepdims=True)
    q /= b
  return (q * b).T
