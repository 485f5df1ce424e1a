import gzip
import pathlib

import numpy as np
import pytest

from clustering.data import idx

MNIST_TEST = pathlib.Path(__file__).resolve().parents[4] / "shared/data/mnist_test"


def _write(path, array, code):
  header = bytes([0, 0, code, array.ndim]) + b"".join(
      int(s).to_bytes(4, "big") for s in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.tobytes())


def test_roundtrip_and_errors(tmp_path):
  images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
  _write(tmp_path / "t10k-images-idx3-ubyte.gz", images, 0x08)
  _write(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([3, 7], np.uint8), 0x08)
  x, y = idx.load_idx_dir(tmp_path)
  assert x.shape == (2, 784) and x.dtype == np.float32
  np.testing.assert_array_equal(y, [3, 7])
  (tmp_path / "bad").write_bytes(b"\x01\x02\x03")
  with pytest.raises(ValueError, match="not an IDX file"):
    idx.read_idx(tmp_path / "bad")
  with pytest.raises(ValueError, match="has no train-images"):
    idx.load_idx_dir(tmp_path, "train")


@pytest.mark.skipif(not MNIST_TEST.exists(), reason="shared MNIST test set absent")
def test_real_mnist_test_set():
  x, y = idx.load_idx_dir(MNIST_TEST)
  assert x.shape == (10000, 784) and set(np.unique(y)) == set(range(10))


def test_corrupt_gzip_and_truncated_files_name_the_file(tmp_path):
  images = np.zeros((3, 4, 4), np.uint8)
  _write(tmp_path / "good.gz", images, 0x08)
  raw = (tmp_path / "good.gz").read_bytes()
  (tmp_path / "cut.gz").write_bytes(raw[: len(raw) // 2])
  with pytest.raises(ValueError, match=r"cut\.gz could not be read"):
    idx.read_idx(tmp_path / "cut.gz")
  (tmp_path / "notgzip.gz").write_bytes(b"plain text, not gzip")
  with pytest.raises(ValueError, match=r"notgzip\.gz could not be read"):
    idx.read_idx(tmp_path / "notgzip.gz")
  with gzip.open(tmp_path / "short.gz", "wb") as f:
    f.write(bytes([0, 0, 0x08, 3]) + (3).to_bytes(4, "big") * 3 + b"\0" * 5)
  with pytest.raises(ValueError, match=r"short\.gz has 21 bytes, expected 43"):
    idx.read_idx(tmp_path / "short.gz")
