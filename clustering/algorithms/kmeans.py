"""Lloyd's k-means with k-means++ initialisation, restarts run under `vmap`.

Matches scikit-learn's `KMeans` semantics: `inertia` is the sum of squared
distances to the nearest centroid, and `tol` is relative to the data's mean
per-feature variance (Lloyd stops when the squared centroid shift falls below
``tol * mean(var(x, axis=0))``). Initialisation is greedy k-means++ with
``2 + int(log k)`` candidates per centre, as scikit-learn does. Empty
clusters keep their previous centroid.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from objectives import validation
from objectives import dkm_inverse_temperature
from objectives import soft_kmeans_assignments
from objectives import soft_kmeans_centroids
from objectives import squared_distances


class KMeansResult(NamedTuple):
  """Best restart of :func:`kmeans`.

  Attributes:
    centroids: ``[k, d]``.
    labels: ``[n]`` int32 index of the nearest centroid.
    inertia: sum of squared distances to the nearest centroid.
    iterations: Lloyd iterations run by the best restart.
  """
  centroids: jax.Array
  labels: jax.Array
  inertia: jax.Array
  iterations: jax.Array


def _kmeans_plus_plus(x, k, key):
  """Greedy k-means++: each centre is the best of a few D^2 samples."""
  n = x.shape[0]
  trials = 2 + int(math.log(k))
  key, sub = jax.random.split(key)
  first = jax.random.randint(sub, (), 0, n)
  centroids = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
  closest = squared_distances(x, x[first][None])[:, 0]

  def add_centre(i, state):
    centroids, closest, key = state
    key, sub = jax.random.split(key)
    cand = jax.random.choice(sub, n, (trials,), p=closest / jnp.sum(closest))
    cand_d = squared_distances(x[cand], x)  # [trials, n]
    new_closest = jnp.minimum(closest[None, :], cand_d)  # [trials, n]
    best = jnp.argmin(jnp.sum(new_closest, axis=1))
    return (centroids.at[i].set(x[cand[best]]), new_closest[best], key)

  centroids, _, _ = jax.lax.fori_loop(1, k, add_centre,
                                      (centroids, closest, key))
  return centroids


def _assign(x, centroids):
  dist = squared_distances(x, centroids)
  labels = jnp.argmin(dist, axis=1)
  return labels, jnp.min(dist, axis=1)


def _lloyd(x, centroids, max_iters, tol_abs):
  k = centroids.shape[0]

  def cond(state):
    _, shift, it = state
    return jnp.logical_and(it < max_iters, shift > tol_abs)

  def body(state):
    centroids, _, it = state
    labels, _ = _assign(x, centroids)
    onehot = jax.nn.one_hot(labels, k, dtype=x.dtype)
    counts = jnp.sum(onehot, axis=0)
    sums = onehot.T @ x
    new = jnp.where(counts[:, None] > 0,
                    sums / jnp.maximum(counts, 1.0)[:, None], centroids)
    return new, jnp.sum((new - centroids) ** 2), it + 1

  init = (centroids, jnp.asarray(jnp.inf, x.dtype), jnp.asarray(0, jnp.int32))
  centroids, _, iterations = jax.lax.while_loop(cond, body, init)
  labels, dist = _assign(x, centroids)
  return centroids, labels.astype(jnp.int32), jnp.sum(dist), iterations


@functools.partial(jax.jit, static_argnames=("num_clusters", "n_init",
                                             "max_iters"))
def _kmeans(x, key, tol, *, num_clusters, n_init, max_iters):
  tol_abs = tol * jnp.mean(jnp.var(x, axis=0))

  def one(key):
    init = _kmeans_plus_plus(x, num_clusters, key)
    return _lloyd(x, init, max_iters, tol_abs)

  centroids, labels, inertia, iters = jax.vmap(one)(
      jax.random.split(key, n_init))
  best = jnp.argmin(inertia)
  return KMeansResult(centroids[best], labels[best], inertia[best],
                      iters[best])


def kmeans(x: jax.typing.ArrayLike,
           num_clusters: int,
           *,
           n_init: int = 10,
           max_iters: int = 300,
           tol: float = 1e-4,
           seed: int = 0) -> KMeansResult:
  """k-means (Lloyd) with k-means++ init; `n_init` restarts in one `vmap`.

  Args:
    x: ``[n, d]`` samples (rows).
    num_clusters: ``k``, at most ``n``.
    n_init: independent restarts; the lowest inertia wins.
    max_iters: Lloyd iteration cap per restart.
    tol: relative tolerance (scikit-learn's convention, see module doc).
    seed: PRNG seed.

  Returns:
    :class:`KMeansResult` of the best restart.
  """
  x = validation.float_array(x, "x", "[n, d]", rank=2)
  num_clusters = validation.positive_int(num_clusters, "num_clusters")
  n_init = validation.positive_int(n_init, "n_init")
  max_iters = validation.positive_int(max_iters, "max_iters")
  if num_clusters > x.shape[0]:
    raise ValueError(f"`num_clusters`={num_clusters} exceeds the number of "
                     f"samples n={x.shape[0]} in `x` {x.shape}.")
  return _kmeans(x, jax.random.PRNGKey(seed), jnp.asarray(tol, x.dtype),
                 num_clusters=num_clusters, n_init=n_init,
                 max_iters=max_iters)



class SoftKMeansResult(NamedTuple):
  """Best restart of :func:`annealed_soft_kmeans`.

  Attributes:
    centroids: ``[k, d]``.
    labels: ``[n]`` int32 nearest centroid.
    inertia: hard inertia (sum of squared distances to the nearest centroid).
    temperature: the last temperature of the schedule (squared-distance
      units).
  """
  centroids: jax.Array
  labels: jax.Array
  inertia: jax.Array
  temperature: jax.Array


@functools.partial(jax.jit, static_argnames=("num_clusters", "n_init",
                                             "steps"))
def _annealed(x, key, alpha_0, *, num_clusters, n_init, steps):
  # Temperatures in units of the data's squared distances: the schedule is
  # then the same for pixels in [0, 16] and for unit-norm embeddings.
  scale = jnp.maximum(jnp.mean(squared_distances(x, jnp.mean(x, 0)[None])),
                      jnp.finfo(x.dtype).tiny)
  temps = scale / dkm_inverse_temperature(jnp.arange(steps), alpha_0=alpha_0)

  def one(key):
    centroids = _kmeans_plus_plus(x, num_clusters, key)

    def step(c, t):
      resp = soft_kmeans_assignments(x, c, temperature=t)
      return soft_kmeans_centroids(x, resp), None

    centroids, _ = jax.lax.scan(step, centroids, temps)
    labels, dist = _assign(x, centroids)
    return centroids, labels.astype(jnp.int32), jnp.sum(dist)

  centroids, labels, inertia = jax.vmap(one)(jax.random.split(key, n_init))
  best = jnp.argmin(inertia)
  return SoftKMeansResult(centroids[best], labels[best], inertia[best],
                          temps[-1])


def annealed_soft_kmeans(x: jax.typing.ArrayLike,
                         num_clusters: int,
                         *,
                         n_init: int = 10,
                         steps: int = 60,
                         alpha_0: float = 0.1,
                         seed: int = 0) -> SoftKMeansResult:
  """Soft k-means EM under DKM's annealing, ``n_init`` restarts in a vmap.

  Each restart starts from k-means++ centroids; step ``t`` sets every
  centroid to the mean of ``x`` weighted by soft assignments at temperature
  ``s / alpha_t`` (``alpha_t``: :func:`objectives.dkm_inverse_temperature`,
  ``s``: the mean squared distance to the data mean). As ``alpha_t`` grows
  the steps become Lloyd steps (deterministic annealing). The restart with
  the lowest hard inertia wins.

  Args:
    x: ``[n, d]`` samples.
    num_clusters: ``k <= n``.
    n_init: restarts.
    steps: annealing steps.
    alpha_0: first inverse temperature (in units of ``1/s``).
    seed: PRNG seed.
  """
  x = validation.float_array(x, "x", "[n, d]", rank=2)
  num_clusters = validation.positive_int(num_clusters, "num_clusters")
  if num_clusters > x.shape[0]:
    raise ValueError(f"`num_clusters`={num_clusters} exceeds the number of "
                     f"samples n={x.shape[0]} in `x` {x.shape}.")
  validation.positive(alpha_0, "alpha_0")
  if not alpha_0 <= 1e4:
    raise ValueError(f"`alpha_0` must be <= 1e4 (the schedule's cap); got "
                     f"{alpha_0}.")
  return _annealed(x, jax.random.PRNGKey(seed), jnp.asarray(alpha_0, x.dtype),
                   num_clusters=num_clusters,
                   n_init=validation.positive_int(n_init, "n_init"),
                   steps=validation.positive_int(steps, "steps"))


# --------------------------------------------------------------- mini-batch


class MiniBatchState(NamedTuple):
  """Mini-batch k-means after some steps (scikit-learn's algorithm).

  Attributes:
    centroids: ``[k, d]``.
    counts: ``[k]`` samples each centroid has averaged so far.
    ewa_inertia: exponentially weighted mean of the batches' inertia per
      sample (``-1`` before the first batch).
    best_ewa: its lowest value so far.
    no_improvement: steps since ``best_ewa`` last fell.
    steps: steps taken (stopped steps excluded).
    stopped: ``max_no_improvement`` steps passed without a new best.
    since_reassign: samples seen since nearly empty centroids were last
      moved.
    key: PRNG key of those moves.
  """
  centroids: jax.Array
  counts: jax.Array
  ewa_inertia: jax.Array
  best_ewa: jax.Array
  no_improvement: jax.Array
  steps: jax.Array
  stopped: jax.Array
  since_reassign: jax.Array
  key: jax.Array


def minibatch_init(centroids: jax.Array, key: jax.Array) -> MiniBatchState:
  """The state before any step, from initial ``centroids [k, d]``."""
  k = centroids.shape[0]
  f32, i32 = jnp.float32, jnp.int32
  return MiniBatchState(jnp.asarray(centroids, f32), jnp.zeros((k,), f32),
                        jnp.asarray(-1.0, f32), jnp.asarray(jnp.inf, f32),
                        jnp.asarray(0, i32), jnp.asarray(0, i32),
                        jnp.asarray(False), jnp.asarray(0, i32), key)


def _reassign(centroids, counts, batch, key, ratio):
  """scikit-learn's move of nearly empty centroids (``count < ratio *
  max(count)``, at most half a batch of them, the emptiest first) onto
  distinct random samples of the batch; their counts become the smallest
  count kept, so they are not moved straight back."""
  b = batch.shape[0]
  move = counts < ratio * jnp.max(counts)
  move &= jnp.argsort(jnp.argsort(counts)) < b // 2
  slot = jnp.clip(jnp.cumsum(move) - 1, 0, b - 1)
  new = batch[jax.random.permutation(key, b)[slot]]
  kept_min = jnp.min(jnp.where(move, jnp.inf, counts))
  return (jnp.where(move[:, None], new, centroids),
          jnp.where(move, kept_min, counts))


def minibatch_step(state: MiniBatchState, batch: jax.Array, *,
                   num_examples: int, max_no_improvement: int | None = 10,
                   reassignment_ratio: float = 0.01) -> MiniBatchState:
  """One step: every centroid becomes the running mean of all the samples
  assigned to it so far (a per-centroid rate ``1 / count``).

  ``c_j <- (count_j c_j + sum_{x in batch, j} x) / (count_j + n_j)``, as
  scikit-learn's ``MiniBatchKMeans``, with its random move of nearly empty
  centroids (:func:`_reassign`) whenever a centroid has no sample yet or
  ``10 k`` samples have passed since the last one. The batches' inertia
  per sample (before the update) is smoothed with weight ``min(1, 2 b / (n
  + 1))`` (``n``: ``num_examples``); after ``max_no_improvement`` steps
  without a new lowest value the state stops changing (``stopped``).

  Args:
    state: the current :class:`MiniBatchState`.
    batch: ``[b, d]`` samples.
    num_examples: the data set's size (for the smoothing weight).
    max_no_improvement: ``None``: never stop.
    reassignment_ratio: ``0``: never move a centroid at random.
  """
  b = batch.shape[0]
  labels, dist = _assign(batch, state.centroids)
  onehot = jax.nn.one_hot(labels, state.centroids.shape[0],
                          dtype=batch.dtype)
  batch_counts = jnp.sum(onehot, axis=0)
  counts = state.counts + batch_counts
  sums = state.centroids * state.counts[:, None] + onehot.T @ batch
  centroids = jnp.where(counts[:, None] > 0,
                        sums / jnp.maximum(counts, 1.0)[:, None],
                        state.centroids)
  k = centroids.shape[0]
  since = state.since_reassign + b
  due = jnp.any(state.counts == 0) | (since >= 10 * k)
  key, sub = jax.random.split(state.key)
  if reassignment_ratio > 0:
    moved, moved_counts = _reassign(centroids, counts, batch, sub,
                                    reassignment_ratio)
    centroids = jnp.where(due, moved, centroids)
    counts = jnp.where(due, moved_counts, counts)
  since = jnp.where(due, 0, since)
  inertia = jnp.sum(dist) / b
  alpha = min(1.0, 2.0 * b / (num_examples + 1))
  ewa = jnp.where(state.ewa_inertia < 0, inertia,
                  state.ewa_inertia * (1 - alpha) + inertia * alpha)
  improved = ewa < state.best_ewa
  no_improvement = jnp.where(improved, 0, state.no_improvement + 1)
  stopped = (jnp.asarray(False) if max_no_improvement is None
             else no_improvement >= max_no_improvement)
  new = MiniBatchState(centroids, counts, ewa,
                       jnp.minimum(ewa, state.best_ewa), no_improvement,
                       state.steps + 1, stopped, since, key)
  # A stopped state is kept as it is.
  return jax.tree.map(lambda old, upd: jnp.where(state.stopped, old, upd),
                      state, new)


@functools.partial(jax.jit, static_argnames=("num_examples",
                                             "max_no_improvement",
                                             "reassignment_ratio"))
def minibatch_steps(state: MiniBatchState, batches: jax.Array, *,
                    num_examples: int, max_no_improvement: int | None = 10,
                    reassignment_ratio: float = 0.01) -> MiniBatchState:
  """:func:`minibatch_step` over ``batches [s, b, d]`` under one scan."""
  def body(state, batch):
    return minibatch_step(state, batch, num_examples=num_examples,
                          max_no_improvement=max_no_improvement,
                          reassignment_ratio=reassignment_ratio), None
  return jax.lax.scan(body, state, batches)[0]
