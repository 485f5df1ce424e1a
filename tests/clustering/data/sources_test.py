"""Data sources, the input order and on-device augmentation."""

import os
import zipfile
import tempfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from clustering import data
from clustering.data import pipeline

MNIST_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..",
                         "shared", "data", "mnist_test")


def cfg(**kw):
  base = dict(name="digits", path="", labels_path="", data_dir="",
              image_key="image", label_key="label", kind="gaussian_mixture",
              num_examples=300, dim=8, separation=4.0, subspace_dim=2,
              noise=0.05)
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_digits_are_embedded_images_in_unit_range():
  ds = data.load(cfg(), num_clusters=10)
  x, y = ds.all()
  assert (ds.num_examples, ds.example_shape, ds.num_classes) == (1797, (8, 8, 1),
                                                                 10)
  assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
  assert y.shape == (1797,) and set(np.unique(y)) == set(range(10))


@pytest.mark.skipif(not os.path.isdir(MNIST_DIR), reason="no MNIST test set")
def test_idx_falls_back_to_the_test_files_when_no_train_split():
  ds = data.load(cfg(name="idx", path=MNIST_DIR), num_clusters=10)
  assert ds.num_examples == 10_000 and ds.example_shape == (28, 28, 1)
  assert ds.name.endswith(":t10k")


@pytest.mark.skipif(not os.path.isdir(MNIST_DIR), reason="no MNIST test set")
def test_mnist_preset_source_reads_the_idx_test_split_of_data_path():
  ds = data.load(cfg(name="mnist", path=MNIST_DIR, split="test"),
                 num_clusters=10)
  assert ds.num_examples == 10_000 and ds.name.endswith(":t10k")
  with pytest.raises(ValueError, match="has no train-images"):
    data.load(cfg(name="mnist", path=MNIST_DIR, split="train"),
              num_clusters=10)


def test_mnist_without_files_says_how_to_get_them(tmp_path):
  with pytest.raises(ValueError, match=r"--config.data.path=DIR.*tfds build "
                     "mnist"):
    data.load(cfg(name="mnist", data_dir=str(tmp_path)), num_clusters=10)


def test_idx_without_path_is_a_clear_error():
  with pytest.raises(ValueError, match="data.path"):
    data.load(cfg(name="idx"), num_clusters=10)


def test_npy_and_npz_features_with_labels():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(50, 6)).astype(np.float32)
  y = np.arange(50) % 5
  with tempfile.TemporaryDirectory() as d:
    np.savez(os.path.join(d, "f.npz"), features=x, labels=y)
    ds = data.load(cfg(name="npy", path=os.path.join(d, "f.npz")),
                   num_clusters=5)
    got_x, got_y = ds.get(np.array([3, 7]))
    np.testing.assert_array_equal(got_x, x[[3, 7]])
    np.testing.assert_array_equal(got_y, y[[3, 7]])
    np.save(os.path.join(d, "f.npy"), x)
    ds = data.load(cfg(name="npy", path=os.path.join(d, "f.npy")),
                   num_clusters=5)
    assert ds.example_shape == (6,) and ds.num_classes is None
    np.save(os.path.join(d, "bad.npy"), x[:, :, None])
    with pytest.raises(ValueError, match=r"\[n, d\]"):
      data.load(cfg(name="npy", path=os.path.join(d, "bad.npy")),
                num_clusters=5)


def test_synthetic_mixture_and_subspaces():
  ds = data.load(cfg(name="synthetic"), num_clusters=3)
  x, y = ds.all()
  assert x.shape == (300, 8) and np.bincount(y).tolist() == [100] * 3
  x, y = data.union_of_subspaces(num_examples=300, num_clusters=3, dim=8,
                                 subspace_dim=2, noise=0.0)
  for c in range(3):  # each cluster spans exactly its 2-D subspace
    assert np.linalg.matrix_rank(x[y == c], tol=1e-4) == 2
  with pytest.raises(ValueError, match="data.kind"):
    data.load(cfg(name="synthetic", kind="moons"), num_clusters=3)


def test_unknown_source_is_a_clear_error():
  with pytest.raises(ValueError, match="Unknown data.name 'cifar'"):
    data.load(cfg(name="cifar"), num_clusters=10)


