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
  with pytest.raises(ValueError, match=r"short\.gz holds 21 bytes once decompressed, expected 43"):
    idx.read_idx(tmp_path / "short.gz")


def test_a_header_that_claims_more_than_the_file_allocates_nothing(tmp_path):
  # 10^4 x 10^4 x 10^4 bytes claimed by a 17-byte file.
  header = bytes([0, 0, 0x08, 3]) + (10_000).to_bytes(4, "big") * 3
  (tmp_path / "huge").write_bytes(header + b"\0")
  with pytest.raises(ValueError, match=r"huge has 17 bytes, expected "
                     r"1000000000016 for shape \(10000, 10000, 10000\)"):
    idx.read_idx(tmp_path / "huge")
  with gzip.open(tmp_path / "huge.gz", "wb") as f:
    f.write(header)
  with pytest.raises(ValueError, match=r"more than a \d+-byte gzip file can "
                     "hold"):
    idx.read_idx(tmp_path / "huge.gz")


def test_a_gzip_bomb_is_not_decompressed_past_its_header(tmp_path):
  # The header says 8 bytes; the stream would inflate to 200 MB of zeros.
  with gzip.open(tmp_path / "bomb.gz", "wb") as f:
    f.write(bytes([0, 0, 0x08, 1]) + (8).to_bytes(4, "big"))
    for _ in range(200):
      f.write(b"\0" * 2**20)
  with pytest.raises(ValueError, match=r"bomb\.gz holds 17\+ bytes once "
                     r"decompressed, expected 16"):
    idx.read_idx(tmp_path / "bomb.gz")


@pytest.mark.parametrize("dims, expected", [(0, 3), (2, 3)])
def test_wrong_number_of_dimensions_is_named(tmp_path, dims, expected):
  header = bytes([0, 0, 0x08, dims]) + (2).to_bytes(4, "big") * dims
  (tmp_path / "t10k-images-idx3-ubyte").write_bytes(header + b"\0" * 2**dims)
  _write(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 2], np.uint8),
         0x08)
  with pytest.raises(ValueError, match=f"has {dims} dimensions; expected "
                     f"{expected}"):
    idx.load_idx_dir(tmp_path)
  with pytest.raises(ValueError, match="has 0 dimensions; expected at least"):
    (tmp_path / "zero").write_bytes(bytes([0, 0, 0x08, 0]))
    idx.read_idx(tmp_path / "zero")


@pytest.mark.parametrize("name", ["labels", "labels.gz"])
def test_write_idx_writes_mnist_bytes(tmp_path, name):
  labels = np.array([7, 0, 255], np.uint8)
  idx.write_idx(tmp_path / name, labels)
  raw = (gzip.decompress if name.endswith(".gz") else bytes)(
      (tmp_path / name).read_bytes())
  # MNIST's label header: magic 0x00000801, then the count, big-endian.
  assert raw == b"\x00\x00\x08\x01" + b"\x00\x00\x00\x03" + b"\x07\x00\xff"
  images = np.random.default_rng(0).integers(0, 256, (4, 28, 28), np.uint8)
  idx.write_idx(tmp_path / "images.gz", images)
  np.testing.assert_array_equal(idx.read_idx(tmp_path / "images.gz", ndim=3),
                                images)
  with pytest.raises(ValueError, match=r"uint8 .* got float32 of shape "
                     r"\(2,\)"):
    idx.write_idx(tmp_path / "f", np.zeros(2, np.float32))
