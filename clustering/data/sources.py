"""Data sources: every dataset a run can train on, as random-access examples.

Sources (``config.data.name``):

* ``digits``: scikit-learn's 1,797 real 8x8 digits, embedded (no network);
* ``mnist``: 28x28 MNIST-format digits: the IDX files in ``data.path`` when
  it is given (MNIST, Fashion-MNIST, KMNIST, ...), else TFDS ``mnist``
  prepared on this machine;
* ``idx``: a directory of MNIST-format IDX files, ``data.path``;
* ``npy``: precomputed features ``[n, d]`` (+ labels) from ``.npy``/``.npz``;
* ``tfds:<name>``: any TFDS dataset prepared on this machine, read through
  ``tfds.data_source`` and grain (random access, nothing held in memory);
* ``synthetic``: seeded Gaussian mixtures or unions of linear subspaces.

Images are float32 ``[n, h, w, c]`` in [0, 1]; features are ``[n, d]``.
Clustering papers (CPP, NMCE, I-Con) train and report on the same images, so
unless a split is named the evaluation set is the training set.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Callable

import numpy as np

from clustering.data import idx as idx_lib

__all__ = ["Dataset", "load", "from_arrays", "gaussian_mixture",
           "union_of_subspaces"]


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


def check_finite_rows(x: np.ndarray, source: str, first: int = 0) -> None:
  """Raises ``ValueError`` naming ``source`` and the first rows with a NaN
  or an infinity: one bad example would turn every loss it touches to NaN.
  ``first``: the index of ``x``'s first row in the source."""
  bad = first + np.flatnonzero(
      ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1))
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
  if not (isinstance(x, np.memmap) and x.dtype == np.float32
          and x.flags.c_contiguous):
    x = np.ascontiguousarray(x, dtype=np.float32)
  for start in range(0, x.shape[0], 65536):  # a memmap is read in chunks
    check_finite_rows(np.asarray(x[start:start + 65536]), source, start)
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


# IDX file stems of each split name.
_IDX_SPLITS = {"train": "train", "test": "t10k", "t10k": "t10k"}


def _idx(config, split):
  if not config.get("path"):
    raise ValueError("data.name='idx' needs data.path: a directory holding "
                     "MNIST-format files such as t10k-images-idx3-ubyte.gz.")
  if split and split not in _IDX_SPLITS:
    raise ValueError(f"data.split={split!r}: an IDX directory has the splits "
                     f"{sorted(_IDX_SPLITS)}.")
  stem = _IDX_SPLITS[split or "train"]
  # A directory of test files only (as MNIST's test set ships) trains on
  # them; a train split with a file missing is an error, never a reason to
  # train on another split.
  if not split and idx_lib.split_files(config.path, "train") == 0:
    stem = "t10k"
  x, y = idx_lib.load_idx_dir(config.path, split=stem)
  side = int(round(np.sqrt(x.shape[1])))
  return from_arrays(f"idx:{os.path.basename(os.path.normpath(config.path))}:"
                     f"{stem}", x.reshape(-1, side, side, 1), y)


def _mnist(config, split):
  """IDX files in ``data.path`` when given, else TFDS ``mnist``."""
  if config.get("path"):
    return _idx(config, split)
  try:
    return _tfds(config, "mnist", split)
  except ValueError as e:
    raise ValueError(
        "MNIST is not on this machine: pass --config.data.path=DIR, a "
        "directory with the MNIST-format IDX files (t10k-images-idx3-ubyte"
        "[.gz], t10k-labels-idx1-ubyte[.gz]), or prepare TFDS mnist once "
        "with network access: `tfds build mnist --file_format=array_record "
        "[--data_dir=DIR]` and pass --config.data.data_dir=DIR.") from e


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
  """``np.load`` with a clear error for a corrupt or non-NumPy file. A
  ``.npy`` is memory-mapped (a header that claims more than the file holds
  fails before anything is allocated): a float32 one stays mapped, read by
  the rows each batch draws, so a features file larger than memory trains;
  other dtypes are converted in memory."""
  try:
    if zipfile.is_zipfile(path):
      return np.load(path, allow_pickle=False)
    mapped = np.load(path, mmap_mode="r", allow_pickle=False)
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path} is not a readable .npy/.npz file "
                     f"({type(e).__name__}: {e})."
                     ) from e
  if mapped.dtype == np.float32 and mapped.flags.c_contiguous:
    return mapped
  idx_lib.check_fits_in_memory(mapped.nbytes, path)
  return np.array(mapped)


def _read_member(archive, key, path):
  """``archive[key]`` once its header agrees with the member's size."""
  try:
    info = archive.zip.getinfo(f"{key}.npy")
    with archive.zip.open(info) as f:
      read_header = (np.lib.format.read_array_header_1_0
                     if np.lib.format.read_magic(f) == (1, 0) else
                     np.lib.format.read_array_header_2_0)
      shape, _, dtype = read_header(f)
      nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
      if nbytes > info.file_size - f.tell():
        raise ValueError(f"its header claims shape {shape} of {dtype} "
                         f"({nbytes} bytes), the member holds "
                         f"{info.file_size - f.tell()}")
  except (ValueError, OSError, EOFError, KeyError,
          zipfile.BadZipFile) as e:
    raise ValueError(f"{path}: array {key!r} is corrupt "
                     f"({type(e).__name__}: {e}).") from e
  idx_lib.check_fits_in_memory(nbytes, path)
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
  import grain  # pylint: disable=g-import-not-at-top
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
    split: a split name (``'train'``, ``'test'``) where the source has
      splits; ``None`` reads ``config.split`` (the training split; empty:
      the source's default, ``train``).
  """
  name = config.name
  split = split or config.get("split") or None
  if name == "digits":
    return _digits(config)
  if name == "mnist":
    return _mnist(config, split)
  if name == "idx":
    return _idx(config, split)
  if name == "npy":
    return _npy(config)
  if name == "synthetic":
    return _synthetic(config, num_clusters)
  if name.startswith("tfds:"):
    return _tfds(config, name[len("tfds:"):], split)
  raise ValueError(f"Unknown data.name {name!r}; expected one of 'digits', "
                   "'mnist', 'idx', 'npy', 'synthetic', 'tfds:<name>'.")