def test_input_order_is_a_per_epoch_permutation_and_a_function_of_step():
  order = data.index_dataset(10, seed=3)
  epoch = np.concatenate([data.batch_indices(order, s, 5) for s in (0, 1)])
  assert sorted(epoch) == list(range(10))
  again = data.index_dataset(10, seed=3)
  np.testing.assert_array_equal(data.batch_indices(order, 7, 5),
                                data.batch_indices(again, 7, 5))
  assert not np.array_equal(  # reshuffled every epoch
      np.concatenate([data.batch_indices(order, s, 5) for s in (0, 1)]),
      np.concatenate([data.batch_indices(order, s, 5) for s in (2, 3)]))
  halves = [data.batch_indices(order, 4, 6, process_index=p, process_count=2)
            for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate(halves),
                                data.batch_indices(order, 4, 6))


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_augment_keeps_shape_and_is_sharding_invariant():
  x = jnp.asarray(data.load(cfg(), num_clusters=10).get(np.arange(16))[0])
  key = jax.random.key(0)
  fn = jax.jit(lambda k, x: data.augment(k, x, noise=0.1, flip=True))
  out = fn(key, x)
  assert out.shape == x.shape and bool(jnp.all(jnp.isfinite(out)))
  assert float(jnp.mean(jnp.abs(out - x))) > 0.01
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
  np.testing.assert_allclose(fn(key, sharded), out, atol=1e-6)
  feats = jnp.ones((4, 3))
  np.testing.assert_array_equal(data.augment(key, feats), feats)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_rotation_turns_images_about_their_centre():
  image = np.zeros((1, 9, 9, 1), np.float32)
  image[0, 4, 6:9, 0] = 1.0  # a bar right of the centre
  rot = pipeline._rotate(jnp.asarray(image[0]), jnp.pi / 2)
  # +90 degrees in (row, col) sampling moves the bar to rows 0..2, column 4
  # (or 6..8, depending on the direction); either way it stays on column 4.
  np.testing.assert_allclose(rot[:, 4, 0].sum(), 3.0, atol=1e-5)
  np.testing.assert_allclose(jnp.sum(rot), 3.0, atol=1e-5)
  np.testing.assert_allclose(pipeline._rotate(jnp.asarray(image[0]), 0.0),
                             image[0], atol=1e-6)
  key = jax.random.key(1)
  x = jnp.asarray(np.repeat(image, 4, axis=0))
  views = data.augment(key, x, crop_scale=(1.0, 1.0), max_shift=0.0,
                       rotation=30.0)
  assert views.shape == x.shape
  assert not np.allclose(views[0], views[1])  # one angle per example


def test_brightness_and_contrast_jitter_each_image_by_one_factor():
  rng = np.random.default_rng(0)
  # Intensities whose jittered values stay inside [0, 1].
  x = rng.uniform(0.3, 0.6, size=(64, 6, 6, 1)).astype(np.float32)
  key = jax.random.key(2)
  still = dict(crop_scale=(1.0, 1.0), max_shift=0.0)
  plain = np.asarray(data.augment(key, jnp.asarray(x), **still))
  # Brightness: every pixel of an image times one factor in 1 +- 0.4
  # (clipped at 1), the factors differing between images.
  bright = np.asarray(data.augment(key, jnp.asarray(x), brightness=0.4,
                                   **still))
  factor = (bright / plain)[:, 0, 0, 0]
  np.testing.assert_allclose(bright, factor[:, None, None, None] * plain,
                             rtol=1e-5)
  assert 0.6 <= factor.min() and factor.max() <= 1.4
  assert factor.max() - factor.min() > 0.5  # spread over the range
  # Clipped at 1.
  white = np.asarray(data.augment(key, jnp.ones((64, 6, 6, 1)),
                                  brightness=0.4, **still))
  assert white.max() <= 1.0 and white.min() < 0.9
  # Contrast: distances from the image's mean intensity times one factor.
  con = np.asarray(data.augment(key, jnp.asarray(x), contrast=0.4, **still))
  mean = plain.mean(axis=(1, 2, 3), keepdims=True)
  dev, con_dev = (plain - mean).reshape(64, -1), (con - mean).reshape(64, -1)
  scale = (dev * con_dev).sum(1) / (dev * dev).sum(1)  # least squares
  np.testing.assert_allclose(con, mean + scale[:, None, None, None]
                             * (plain - mean), atol=1e-5)
  assert 0.6 <= scale.min() and scale.max() <= 1.4
  # Without jitter the views are the ones drawn before it existed.
  np.testing.assert_array_equal(
      np.asarray(data.augment(key, jnp.asarray(x), brightness=0.0,
                              contrast=0.0, rotation=10.0)),
      np.asarray(data.augment(key, jnp.asarray(x), rotation=10.0)))


@pytest.mark.parametrize("field", ["brightness", "contrast"])
def test_jitter_strength_outside_its_range_is_refused(field):
  with pytest.raises(ValueError, match=f"data.augment.{field}"):
    pipeline.AugmentSpec(**{field: 1.0})


def test_tfds_source_under_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=24):
    ds = data.load(cfg(name="tfds:mnist"), num_clusters=10)
    x, y = ds.get(np.array([0, 5, 3]))
  assert ds.example_shape == (28, 28, 1) and ds.num_classes == 10
  assert x.shape == (3, 28, 28, 1) and 0 <= x.min() and x.max() <= 1
  assert y.dtype == np.int32


def test_unprepared_tfds_dataset_says_how_to_prepare_it():
  with tempfile.TemporaryDirectory() as d:
    with pytest.raises(ValueError, match="tfds build mnist"):
      data.load(cfg(name="tfds:mnist", data_dir=d), num_clusters=10)


