"""The estimators' training helper: Adam over sampled rows, restarts."""

import dataclasses

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from clustering.estimators import fit as fit_lib


class Linear(nnx.Module):

  def __init__(self, d, seed):
    self.w = nnx.Param(jax.random.normal(jax.random.key(seed), (d,)))


@dataclasses.dataclass(frozen=True)
class NoHparams:
  pass


def squared_error(model, rows, key, data, hp):
  del key, hp
  residual = data["x"][rows] @ model.w[...] - data["y"][rows]
  loss = jnp.mean(residual ** 2)
  return loss, {"mse": loss}


def regression(n=200, d=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (x @ np.array([1.5, -2.0, 0.5]) + 0.1 * rng.normal(size=n)).astype(
      np.float32)
  return x, y


def test_fit_reaches_the_least_squares_solution():
  x, y = regression()
  model, losses = fit_lib.fit(
      squared_error, Linear(3, 0), {"x": x, "y": y}, NoHparams(),
      key=jax.random.key(0), num_examples=200, num_steps=600, batch_size=50,
      learning_rate=0.05)
  exact = np.linalg.lstsq(x, y, rcond=None)[0]  # independent solver
  np.testing.assert_allclose(np.asarray(model.w[...]), exact, atol=0.02)
  assert losses.shape == (600,) and losses[-1] < 0.1 * losses[0]


def test_restarts_under_vmap_equal_separate_fits():
  x, y = regression(seed=1)
  data, key = {"x": x, "y": y}, jax.random.key(3)
  kw = dict(num_examples=200, num_steps=20, batch_size=32, learning_rate=0.1)
  group, losses = fit_lib.fit(squared_error, [Linear(3, 1), Linear(3, 2)],
                              data, NoHparams(), key=key, **kw)
  for i, seed in enumerate((1, 2)):
    alone, alone_losses = fit_lib.fit(
        squared_error, Linear(3, seed), data, NoHparams(),
        key=jax.random.split(key, 2)[i], **kw)
    np.testing.assert_allclose(group[i].w[...], alone.w[...], rtol=1e-5)
    np.testing.assert_allclose(losses[i], alone_losses, rtol=1e-5)


def test_mean_loss_scores_each_restart_on_the_same_draws():
  x, y = regression(seed=2)
  good, bad = Linear(3, 0), Linear(3, 0)
  good.w[...] = jnp.asarray(np.linalg.lstsq(x, y, rcond=None)[0])
  bad.w[...] = jnp.zeros(3)
  scores = fit_lib.mean_loss(squared_error, [good, bad], {"x": x, "y": y},
                             NoHparams(), keys=jax.random.split(
                                 jax.random.key(0), 4),
                             num_examples=200, batch_size=200)
  full = [np.mean((x @ np.asarray(m.w[...]) - y) ** 2) for m in (good, bad)]
  np.testing.assert_allclose(scores, full, rtol=1e-4)  # all rows each draw
