"""The estimators' one training helper: Adam over sampled rows in a scan.

A method's loss (:mod:`clustering.methods`) fitted on a fixed feature matrix
``X [n, d]``: every step draws ``batch_size`` distinct rows, evaluates
``loss_fn`` on them and applies an Adam update, all steps in one
``lax.scan`` under ``jit``. Several models of one structure (restarts) train
together under ``vmap``.

``loss_fn(model, rows, key, data, hparams) -> (loss, terms)`` is a
module-level function and ``hparams`` a hashable value, so that fits of the
same shapes and settings reuse one compilation.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["fit", "mean_loss"]

LossFn = Callable[..., tuple[jax.Array, dict]]


def _split(models: Sequence[nnx.Module]):
  """(graphdef, stacked params, stacked other state) of same-shape models."""
  parts = [nnx.split(m, nnx.Param, ...) for m in models]
  def stack(trees):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
  return parts[0][0], stack([p for _, p, _ in parts]), stack(
      [r for _, _, r in parts])


def _objective(loss_fn, graphdef, params, rest, rows, key, data, hparams):
  model = nnx.merge(graphdef, params, rest, copy=True)
  loss, _ = loss_fn(model, rows, key, data, hparams)
  return loss, nnx.split(model, nnx.Param, ...)[2]  # BatchNorm statistics


def _rows(key, num_examples, batch_size):
  return jax.random.choice(key, num_examples, (batch_size,), replace=False)


@functools.partial(jax.jit, static_argnames=(
    "loss_fn", "graphdef", "hparams", "num_examples", "num_steps",
    "batch_size", "learning_rate"))
def _fit(params, rest, keys, data, *, loss_fn, graphdef, hparams,
         num_examples, num_steps, batch_size, learning_rate):
  tx = optax.adam(learning_rate)
  grad_fn = jax.value_and_grad(
      functools.partial(_objective, loss_fn, graphdef), has_aux=True)

  def one(params, rest, key):
    def step(carry, key):
      params, rest, opt_state = carry
      rows_key, loss_key = jax.random.split(key)
      (loss, rest), grads = grad_fn(
          params, rest, _rows(rows_key, num_examples, batch_size), loss_key,
          data, hparams)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), rest, opt_state), loss

    (params, rest, _), losses = jax.lax.scan(
        step, (params, rest, tx.init(params)),
        jax.random.split(key, num_steps))
    return params, rest, losses

  if keys.shape[0] == 1:  # one model: no vmap (cheaper control flow)
    out = one(*jax.tree.map(lambda a: a[0], (params, rest, keys)))
    return jax.tree.map(lambda a: a[None], out)
  return jax.vmap(one)(params, rest, keys)


def fit(loss_fn: LossFn, models: nnx.Module | Sequence[nnx.Module],
        data: Any, hparams: Any, *, key: jax.Array, num_examples: int,
        num_steps: int, batch_size: int, learning_rate: float):
  """Trains ``models`` on ``loss_fn`` with Adam over sampled rows.

  Args:
    loss_fn: ``(model, rows [batch_size] int32, key, data, hparams) ->
      (loss, terms)``.
    models: one flax.nnx model, or a list of models of one structure
      (restarts), trained together under ``vmap``; restart ``i`` trains as
      the single model would with ``key=jax.random.split(key, R)[i]``.
    data: a pytree of arrays the loss indexes with ``rows``.
    hparams: hashable hyperparameters handed to ``loss_fn``.
    key: PRNG key.
    num_examples: ``n``, the rows drawn from.
    num_steps: Adam steps.
    batch_size: distinct rows per step (at most ``n``).
    learning_rate: Adam's.

  Returns:
    ``(models, losses)``: the trained model (or list) and ``[num_steps]``
    (or ``[restarts, num_steps]``) training losses.
  """
  single = isinstance(models, nnx.Module)
  group = [models] if single else list(models)
  graphdef, params, rest = _split(group)
  # Restart i of a group trains exactly as `fit(models[i], key=keys[i])`.
  keys = key[None] if single else jax.random.split(key, len(group))
  params, rest, losses = _fit(
      params, rest, keys, data,
      loss_fn=loss_fn, graphdef=graphdef, hparams=hparams,
      num_examples=int(num_examples), num_steps=int(num_steps),
      batch_size=int(min(batch_size, num_examples)),
      learning_rate=float(learning_rate))
  trained = [nnx.merge(graphdef, *jax.tree.map(lambda a, i=i: a[i],
                                               (params, rest)))
             for i in range(len(group))]
  losses = np.asarray(losses)
  return (trained[0], losses[0]) if single else (trained, losses)


@functools.partial(jax.jit, static_argnames=(
    "loss_fn", "graphdef", "hparams", "num_examples", "batch_size"))
def _mean_loss(params, rest, keys, data, *, loss_fn, graphdef, hparams,
               num_examples, batch_size):
  def one(params, rest):
    def at(key):
      rows_key, loss_key = jax.random.split(key)
      return _objective(loss_fn, graphdef, params, rest,
                        _rows(rows_key, num_examples, batch_size), loss_key,
                        data, hparams)[0]
    return jnp.mean(jax.vmap(at)(keys))
  return jax.vmap(one)(params, rest)


def mean_loss(loss_fn: LossFn, models: Sequence[nnx.Module], data: Any,
              hparams: Any, *, keys: jax.Array, num_examples: int,
              batch_size: int) -> np.ndarray:
  """``[len(models)]`` each model's loss averaged over the same draws
  (``keys``): an unsupervised score to choose among restarts."""
  graphdef, params, rest = _split(list(models))
  return np.asarray(_mean_loss(
      params, rest, keys, data, loss_fn=loss_fn, graphdef=graphdef,
      hparams=hparams, num_examples=int(num_examples),
      batch_size=int(min(batch_size, num_examples))))
