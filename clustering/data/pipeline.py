"""The input pipeline: what every method's loss and outputs receive.

* **Order**: the training order is a pure function of ``(seed, step)``
  (grain's per-epoch shuffle with random access), so a resumed run reads
  exactly the batches an uninterrupted one would; neighbour partners are
  drawn from ``(seed, step)`` too.
* **Neighbours**: a method that trains on neighbour pairs gets, for every
  anchor, one of its ``k`` nearest training examples in the input space
  (mined once, before step 0).
* **Statistics and views**: inputs are standardised with training-set
  statistics and augmented on device, inside the jitted step; a method
  states what it needs as an :class:`InputSpec` and receives
  :class:`Inputs`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from clustering import specs
from clustering.algorithms import neighbors as neighbors_lib

__all__ = ["index_dataset", "batch_indices", "partner_indices",
           "TrainingBatches",
           "mine_neighbors", "resolve_neighbor_search", "InputStats",
           "input_stats", "standardize",
           "AugmentSpec", "InputSpec", "Inputs", "model_inputs", "augment"]


# ------------------------------------------------------------- input order


def index_dataset(num_examples: int, *, seed: int):
  """Example indices in training order (a ``grain.MapDataset``): reshuffled
  every epoch, endless."""
  import grain  # pylint: disable=g-import-not-at-top
  return grain.MapDataset.range(num_examples).shuffle(seed=seed).repeat(None)


def batch_indices(order, step: int, batch_size: int,
                  *, process_index: int = 0, process_count: int = 1):
  """This process's share of global batch ``step`` (a pure function of step).

  Returns:
    ``[batch_size // process_count]`` int64 example indices.
  """
  per_process = batch_size // process_count
  start = step * batch_size + process_index * per_process
  return np.fromiter((order[i] for i in range(start, start + per_process)),
                     dtype=np.int64, count=per_process)


def partner_indices(neighbors: np.ndarray, anchors: np.ndarray, *, seed: int,
                    step: int, batch_size: int, process_index: int = 0,
                    process_count: int = 1, self_share: float = 0.0
                    ) -> np.ndarray:
  """One random neighbour of each anchor of this process's share of batch s.

  Args:
    neighbors: ``[n, K]`` neighbour indices of every training example.
    anchors: this process's ``[batch_size / process_count]`` example indices.
    seed, step: the draw is a function of ``(seed, step)`` only, so a resumed
      run sees the same pairs.
    batch_size: the global batch size.
    self_share: probability that an anchor is its own partner (its view 1 is
      then a second view of itself); drawn per pair after the neighbour, so
      ``0`` gives the pairs it gave before the argument existed.

  Returns:
    ``[len(anchors)]`` int64 partner indices.
  """
  if not 0.0 <= self_share <= 1.0:
    raise ValueError(f"self_share must be in [0, 1]; got {self_share}.")
  per_process = batch_size // process_count
  rows = slice(process_index * per_process, (process_index + 1) * per_process)
  rng = np.random.default_rng([seed, step])
  pick = rng.integers(0, neighbors.shape[1], size=batch_size)[rows]
  partners = neighbors[anchors, pick].astype(np.int64)
  if self_share:
    own = rng.random(batch_size)[rows] < self_share
    partners = np.where(own, anchors, partners)
  return partners




class TrainingBatches:
  """This process's rows of global batch ``step``, and their partners.

  ``batches(step) -> (x [B / processes, ...], partners or None)``: the
  examples of :func:`batch_indices` and, with ``neighbors [n, K]``, one
  neighbour of each drawn by :func:`partner_indices` (host arrays).
  """

  def __init__(self, dataset, *, batch_size: int, seed: int,
               neighbors: np.ndarray | None = None, process_index: int = 0,
               process_count: int = 1, self_share: float = 0.0):
    self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
    self.neighbors, self.self_share = neighbors, self_share
    self.process = dict(process_index=process_index,
                        process_count=process_count)
    self.order = index_dataset(dataset.num_examples, seed=seed)

  def __call__(self, step: int):
    idx = batch_indices(self.order, step, self.batch_size, **self.process)
    x, _ = self.dataset.get(idx)
    if self.neighbors is None:
      return x, None
    partners = partner_indices(self.neighbors, idx, seed=self.seed, step=step,
                               batch_size=self.batch_size,
                               self_share=self.self_share, **self.process)
    return x, self.dataset.get(partners)[0]


NEIGHBOR_SEARCH = ("auto", "exact", "approximate", "ivf")
NEIGHBOR_PAIRS = ("all", "mutual")
# 'auto': the exact all-pairs search up to this many examples (41 s at
# 60,000 x 768 on a 2-core CPU, growing as n^2), the inverted file above.
AUTO_EXACT_MAX = 100_000


def resolve_neighbor_search(search: str, num_examples: int) -> str:
  """The search ``search`` runs on ``num_examples`` examples: 'auto' is
  'exact' up to ``AUTO_EXACT_MAX`` examples and 'ivf' above; any other
  value is itself."""
  if search != "auto":
    return search
  return "exact" if num_examples <= AUTO_EXACT_MAX else "ivf"


def mine_neighbors(dataset, k: int, stats: "InputStats", *,
                   search: str = "auto", pairs: str = "all",
                   seed: int = 0) -> np.ndarray:
  """``[n, k]`` each training example's ``k`` nearest others (cosine) in
  the input space: pixels as they are, feature vectors z-scored first.

  ``search``: ``'exact'`` (all pairs, on the devices), ``'approximate'``
  (the same with ``jax.lax.approx_max_k``: faster on TPU only), ``'ivf'``
  (:func:`clustering.algorithms.neighbors.ivf_neighbors`, on the host,
  k-means cells fitted with ``seed``) or ``'auto'`` (exact up to
  ``AUTO_EXACT_MAX`` examples, ``'ivf'`` above). ``pairs='mutual'``
  keeps only mutual neighbours
  (:func:`clustering.algorithms.neighbors.mutual_neighbors`).
  """
  flat = _unit_search_rows(dataset, stats)
  search = resolve_neighbor_search(search, len(flat))
  if search == "ivf":
    found = neighbors_lib.ivf_neighbors(flat, k, metric="cosine", seed=seed)
  else:
    found = neighbors_lib.nearest_neighbors(
        flat, k, metric="cosine", approximate=search == "approximate")
  return neighbors_lib.mutual_neighbors(found) if pairs == "mutual" else found


def _unit_search_rows(dataset, stats: "InputStats", *,
                      chunk: int = 16384) -> np.ndarray:
  """``[n, D]`` float32 unit rows the neighbour search compares by cosine
  (feature vectors z-scored first), written chunk by chunk into one array:
  the data set is held once (3.9 GB at 1.28M x 768) where reading it whole,
  z-scoring and normalising held it three times."""
  n = dataset.num_examples
  flat = np.empty((n, int(np.prod(dataset.example_shape))), np.float32)
  for start in range(0, n, chunk):
    x, _ = dataset.get(np.arange(start, min(start + chunk, n)))
    x = x.reshape(len(x), -1)
    if not dataset.is_image:
      x = (x - stats.feature_mean) / stats.feature_std
    flat[start:start + len(x)] = neighbors_lib.unit_rows(x)
  return flat


# -------------------------------------------------- statistics and views


class InputStats(NamedTuple):
  """Training-set input statistics (standard deviations floored at 1e-3).

  ``channel_*`` are per last-axis entry (per colour channel of images, per
  feature of feature vectors); ``feature_*`` per flattened input entry.
  """
  channel_mean: np.ndarray
  channel_std: np.ndarray
  feature_mean: np.ndarray
  feature_std: np.ndarray


def input_stats(dataset, *, seed: int, max_examples: int = 10_000
                ) -> InputStats:
  """Statistics of (a seeded sample of at most ``max_examples`` of) the
  training set."""
  rng = np.random.default_rng(seed)
  m = min(dataset.num_examples, max_examples)
  x, _ = dataset.get(np.sort(rng.choice(dataset.num_examples, m,
                                        replace=False)))
  flat = x.reshape(m, -1)
  chan = x.reshape(-1, x.shape[-1]) if dataset.is_image else flat
  floor = lambda s: np.maximum(s, 1e-3).astype(np.float32)  # noqa: E731
  return InputStats(chan.mean(0).astype(np.float32), floor(chan.std(0)),
                    flat.mean(0).astype(np.float32), floor(flat.std(0)))


STANDARDIZE = ("channel", "feature", "none")


def standardize(x: jax.Array, stats: InputStats, how: str) -> jax.Array:
  """``'channel'``: per-channel z-scores, shape kept (images stay images);
  ``'feature'``: flattened to ``[n, D]`` and z-scored per entry;
  ``'none'``: flattened, raw."""
  if how == "channel":
    return (x - stats.channel_mean) / stats.channel_std
  flat = x.reshape(x.shape[0], -1)
  if how == "feature":
    return (flat - stats.feature_mean) / stats.feature_std
  return flat


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
  """``config.data.augment``: see :func:`augment`."""
  crop_scale: tuple[float, float] = (0.5, 1.0)
  max_shift: float = 1.0
  flip: bool = False
  noise: float = 0.0
  rotation: float = 0.0
  brightness: float = 0.0
  contrast: float = 0.0

  @classmethod
  def from_config(cls, config) -> "AugmentSpec":
    return specs.from_config(cls, config, "data.augment")

  def __post_init__(self):
    low, high = self.crop_scale
    if not 0 < low <= high <= 1:
      raise ValueError("data.augment.crop_scale must be (low, high) with "
                       f"0 < low <= high <= 1; got {self.crop_scale}.")
    for name in ("brightness", "contrast"):
      if not 0 <= getattr(self, name) < 1:
        raise ValueError(f"data.augment.{name} must be in [0, 1); got "
                         f"{getattr(self, name)}.")


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """What a method's loss needs from a batch.

  Attributes:
    num_views: augmented views of each example (``0``: none). With
      neighbour pairs, view 1 is the partner's instead of a second view of
      the anchor.
    clean: also the un-augmented batch.
    standardize: how inputs are standardised (:func:`standardize`), for
      training and evaluation alike.
  """
  num_views: int = 2
  clean: bool = False
  standardize: str = "channel"


class Inputs(NamedTuple):
  """A batch as a method's loss sees it (``B`` examples).

  Attributes:
    views: ``[V, B, ...]`` standardised augmented views, or None.
    clean: ``[B, ...]`` the standardised batch without augmentation, or None.
  """
  views: jax.Array | None
  clean: jax.Array | None


def model_inputs(key: jax.Array, x: jax.Array, partners: jax.Array | None,
                 *, spec: InputSpec, augment_spec: AugmentSpec,
                 stats: InputStats) -> Inputs:
  """Views and clean batch of ``x [B, ...]`` (and its neighbour
  ``partners [B, ...]``) as ``spec`` asks, computed on device."""
  def view(k, source):
    return standardize(augment(k, source, **dataclasses.asdict(augment_spec)),
                       stats, spec.standardize)

  views = None
  if spec.num_views:
    keys = jax.random.split(key, spec.num_views)
    views = jnp.stack([
        view(k, partners if (v == 1 and partners is not None) else x)
        for v, k in enumerate(keys)])
  clean = standardize(x, stats, spec.standardize) if spec.clean else None
  return Inputs(views, clean)


# ------------------------------------------------------------ augmentation


def _resized_crop(image, key, *, scale, max_shift):
  """A random crop covering ``scale`` of the area, resized back, plus shift."""
  h, w, _ = image.shape
  k_area, k_ratio, k_pos = jax.random.split(key, 3)
  area = jax.random.uniform(k_area, (), minval=scale[0], maxval=scale[1])
  log_ratio = jax.random.uniform(k_ratio, (), minval=np.log(3 / 4),
                                 maxval=np.log(4 / 3))
  ch = jnp.clip(jnp.sqrt(area * jnp.exp(-log_ratio)), 0.0, 1.0) * h
  cw = jnp.clip(jnp.sqrt(area * jnp.exp(log_ratio)), 0.0, 1.0) * w
  pos = jax.random.uniform(k_pos, (2,), minval=-1.0, maxval=1.0)
  top = (h - ch) / 2 * (1 + pos[0]) + max_shift * pos[0]
  left = (w - cw) / 2 * (1 + pos[1]) + max_shift * pos[1]
  out_scale = jnp.stack([h / ch, w / cw])
  translation = -jnp.stack([top, left]) * out_scale
  return jax.image.scale_and_translate(
      image, image.shape, (0, 1), out_scale, translation, method="linear",
      antialias=True)


def _rotate(image, angle):
  """Rotates ``[h, w, c]`` by ``angle`` radians about its centre (bilinear,
  zeros outside)."""
  h, w, c = image.shape
  ii, jj = jnp.meshgrid(jnp.arange(h, dtype=image.dtype),
                        jnp.arange(w, dtype=image.dtype), indexing="ij")
  ci, cj = (h - 1) / 2, (w - 1) / 2
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  src_i = ci + cos * (ii - ci) - sin * (jj - cj)
  src_j = cj + sin * (ii - ci) + cos * (jj - cj)
  return jnp.stack([
      jax.scipy.ndimage.map_coordinates(image[..., ch], [src_i, src_j],
                                        order=1, mode="constant")
      for ch in range(c)], axis=-1)


def augment(key: jax.Array, x: jax.Array, *, crop_scale: Sequence[float] =
            (0.5, 1.0), max_shift: float = 1.0, flip: bool = False,
            noise: float = 0.0, rotation: float = 0.0,
            brightness: float = 0.0, contrast: float = 0.0) -> jax.Array:
  """One random view of each example, computed on device.

  Images get a random resized crop (area fraction ``crop_scale``, aspect
  3/4..4/3, extra shift of up to ``max_shift`` pixels), a random rotation of
  up to ``rotation`` degrees either way (digits: it hides the slant, which
  otherwise competes with the class as a way to split 4s and 9s), an
  optional horizontal flip (not for digits), the grayscale part of SimCLR's
  colour jitter (each image's intensities times a factor drawn from
  ``1 +- brightness``, then its contrast about its mean intensity times one
  drawn from ``1 +- contrast``, clipped to [0, 1]), and Gaussian noise;
  features get only the noise.
  Random numbers are drawn for the whole global batch, so a sharded batch sees
  the same views as an unsharded one.

  Args:
    key: PRNG key.
    x: ``[n, h, w, c]`` images in [0, 1] or ``[n, d]`` features.

  Returns:
    Array of ``x``'s shape and dtype.
  """
  k_crop, k_flip, k_noise = jax.random.split(key, 3)
  if x.ndim == 4:
    keys = jax.random.split(k_crop, x.shape[0])
    x = jax.vmap(lambda im, k: _resized_crop(
        im, k, scale=tuple(crop_scale), max_shift=max_shift))(x, keys)
    if rotation:
      angles = jax.random.uniform(jax.random.fold_in(k_crop, 1),
                                  (x.shape[0],), minval=-1.0, maxval=1.0)
      x = jax.vmap(_rotate)(x, angles * np.deg2rad(rotation).astype(
          np.float32))
    if flip:
      do_flip = jax.random.bernoulli(k_flip, 0.5, (x.shape[0], 1, 1, 1))
      x = jnp.where(do_flip, x[:, :, ::-1], x)
    # Keys of their own (folded in), so that views without jitter are the
    # ones they always were.
    if brightness:
      factor = jax.random.uniform(jax.random.fold_in(k_crop, 2),
                                  (x.shape[0], 1, 1, 1), x.dtype,
                                  1 - brightness, 1 + brightness)
      x = jnp.clip(x * factor, 0.0, 1.0)
    if contrast:
      factor = jax.random.uniform(jax.random.fold_in(k_crop, 3),
                                  (x.shape[0], 1, 1, 1), x.dtype,
                                  1 - contrast, 1 + contrast)
      mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
      x = jnp.clip(mean + factor * (x - mean), 0.0, 1.0)
  if noise:
    x = x + noise * jax.random.normal(k_noise, x.shape, x.dtype)
  return x


