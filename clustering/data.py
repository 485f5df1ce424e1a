"""Datasets for clustering runs, their input order, and on-device augmentation.

Sources (``config.data.name``):

* ``digits``: scikit-learn's 1,797 real 8x8 digits, embedded (no network);
* ``idx``: a directory of MNIST-format files (MNIST, Fashion-MNIST, KMNIST),
  ``config.data.path``;
* ``npy``: precomputed features ``[n, d]`` (+ labels) from ``.npy``/``.npz``;
* ``tfds:<name>``: any TFDS dataset prepared on this machine, read through
  ``tfds.data_source`` and grain (random access, nothing held in memory);
* ``synthetic``: seeded Gaussian mixtures or unions of linear subspaces.

Images are float32 ``[n, h, w, c]`` in [0, 1]; features are ``[n, d]``.
Clustering papers (CPP, NMCE, I-Con) train and report on the same images, so
unless a split is named the evaluation set is the training set.

The input order is a pure function of ``(seed, step)`` (grain's per-epoch
shuffle with random access), so a resumed run reads exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Any, Callable, Sequence

import grain
import jax
import jax.numpy as jnp
import numpy as np

from clustering import idx as idx_lib

__all__ = [
    "Dataset",
    "load",
    "batch_indices",
    "augment",
    "gaussian_mixture",
    "union_of_subspaces",
]


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Random-access examples.

  Attributes:
    name: what was loaded, for logs.
    num_examples: ``n``.
    example_shape: shape of one input, e.g. ``(8, 8, 1)`` or ``(d,)``.
    num_classes: number of distinct labels, or ``None`` without labels.
    get: ``indices [m] -> (x [m, *example_shape] float32, labels [m] int32
      or None)``.
  """
  name: str
  num_examples: int
  example_shape: tuple[int, ...]
  num_classes: int | None
  get: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]

  @property
  def is_image(self) -> bool:
    return len(self.example_shape) == 3

  def all(self, chunk: int = 4096):
    """The whole set as host arrays (fine for the sizes we evaluate on)."""
    xs, ys = [], []
    for start in range(0, self.num_examples, chunk):
      x, y = self.get(np.arange(start, min(start + chunk, self.num_examples)))
      xs.append(x)
      ys.append(y)
    labels = None if ys[0] is None else np.concatenate(ys)
    return np.concatenate(xs), labels


def check_finite_rows(x: np.ndarray, source: str) -> None:
  """Raises ``ValueError`` naming ``source`` and the first rows with a NaN
  or an infinity: one bad example would turn every loss it touches to NaN."""
  bad = np.flatnonzero(~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1))
  if bad.size:
    shown = ", ".join(map(str, bad[:5])) + (", ..." if bad.size > 5 else "")
    raise ValueError(f"{source}: {bad.size} row(s) contain NaN or Inf "
                     f"(rows {shown}); clean or drop them first.")


def from_arrays(name: str, x: np.ndarray, labels: np.ndarray | None, *,
                source: str | None = None) -> Dataset:
  """A dataset over in-memory arrays; ``source`` (a file) names it in
  errors."""
  source = source or name
  if not (np.issubdtype(np.asarray(x).dtype, np.number)
          or np.asarray(x).dtype == np.bool_):
    raise ValueError(f"{source}: features must be numeric, got dtype "
                     f"{np.asarray(x).dtype}.")
  x = np.ascontiguousarray(x, dtype=np.float32)
  check_finite_rows(x, source)
  if labels is not None:
    labels = np.asarray(labels).astype(np.int32).reshape(-1)
    if labels.shape[0] != x.shape[0]:
      raise ValueError(f"{source}: {x.shape[0]} examples but "
                       f"{labels.shape[0]} labels.")
  num_classes = None if labels is None else int(np.unique(labels).size)

  def get(indices):
    return x[indices], (None if labels is None else labels[indices])

  return Dataset(name, x.shape[0], tuple(x.shape[1:]), num_classes, get)


# ----------------------------------------------------------------- sources


def _digits(config):
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  x, y = datasets.load_digits(return_X_y=True)
  x = (x / 16.0).reshape(-1, 8, 8, 1)  # intensities are 0..16
  return from_arrays("digits", x, y)


def _idx(config, split):
  if not config.get("path"):
    raise ValueError("data.name='idx' needs data.path: a directory holding "
                     "MNIST-format files such as t10k-images-idx3-ubyte.gz.")
  split = split or "train"
  try:
    x, y = idx_lib.load_idx_dir(config.path, split=split)
  except ValueError:
    if split != "train":
      raise
    # Only the test files are present (as in ../shared/data/mnist_test).
    x, y = idx_lib.load_idx_dir(config.path, split="t10k")
    split = "t10k"
  side = int(round(np.sqrt(x.shape[1])))
  return from_arrays(f"idx:{os.path.basename(os.path.normpath(config.path))}:"
                     f"{split}", x.reshape(-1, side, side, 1), y)


