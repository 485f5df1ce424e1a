r"""A seeded mixture on the unit sphere, written as a features file.

    python -m benchmarks.sphere_mixture --out=/data/sphere.npy \
        --num_examples=1281167 --dim=768 --num_clusters=1000

Stand-in for pre-trained (CLIP/DINO) features at ImageNet size with known
labels: ``num_clusters`` random unit centres; example ``i`` has label ``y_i``
(uniform) and features ``normalize(centre[y_i] + noise * g / sqrt(dim))``,
``g`` standard normal. Written in chunks into a ``.npy`` memory map, so the
file can be larger than memory; the labels go to ``<out>_labels.npy``
(``--config.data.labels_path``). The same seed gives the same file, and
the first ``m`` rows of a file are the file made with ``num_examples=m``.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import numpy as np

CHUNK = 65536


def labels_path(path: str) -> str:
  return (path[:-4] if path.endswith(".npy") else path) + "_labels.npy"


def write(path: str, *, num_examples: int, dim: int, num_clusters: int,
          noise: float = 1.0, seed: int = 0) -> tuple[str, str]:
  """Writes the features ``[n, dim]`` float32 and labels ``[n]`` int32;
  returns both paths."""
  if min(num_examples, dim, num_clusters) < 1 or noise < 0:
    raise ValueError("num_examples, dim and num_clusters must be >= 1 and "
                     f"noise >= 0; got {num_examples}, {dim}, {num_clusters}, "
                     f"{noise}.")
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((num_clusters, dim))
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)
  x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                shape=(num_examples, dim))
  y = np.lib.format.open_memmap(labels_path(path), mode="w+", dtype=np.int32,
                                shape=(num_examples,))
  for start in range(0, num_examples, CHUNK):
    # One generator per chunk: a prefix of the file does not depend on n.
    chunk_rng = np.random.default_rng([seed, start // CHUNK])
    m = min(CHUNK, num_examples - start)
    # Whole chunks are drawn, so a shorter last chunk is a prefix of it.
    labels = chunk_rng.integers(0, num_clusters, size=CHUNK)[:m]
    rows = centres[labels] + noise * chunk_rng.standard_normal(
        (CHUNK, dim))[:m] / np.sqrt(dim)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    x[start:start + m] = rows
    y[start:start + m] = labels
  x.flush()
  y.flush()
  del x, y
  return path, labels_path(path)


def define_flags():
  flags.DEFINE_string("out", None, "the features .npy to write", required=True)
  flags.DEFINE_integer("num_examples", 1281167, "rows")
  flags.DEFINE_integer("dim", 768, "features per row")
  flags.DEFINE_integer("num_clusters", 1000, "mixture components")
  flags.DEFINE_float("noise", 1.0, "spread around each centre")
  flags.DEFINE_integer("seed", 0, "seed")


def main(argv):
  del argv
  f = flags.FLAGS
  t = time.perf_counter()
  paths = write(f.out, num_examples=f.num_examples, dim=f.dim,
                num_clusters=f.num_clusters, noise=f.noise, seed=f.seed)
  print(f"wrote {paths[0]} ({f.num_examples} x {f.dim}) and {paths[1]} in "
        f"{time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
  define_flags()
  app.run(main)
