"""Reader for MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST)."""

from __future__ import annotations

import gzip
import os
import pathlib

import numpy as np

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4",
           0x0D: ">f4", 0x0E: ">f8"}


# A gzip stream cannot expand by more than about 1032x (deflate's limit); a
# header that claims more than that is not an honest file (a gzip bomb).
_MAX_GZIP_RATIO = 1100


def check_fits_in_memory(nbytes: int, path) -> None:
  """``ValueError`` naming ``path`` when ``nbytes`` exceed this machine's
  physical memory (checked before allocating, not by failing to)."""
  try:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):  # not POSIX: no check
    return
  if nbytes > memory:
    raise ValueError(f"{path} would need {nbytes / 2**30:.1f} GiB, more than "
                     f"this machine's {memory / 2**30:.1f} GiB of memory.")


def read_idx(path, *, ndim: int | None = None) -> np.ndarray:
  """Reads one IDX file (optionally gzipped) into a NumPy array.

  The header is checked against the file's size before the body is read,
  so a header that claims more than the file holds allocates nothing.

  Args:
    path: the file.
    ndim: the number of dimensions the file must have (3 for images, 1 for
      labels), or None for any positive number.

  Raises:
    ValueError: if the file is not a well-formed IDX file, naming it.
  """
  path = pathlib.Path(path)
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      magic = f.read(4)
      if (len(magic) < 4 or magic[0] != 0 or magic[1] != 0
          or magic[2] not in _DTYPES):
        raise ValueError(f"{path} is not an IDX file (bad magic number).")
      if magic[3] == 0 or (ndim is not None and magic[3] != ndim):
        raise ValueError(
            f"{path} has {magic[3]} dimensions; expected "
            f"{ndim if ndim is not None else 'at least 1'}.")
      dims = f.read(4 * magic[3])
      if len(dims) < 4 * magic[3]:
        raise ValueError(f"{path} is truncated: header needs "
                         f"{4 + 4 * magic[3]} bytes.")
      shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big")
                    for i in range(magic[3]))
      dtype = np.dtype(_DTYPES[magic[2]])
      body = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
      expected = 4 + len(dims) + body
      on_disk = path.stat().st_size
      if opener is open and on_disk != expected:
        raise ValueError(f"{path} has {on_disk} bytes, expected {expected} "
                         f"for shape {shape} of {dtype}.")
      if opener is gzip.open and expected > _MAX_GZIP_RATIO * on_disk:
        raise ValueError(
            f"{path}: its header claims shape {shape} of {dtype} "
            f"({expected} bytes), more than a {on_disk}-byte gzip file can "
            "hold.")
      check_fits_in_memory(body, path)
      data = f.read(body + 1)  # one byte more shows trailing data
  except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
    raise ValueError(f"{path} could not be read ({type(e).__name__}: {e}); "
                     "is it a complete IDX file?") from e
  if len(data) != body:
    raise ValueError(f"{path} holds {4 + len(dims) + len(data)}"
                     f"{'+' if len(data) > body else ''} bytes once "
                     f"decompressed, expected {expected} for shape {shape} "
                     f"of {dtype}.")
  return np.frombuffer(data, dtype).reshape(shape)


def write_idx(path, array: np.ndarray) -> None:
  """Writes a uint8 array as one IDX file, gzipped when ``path`` ends .gz.

  The inverse of :func:`read_idx` for images ``[n, h, w]`` and labels
  ``[n]``.

  Raises:
    ValueError: if ``array`` is not uint8 or has no dimensions.
  """
  array = np.asarray(array)
  if array.dtype != np.uint8 or array.ndim == 0:
    raise ValueError(f"write_idx: array must be uint8 with at least one "
                     f"dimension, got {array.dtype} of shape {array.shape}.")
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
      int(s).to_bytes(4, "big") for s in array.shape)
  path = pathlib.Path(path)
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "wb") as f:
    f.write(header + np.ascontiguousarray(array).tobytes())


def _find(directory: pathlib.Path, stem: str):
  for name in (stem, stem + ".gz"):
    if (directory / name).exists():
      return directory / name
  return None


def split_files(directory, split: str) -> int:
  """How many of ``split``'s two files (images, labels) ``directory`` holds."""
  directory = pathlib.Path(directory)
  return sum(_find(directory, f"{split}-{kind}") is not None
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

  images = read_idx(find(f"{split}-images-idx3-ubyte"), ndim=3)
  labels = read_idx(find(f"{split}-labels-idx1-ubyte"), ndim=1)
  if images.shape[0] != labels.shape[0]:
    raise ValueError(f"{directory}: {images.shape[0]} images but "
                     f"{labels.shape[0]} labels.")
  x = images.reshape(images.shape[0], -1).astype(np.float32) / 255.0
  return x, labels.astype(np.int32)