def _npy(config):
  path = config.get("path")
  if not path or not os.path.exists(path):
    raise ValueError(f"data.name='npy' needs data.path pointing at a .npy or "
                     f".npz file of features; got {path!r}.")
  if path.endswith(".npz"):
    with _open_array_file(path) as f:
      key = "features" if "features" in f else ("x" if "x" in f else None)
      if key is None:
        raise ValueError(f"{path}: expected an array named 'features' or 'x'; "
                         f"found {sorted(f.files)}.")
      x = _read_member(f, key, path)
      y = (_read_member(f, "labels", path) if "labels" in f else
           (_read_member(f, "y", path) if "y" in f else None))
  else:
    x, y = _open_array_file(path), None
    labels_path = config.get("labels_path")
    if labels_path:
      y = _open_array_file(labels_path)
  if x.ndim != 2:
    raise ValueError(f"{path}: features must be [n, d]; got shape {x.shape}.")
  return from_arrays(f"npy:{os.path.basename(path)}", x, y, source=path)


def _open_array_file(path):
  """``np.load`` with a clear error for a corrupt or non-NumPy file."""
  try:
    return np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path} is not a readable .npy/.npz file "
                     f"({type(e).__name__}: {e}).") from e


def _read_member(archive, key, path):
  try:
    return archive[key]
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path}: array {key!r} is corrupt "
                     f"({type(e).__name__}: {e}).") from e


def gaussian_mixture(*, num_examples: int, num_clusters: int, dim: int,
                     separation: float = 4.0, seed: int = 0):
  """Isotropic unit-variance blobs with centres ``separation`` apart (scale).

  Returns:
    ``x [n, dim]`` float32 and ``labels [n]`` int32 (balanced).
  """
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_clusters, dim)) * separation / np.sqrt(2)
  labels = np.arange(num_examples) % num_clusters
  x = centres[labels] + rng.normal(size=(num_examples, dim))
  return x.astype(np.float32), labels.astype(np.int32)


def union_of_subspaces(*, num_examples: int, num_clusters: int, dim: int,
                       subspace_dim: int = 3, noise: float = 0.05,
                       seed: int = 0):
  """Points on ``num_clusters`` random ``subspace_dim``-dim linear subspaces.

  The MCR^2/MLC toy setting; rows are L2-normalised before the noise.

  Returns:
    ``x [n, dim]`` float32 and ``labels [n]`` int32 (balanced).
  """
  if subspace_dim > dim:
    raise ValueError(f"subspace_dim={subspace_dim} exceeds dim={dim}.")
  rng = np.random.default_rng(seed)
  bases = np.linalg.qr(rng.normal(size=(num_clusters, dim, subspace_dim)))[0]
  labels = np.arange(num_examples) % num_clusters
  coeffs = rng.normal(size=(num_examples, subspace_dim))
  x = np.einsum("nds,ns->nd", bases[labels], coeffs)
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  x += noise * rng.normal(size=x.shape) / np.sqrt(dim)
  return x.astype(np.float32), labels.astype(np.int32)


def _synthetic(config, num_clusters):
  kind = config.get("kind", "gaussian_mixture")
  common = dict(num_examples=config.get("num_examples", 2000),
                num_clusters=num_clusters, dim=config.get("dim", 16),
                seed=config.get("seed", 0))
  if kind == "gaussian_mixture":
    x, y = gaussian_mixture(separation=config.get("separation", 4.0), **common)
  elif kind == "subspaces":
    x, y = union_of_subspaces(subspace_dim=config.get("subspace_dim", 3),
                              noise=config.get("noise", 0.05), **common)
  else:
    raise ValueError(f"data.kind must be 'gaussian_mixture' or 'subspaces' for "
                     f"synthetic data; got {kind!r}.")
  return from_arrays(f"synthetic:{kind}", x, y)


