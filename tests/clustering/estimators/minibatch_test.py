"""Mini-batch k-means: its step against the formula written out, and the
estimator against scikit-learn's ``MiniBatchKMeans`` in the same run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import cluster as sk_cluster
from sklearn import datasets

import clustering
from clustering.algorithms import kmeans as kmeans_lib
from clustering.algorithms import metrics


def _state(centroids, counts):
  state = kmeans_lib.minibatch_init(jnp.asarray(centroids, jnp.float32),
                                    jax.random.key(0))
  return state._replace(counts=jnp.asarray(counts, jnp.float32))


def test_step_moves_each_centroid_to_the_running_mean_of_its_samples():
  rng = np.random.default_rng(0)
  centroids = rng.normal(size=(4, 3))
  counts = np.array([5.0, 1.0, 7.0, 2.0])
  batch = rng.normal(size=(30, 3))
  new = kmeans_lib.minibatch_steps(
      _state(centroids, counts), jnp.asarray(batch, jnp.float32)[None],
      num_examples=30, max_no_improvement=None, reassignment_ratio=0.0)
  # By hand: nearest centroid, then count-weighted means.
  nearest = np.argmin(((batch[:, None] - centroids[None]) ** 2).sum(-1), 1)
  expected, expected_counts = centroids.copy(), counts.copy()
  for j in range(4):
    members = batch[nearest == j]
    expected_counts[j] += len(members)
    expected[j] = (counts[j] * centroids[j] + members.sum(0)) / (
        counts[j] + len(members))
  np.testing.assert_allclose(new.centroids, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new.counts, expected_counts)
  inertia = ((batch - centroids[nearest]) ** 2).sum() / 30
  assert float(new.ewa_inertia) == pytest.approx(inertia, rel=1e-5)


def test_a_centroid_no_sample_reaches_is_moved_onto_a_sample():
  rng = np.random.default_rng(1)
  batch = rng.normal(size=(64, 2)).astype(np.float32)
  centroids = np.array([[0.0, 0.0], [1.0, 1.0], [1e3, 1e3]], np.float32)
  new = kmeans_lib.minibatch_steps(
      _state(centroids, [0.0, 0.0, 0.0]), jnp.asarray(batch)[None],
      num_examples=64, max_no_improvement=None, reassignment_ratio=0.01)
  moved = np.asarray(new.centroids[2])
  assert np.any(np.all(batch == moved, axis=1))  # a sample of the batch
  kept = np.asarray(new.counts[:2])
  assert kept.sum() == 64 and float(new.counts[2]) == kept.min()
  # With the ratio at 0 it stays where it was.
  still = kmeans_lib.minibatch_steps(
      _state(centroids, [0.0, 0.0, 0.0]), jnp.asarray(batch)[None],
      num_examples=64, max_no_improvement=None, reassignment_ratio=0.0)
  np.testing.assert_array_equal(still.centroids[2], centroids[2])


def _blobs():
  x, y = datasets.make_blobs(12000, n_features=16, centers=20, cluster_std=2.0,
                             random_state=0)
  return x.astype(np.float32), y


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_fit_matches_scikit_learn_minibatch_kmeans():
  x, y = _blobs()
  ours = [clustering.MiniBatchKMeans(20, batch_size=512, random_state=s).fit(x)
          for s in range(3)]
  ref = [sk_cluster.MiniBatchKMeans(20, batch_size=512, n_init=1,
                                    random_state=s).fit(x) for s in range(3)]
  inertia = np.mean([e.inertia_ for e in ours])
  assert inertia <= 1.05 * np.mean([e.inertia_ for e in ref])
  for e in ours:  # labels_ and inertia_ are those of the final centres
    np.testing.assert_array_equal(e.labels_, e.predict(x))
    d = ((x[:, None] - e.cluster_centers_[None]) ** 2).sum(-1)
    assert e.inertia_ == pytest.approx(d.min(1).sum(), rel=1e-4)
    assert e.counts_.sum() >= e.n_steps_ * 512 * 0.99  # every batch counted
  acc = np.mean([metrics.hungarian_accuracy(y, e.labels_) for e in ours])
  ref_acc = np.mean([metrics.hungarian_accuracy(y, e.labels_) for e in ref])
  assert acc >= ref_acc - 0.02


def test_early_stopping_and_its_absence():
  x, _ = _blobs()
  stops = clustering.MiniBatchKMeans(20, batch_size=512, max_iter=20,
                                     random_state=0).fit(x)
  full = clustering.MiniBatchKMeans(20, batch_size=512, max_iter=20,
                                    max_no_improvement=None,
                                    random_state=0).fit(x)
  assert full.n_steps_ == 20 * 12000 // 512
  assert stops.n_steps_ < full.n_steps_


def _stream(est, x, seed):
  """Three passes over ``x`` in 24 chunks of shuffled rows."""
  rng = np.random.default_rng(seed)
  for _ in range(3):
    for chunk in np.array_split(rng.permutation(len(x)), 24):
      est.partial_fit(x[np.sort(chunk)])
  return est


@pytest.mark.slow
def test_partial_fit_over_chunks_of_a_memory_mapped_file(tmp_path):
  x, y = _blobs()
  path = tmp_path / "x.npy"
  np.save(path, x)
  mapped = np.load(path, mmap_mode="r")
  inertia = lambda c: ((x[:, None] - c[None]) ** 2).sum(-1).min(1).sum()  # noqa: E731
  ours, theirs, acc, ref_acc = [], [], [], []
  for seed in range(4):  # single runs land in different local minima
    est = _stream(clustering.MiniBatchKMeans(20, random_state=seed), mapped,
                  seed)
    ref = _stream(sk_cluster.MiniBatchKMeans(20, n_init=1,
                                             random_state=seed), x, seed)
    assert est.n_steps_ == 72
    ours.append(inertia(est.cluster_centers_))
    theirs.append(inertia(ref.cluster_centers_))
    acc.append(metrics.hungarian_accuracy(y, est.predict(x)))
    ref_acc.append(metrics.hungarian_accuracy(y, ref.predict(x)))
  assert np.mean(ours) <= 1.1 * np.mean(theirs)
  assert np.mean(acc) >= np.mean(ref_acc) - 0.05
  # A fitted estimator keeps learning from chunks.
  fitted = clustering.MiniBatchKMeans(20, max_iter=2,
                                      random_state=0).fit(x[:6000])
  steps = fitted.n_steps_
  fitted.partial_fit(x[6000:7000])
  assert fitted.n_steps_ == steps + 1


@pytest.mark.parametrize("kw, match", [
    (dict(batch_size=0), "`batch_size`"), (dict(max_iter=-1), "`max_iter`"),
    (dict(max_no_improvement=0), "`max_no_improvement`"),
    (dict(reassignment_ratio=1.5), "`reassignment_ratio`")])
def test_bad_parameters(kw, match):
  with pytest.raises(ValueError, match=match):
    clustering.MiniBatchKMeans(2, **kw).fit(np.ones((10, 2)))
