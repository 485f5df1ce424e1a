"""Shared test helpers: random data and float64 gradient checks."""

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