def _tfds(config, name, split):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  split = split or "train"
  try:
    source = tfds.data_source(name, split=split,
                              data_dir=config.get("data_dir") or None,
                              download=False)
  except Exception as e:  # TFDS raises several types for "not prepared".
    raise ValueError(
        f"TFDS dataset {name!r} (split {split!r}) is not available for random "
        f"access on this machine ({type(e).__name__}: {e}). Prepare it once, "
        f"with network access, in the array_record format that "
        f"tfds.data_source reads: `tfds build {name} "
        f"--file_format=array_record [--data_dir=DIR]` (or `tfds.builder("
        f"'{name}', data_dir=DIR).download_and_prepare(file_format="
        f"'array_record')`), then pass DIR as data.data_dir.") from e
  image_key = config.get("image_key", "image")
  label_key = config.get("label_key", "label")
  features = source.dataset_info.features
  if image_key not in features:
    raise ValueError(f"TFDS {name!r} has no feature {image_key!r}; set "
                     f"data.image_key to one of {list(features.keys())}.")
  shape = tuple(features[image_key].shape)
  has_labels = label_key in features
  num_classes = (features[label_key].num_classes if has_labels and hasattr(
      features[label_key], "num_classes") else None)

  def decode(record):
    x = np.asarray(record[image_key], np.float32) / 255.0
    y = np.int32(record[label_key]) if has_labels else np.int32(-1)
    return x, y

  examples = grain.MapDataset.source(source).map(decode)

  def get(indices):
    rows = [examples[int(i)] for i in indices]
    x = np.stack([r[0] for r in rows])
    if not np.isfinite(x).all():  # float features; images are uint8
      bad = [int(indices[i]) for i in np.flatnonzero(
          ~np.isfinite(x.reshape(len(x), -1)).all(axis=1))]
      raise ValueError(f"TFDS {name!r} split {split!r}: example(s) {bad[:5]} "
                       "contain NaN or Inf.")
    y = np.stack([r[1] for r in rows]) if has_labels else None
    return x, y

  return Dataset(f"tfds:{name}:{split}", len(source), shape, num_classes, get)


def load(config, *, num_clusters: int, split: str | None = None) -> Dataset:
  """Loads ``config.name`` (see the module docstring).

  Args:
    config: the ``config.data`` ConfigDict.
    num_clusters: used by synthetic data.
    split: ``None`` for the training set, or a split name (``'test'``,
      ``'t10k'``) where the source has splits.
  """
  name = config.name
  if name == "digits":
    return _digits(config)
  if name == "idx":
    return _idx(config, split)
  if name == "npy":
    return _npy(config)
  if name == "synthetic":
    return _synthetic(config, num_clusters)
  if name.startswith("tfds:"):
    return _tfds(config, name[len("tfds:"):], split)
  raise ValueError(f"Unknown data.name {name!r}; expected one of 'digits', "
                   "'idx', 'npy', 'synthetic', 'tfds:<name>'.")


# ------------------------------------------------------------- input order


def index_dataset(num_examples: int, *, seed: int) -> grain.MapDataset:
  """Example indices in training order: reshuffled every epoch, endless."""
  return grain.MapDataset.range(num_examples).shuffle(seed=seed).repeat(None)


def batch_indices(order: grain.MapDataset, step: int, batch_size: int,
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
                    process_count: int = 1) -> np.ndarray:
  """One random neighbour of each anchor of this process's share of batch s.

  Args:
    neighbors: ``[n, K]`` neighbour indices of every training example.
    anchors: this process's ``[batch_size / process_count]`` example indices.
    seed, step: the draw is a function of ``(seed, step)`` only, so a resumed
      run sees the same pairs.
    batch_size: the global batch size.

  Returns:
    ``[len(anchors)]`` int64 partner indices.
  """
  per_process = batch_size // process_count
  pick = np.random.default_rng([seed, step]).integers(
      0, neighbors.shape[1], size=batch_size)
  pick = pick[process_index * per_process:(process_index + 1) * per_process]
  return neighbors[anchors, pick].astype(np.int64)


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
            noise: float = 0.0, rotation: float = 0.0) -> jax.Array:
  """One random view of each example, computed on device.

  Images get a random resized crop (area fraction ``crop_scale``, aspect
  3/4..4/3, extra shift of up to ``max_shift`` pixels), a random rotation of
  up to ``rotation`` degrees either way (digits: it hides the slant, which
  otherwise competes with the class as a way to split 4s and 9s), an
  optional horizontal flip (not for digits), and Gaussian noise; features
  get only the noise.
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
  if noise:
    x = x + noise * jax.random.normal(k_noise, x.shape, x.dtype)
  return x


def standardize_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-feature mean and std (std floored) over the examples axis."""
  x = x.reshape(x.shape[0], -1)
  return x.mean(0), np.maximum(x.std(0), 1e-3)


def info(dataset: Dataset) -> dict[str, Any]:
  return dict(name=dataset.name, num_examples=dataset.num_examples,
              example_shape=list(dataset.example_shape),
              num_classes=dataset.num_classes)
