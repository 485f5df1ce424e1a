"""scikit-learn estimators: sklearn's own checks, digits ACC, behaviour."""

import pickle

import numpy as np
import pytest
from sklearn import cluster as sk_cluster
from sklearn import datasets
from sklearn.utils import estimator_checks

import clustering
from clustering.algorithms import metrics

pytestmark = pytest.mark.slow  # minutes: the fast tier is -m 'not slow'


def _quick(est):
  """The estimators with their iteration counts cut for sklearn's checks."""
  name = type(est).__name__
  if name == "ClAM":
    est.set_params(max_iter=20, n_init=2)
  elif name == "IConClustering":
    est.set_params(max_iter=100, n_init=1, batch_size=32)
  elif name == "SinkhornKMeans":
    est.set_params(max_iter=5, n_init=2)
  elif name in ("KMeans", "SoftKMeans"):
    est.set_params(n_init=2)
  return est


ESTIMATORS = [
    _quick(clustering.KMeans(n_clusters=3)),
    _quick(clustering.SoftKMeans(n_clusters=3)),
    _quick(clustering.SinkhornKMeans(n_clusters=3)),
    _quick(clustering.ClAM(n_clusters=3)),
    _quick(clustering.MiniBatchKMeans(n_clusters=3, batch_size=32,
                                      max_iter=5)),
]
# Every fit of these two compiles anew for each of the checks' shapes (a
# second or two each); they get the API checks plus the clustering-specific
# legacy ones below, to keep the suite's time in bounds.
SLOW_ESTIMATORS = [
    _quick(clustering.MCR2Clustering(n_clusters=3)),
    _quick(clustering.IConClustering(n_clusters=3)),
]

# Checks that contradict what a method is, with the reason.
_EXPECTED_FAILURES = {
    "SinkhornKMeans": {
        "check_clusterer_compute_labels_predict":
            "labels_ is the balanced OT assignment of the training set; "
            "predict on new data is the nearest centre (not balanced).",
    },
}


def _expected_failures(est):
  return _EXPECTED_FAILURES.get(type(est).__name__, {})


