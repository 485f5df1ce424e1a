"""Reader for MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST)."""

from __future__ import annotations

import gzip
import pathlib

import numpy as np

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4",
           0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
  """Reads one IDX file (optionally gzipped) into a NumPy array.

  Raises:
    ValueError: if the file is not a well-formed IDX file, naming it.
  """
  path = pathlib.Path(path)
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
    raise ValueError(f"{path} could not be read ({type(e).__name__}: {e}); "
                     "is it a complete IDX file?") from e
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
    raise ValueError(f"{path} is not an IDX file (bad magic number).")
  ndim = data[3]
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(f"{path} is truncated: header needs {header} bytes.")
  shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big")
                for i in range(ndim))
  dtype = np.dtype(_DTYPES[data[2]])
  expected = header + int(np.prod(shape)) * dtype.itemsize
  if len(data) != expected:
    raise ValueError(f"{path} has {len(data)} bytes, expected {expected} for "
                     f"shape {shape} of {dtype}.")
  return np.frombuffer(data, dtype, offset=header).reshape(shape)


def _find(directory: pathlib.Path, stem: str):
  for name in (stem, stem + ".gz"):
    if (directory / name).exists():
      return directory / name
  return None


def has_split(directory, split: str) -> bool:
  """Whether ``directory`` holds the image and label files of ``split``."""
  directory = pathlib.Path(directory)
  return all(_find(directory, f"{split}-{kind}") is not None
             for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))


def load_idx_dir(directory, split: str = "t10k"):
  """Images ``[n, 28*28]`` float32 in [0, 1] and int32 labels of a split.

  Args:
    directory: folder with ``{split}-images-idx3-ubyte[.gz]`` and
      ``{split}-labels-idx1-ubyte[.gz]``.
    split: ``'train'`` or ``'t10k'``.
  """
  directory = pathlib.Path(directory)

  def find(stem):
    path = _find(directory, stem)
    if path is None:
      raise ValueError(f"{directory} has no {stem}[.gz].")
    return path

  images = read_idx(find(f"{split}-images-idx3-ubyte"))
  labels = read_idx(find(f"{split}-labels-idx1-ubyte"))
  if images.shape[0] != labels.shape[0]:
    raise ValueError(f"{directory}: {images.shape[0]} images but "
                     f"{labels.shape[0]} labels.")
  x = images.reshape(images.shape[0], -1).astype(np.float32) / 255.0
  return x, labels.astype(np.int32)