def test_nan_and_inf_rows_are_rejected_with_the_file_and_rows(tmp_path):
  x = np.ones((20, 3), np.float32)
  x[4, 1], x[11, 0] = np.nan, np.inf
  path = str(tmp_path / "f.npz")
  np.savez(path, features=x)
  with pytest.raises(ValueError, match=r"f\.npz: 2 row\(s\) contain NaN or "
                     r"Inf \(rows 4, 11\)"):
    data.load(cfg(name="npy", path=path), num_clusters=2)


@pytest.mark.parametrize("content, message", [
    (b"not numpy at all", "is not a readable .npy/.npz file"),
    (b"PK\x03\x04broken zip", "is not a readable .npy/.npz file"),
])
def test_corrupt_array_files_are_clear_errors(content, message, tmp_path):
  for name in ("f.npy", "f.npz"):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{name} {message}"):
      data.load(cfg(name="npy", path=str(path)), num_clusters=2)


def test_truncated_npz_member_and_object_arrays_are_clear_errors(tmp_path):
  path = tmp_path / "f.npz"
  np.savez(path, features=np.ones((100, 4), np.float32))
  raw = path.read_bytes()
  path.write_bytes(raw[:200] + raw[-120:])  # the member's bytes cut short
  with pytest.raises(ValueError, match=r"f\.npz"):
    data.load(cfg(name="npy", path=str(path)), num_clusters=2)
  np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
  with pytest.raises(ValueError, match=r"obj\.npy is not a readable"):
    data.load(cfg(name="npy", path=str(tmp_path / "obj.npy")),
              num_clusters=2)


def test_a_train_split_with_a_bad_or_missing_file_never_falls_back(tmp_path):
  images = np.zeros((4, 28, 28), np.uint8)
  for split in ("train", "t10k"):
    _write_idx(tmp_path / f"{split}-images-idx3-ubyte", images)
    _write_idx(tmp_path / f"{split}-labels-idx1-ubyte",
               np.arange(4, dtype=np.uint8))
  ds = data.load(cfg(name="idx", path=str(tmp_path)), num_clusters=2)
  assert ds.name.endswith(":train")
  train_images = tmp_path / "train-images-idx3-ubyte"
  train_images.write_bytes(train_images.read_bytes()[:-10])  # truncated
  with pytest.raises(ValueError, match="train-images-idx3-ubyte has"):
    data.load(cfg(name="idx", path=str(tmp_path)), num_clusters=2)
  train_images.unlink()  # one of the two train files missing
  with pytest.raises(ValueError, match="has no train-images"):
    data.load(cfg(name="idx", path=str(tmp_path)), num_clusters=2)


def _write_idx(path, array):
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
      int(s).to_bytes(4, "big") for s in array.shape)
  path.write_bytes(header + array.tobytes())


def test_array_headers_that_claim_more_than_the_file_allocate_nothing(
    tmp_path):
  # A 128-byte .npy whose header claims 10^12 x 2 float64 (14.6 TiB).
  header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 2)))
  header["shape"] = (10**12, 2)
  with open(tmp_path / "huge.npy", "wb") as f:
    np.lib.format.write_array_header_1_0(f, header)
  with pytest.raises(ValueError, match=r"huge\.npy is not a readable"):
    data.load(cfg(name="npy", path=str(tmp_path / "huge.npy")),
              num_clusters=2)
  # The same header as a member of an .npz.
  with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
    z.writestr("features.npy", (tmp_path / "huge.npy").read_bytes())
  with pytest.raises(ValueError, match=r"huge\.npz: array 'features' is "
                     r"corrupt .*claims shape \(1000000000000, 2\)"):
    data.load(cfg(name="npy", path=str(tmp_path / "huge.npz")),
              num_clusters=2)


def test_an_honest_file_larger_than_memory_is_refused_before_reading(
    tmp_path, monkeypatch):
  """A float64 file would be converted in memory: refused when it cannot
  fit. A float32 one larger than memory stays mapped and is read by rows."""
  np.save(tmp_path / "f.npy", np.ones((64, 4), np.float64))
  x = np.arange(256, dtype=np.float32).reshape(64, 4)
  np.save(tmp_path / "g.npy", x)
  monkeypatch.setattr(os, "sysconf", lambda name: {
      "SC_PAGE_SIZE": 4, "SC_PHYS_PAGES": 100}[name])  # 400 bytes
  with pytest.raises(ValueError, match=r"f\.npy would need 0\.0 GiB, more "
                     "than this machine's"):
    data.load(cfg(name="npy", path=str(tmp_path / "f.npy")), num_clusters=2)
  mapped = data.load(cfg(name="npy", path=str(tmp_path / "g.npy")),
                     num_clusters=2)
  np.testing.assert_array_equal(mapped.get(np.array([5, 1]))[0], x[[5, 1]])