@estimator_checks.parametrize_with_checks(
    ESTIMATORS, expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
  check(estimator)


@estimator_checks.parametrize_with_checks(SLOW_ESTIMATORS, legacy=False)
def test_sklearn_api_checks_of_slow_estimators(estimator, check):
  check(estimator)


@pytest.mark.parametrize("estimator", SLOW_ESTIMATORS,
                         ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("check", [
    estimator_checks.check_clustering,
    estimator_checks.check_estimators_nan_inf,
    estimator_checks.check_estimators_pickle,
    estimator_checks.check_fit2d_1sample,
    estimator_checks.check_fit_idempotent,
    estimator_checks.check_n_features_in,
], ids=lambda c: c.__name__)
def test_clustering_checks_of_slow_estimators(estimator, check):
  check(type(estimator).__name__, estimator)


@pytest.fixture(scope="module")
def digits():
  x, y = datasets.load_digits(return_X_y=True)
  return x, y


@pytest.fixture(scope="module")
def sklearn_kmeans_acc(digits):
  x, y = digits
  labels = sk_cluster.KMeans(10, n_init=10, random_state=0).fit_predict(x)
  return metrics.hungarian_accuracy(y, labels)


@pytest.mark.parametrize("name", ["KMeans", "SoftKMeans", "SinkhornKMeans",
                                  "ClAM", "MCR2Clustering", "IConClustering"])
def test_digits_acc_at_least_sklearn_kmeans(name, digits, sklearn_kmeans_acc):
  x, y = digits
  est = getattr(clustering, name)(n_clusters=10, random_state=0)
  labels = est.fit_predict(x)
  acc = metrics.hungarian_accuracy(y, labels)
  assert acc >= sklearn_kmeans_acc, (name, acc, sklearn_kmeans_acc)
  assert labels.shape == (len(y),) and labels.dtype == np.int32
  np.testing.assert_array_equal(labels, est.labels_)
  if hasattr(est, "predict") and name != "SinkhornKMeans":
    np.testing.assert_array_equal(est.predict(x), labels)
  restored = pickle.loads(pickle.dumps(est))
  if hasattr(est, "predict"):
    np.testing.assert_array_equal(restored.predict(x[:50]),
                                  est.predict(x[:50]))


def test_kmeans_estimator_is_the_function(digits):
  x, _ = digits
  est = clustering.KMeans(n_clusters=10, n_init=3, random_state=0).fit(x)
  seed = est._seed()
  ref = clustering.kmeans(x.astype(np.float32), 10, n_init=3, seed=seed)
  np.testing.assert_array_equal(est.labels_, np.asarray(ref.labels))
  assert est.inertia_ == pytest.approx(float(ref.inertia), rel=1e-6)
  sk = sk_cluster.KMeans(10, n_init=10, random_state=0).fit(x)
  assert est.inertia_ <= sk.inertia_ * 1.01


def test_soft_kmeans_anneals_to_a_lloyd_fixed_point(digits):
  x, _ = digits
  est = clustering.SoftKMeans(n_clusters=10, random_state=0).fit(x)
  proba = est.predict_proba(x)
  np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
  # At the last temperature the soft assignments are nearly hard.
  assert np.mean(np.max(proba, 1)) > 0.99
  # One Lloyd step from the annealed centres barely moves them.
  lloyd = np.stack([x[est.labels_ == j].mean(0) for j in range(10)])
  assert np.abs(lloyd - est.cluster_centers_).max() < 0.05 * x.std()


def test_sinkhorn_kmeans_balances_clusters():
  rng = np.random.default_rng(0)
  # Two blobs of 90 and 30 points: k-means splits them by the gap;
  # balanced k-means must give each cluster about 60 (the plan exactly 60).
  x = np.concatenate([rng.normal(0, 1, (90, 2)), rng.normal(8, 1, (30, 2))])
  km = clustering.KMeans(n_clusters=2, random_state=0).fit(x)
  assert sorted(np.bincount(km.labels_)) == [30, 90]
  est = clustering.SinkhornKMeans(n_clusters=2, random_state=0).fit(x)
  sizes = np.bincount(est.labels_, minlength=2)
  assert np.all(np.abs(sizes - 60) <= 3), sizes
  np.testing.assert_allclose(est.plan_.sum(0), [60, 60], rtol=1e-3)
  weighted = clustering.SinkhornKMeans(
      n_clusters=2, cluster_weights=[3, 1], random_state=0).fit(x)
  assert sorted(np.bincount(weighted.labels_)) == [30, 90]
  with pytest.raises(ValueError, match="cluster_weights"):
    clustering.SinkhornKMeans(n_clusters=2, cluster_weights=[1, 0]).fit(x)


def test_mcr2_clustering_learned_head_gives_a_partition(digits):
  x, y = digits[0][:300], digits[1][:300]
  est = clustering.MCR2Clustering(n_clusters=10, learn_head=True, max_iter=30,
                                  batch_size=128, hidden_layer_sizes=(64,),
                                  z_dim=16, random_state=0).fit(x)
  assert est.loss_curve_.shape == (30,) and est.n_iter_ == 30
  assert np.all(np.isfinite(est.loss_curve_))
  assert est.loss_curve_[-1] < est.loss_curve_[0]
  assert est.embedding_.shape == (len(y), 16)
  assert set(np.unique(est.labels_)) <= set(range(10))


@pytest.mark.parametrize("est", [clustering.KMeans(n_clusters=5),
                                 clustering.ClAM(n_clusters=5),
                                 clustering.MCR2Clustering(n_clusters=5),
                                 clustering.IConClustering(n_clusters=5)])
def test_more_clusters_than_samples_is_a_clear_error(est):
  with pytest.raises(ValueError, match=r"`n_clusters`=5 exceeds .* n=3"):
    est.fit(np.zeros((3, 2)))


def test_nan_input_is_rejected():
  x = np.ones((10, 2))
  x[3, 1] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    clustering.SoftKMeans(n_clusters=2).fit(x)
