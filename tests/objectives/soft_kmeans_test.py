import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans

import objectives as O
from tests.objectives import helpers


def _reference_loss(x, c, t):
  x, c = np.float64(x), np.float64(c)
  d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
  logits = -d / t
  r = np.exp(logits - logits.max(1, keepdims=True))
  r /= r.sum(1, keepdims=True)
  return r, (r * d).sum(1).mean()


def test_matches_float64_formula():
  x, c = helpers.normal(0, (40, 6)), helpers.normal(1, (5, 6))
  for t in (0.1, 1.0, 7.0):
    r_ref, loss_ref = _reference_loss(x, c, t)
    np.testing.assert_allclose(
        O.soft_kmeans_assignments(x, c, temperature=t), r_ref, atol=1e-5)
    np.testing.assert_allclose(
        O.soft_kmeans_loss(x, c, temperature=t), loss_ref, rtol=1e-5)


def test_hand_computed_value():
  x = np.array([[0.0, 0.0], [2.0, 0.0]], np.float32)
  c = np.array([[0.0, 0.0], [2.0, 0.0]], np.float32)
  # Each point: distances (0, 4); r = (1, e^-4)/(1 + e^-4) at T = 1.
  expected = 4 * np.exp(-4) / (1 + np.exp(-4))
  np.testing.assert_allclose(O.soft_kmeans_loss(x, c), expected, rtol=1e-6)


def test_zero_temperature_limit_is_sklearn_inertia():
  x = helpers.normal(2, (300, 4))
  km = KMeans(n_clusters=6, n_init=4, random_state=0).fit(x)
  loss = O.soft_kmeans_loss(x, km.cluster_centers_.astype(np.float32),
                            temperature=1e-6)
  np.testing.assert_allclose(loss * x.shape[0], km.inertia_, rtol=1e-4)


def test_centroids_are_weighted_means_and_empty_cluster_is_zero():
  x = helpers.normal(3, (30, 3))
  r = np.zeros((30, 3), np.float32)
  r[:15, 0] = 1.0
  r[15:, 1] = 1.0  # cluster 2 is empty
  mu = O.soft_kmeans_centroids(x, r)
  np.testing.assert_allclose(mu[0], x[:15].mean(0), rtol=1e-5)
  np.testing.assert_allclose(mu[1], x[15:].mean(0), rtol=1e-5)
  # The docstring: "A cluster with zero total weight gets the zero vector,
  # never NaN, and a zero gradient."
  np.testing.assert_array_equal(mu[2], np.zeros(3, np.float32))
  weights = helpers.normal(4, (3,))
  grad_x, grad_r = jax.grad(
      lambda x, r: jnp.sum(weights * O.soft_kmeans_centroids(x, r)[2]),
      argnums=(0, 1))(x, r)
  np.testing.assert_array_equal(grad_x, np.zeros_like(x))
  np.testing.assert_array_equal(grad_r, np.zeros_like(r))
  # The non-empty clusters' gradients are untouched: d(w . mu_0)/dx_i is
  # w / 15 for i < 15 and 0 otherwise.
  grad_x0 = jax.grad(
      lambda x: jnp.sum(weights * O.soft_kmeans_centroids(x, r)[0]))(x)
  np.testing.assert_allclose(grad_x0[:15], np.tile(weights / 15, (15, 1)),
                             rtol=1e-6)
  np.testing.assert_array_equal(grad_x0[15:], np.zeros((15, 3)))


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_gradients():
  x, c = helpers.normal(4, (12, 3)), helpers.normal(5, (4, 3))
  helpers.check_grads_f64(
      lambda x, c: O.soft_kmeans_loss(x, c, temperature=0.7), (x, c))


def test_jit_does_not_retrace():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(x, c, t):
    return O.soft_kmeans_loss(x, c, temperature=t)

  for seed in range(3):
    loss(helpers.normal(seed, (10, 3)), helpers.normal(seed + 9, (4, 3)),
         0.5 + seed)


def test_vmap_over_temperature():
  x, c = helpers.normal(6, (20, 3)), helpers.normal(7, (4, 3))
  temps = jnp.array([0.1, 1.0, 10.0])
  batched = jax.vmap(lambda t: O.soft_kmeans_loss(x, c, temperature=t))(temps)
  for t, value in zip(temps, batched):
    np.testing.assert_allclose(value, O.soft_kmeans_loss(x, c, temperature=t),
                               rtol=1e-6)


def test_bfloat16_is_finite_and_close():
  x, c = helpers.normal(8, (32, 5)), helpers.normal(9, (3, 5))
  low = O.soft_kmeans_loss(x.astype(jnp.bfloat16), c.astype(jnp.bfloat16))
  assert low.dtype == jnp.float32 and np.isfinite(low)
  np.testing.assert_allclose(low, O.soft_kmeans_loss(x, c), rtol=5e-2)


def test_dkm_schedule():
  alphas = np.asarray(O.dkm_inverse_temperature(jnp.arange(4)))
  expected = [0.1]
  for n in range(1, 4):
    expected.append(expected[-1] * 2 ** (1 / np.log(n + 1) ** 2))
  np.testing.assert_allclose(alphas, expected, rtol=1e-5)


@pytest.mark.parametrize("alpha_0", [0.1, 10.0, 1e-20])
def test_dkm_schedule_is_capped_never_overflows_or_clips(alpha_0):
  steps = np.concatenate([np.arange(20_000), [10**6, 2**31 - 1]])
  alphas = np.asarray(jax.jit(
      lambda s: O.dkm_inverse_temperature(s, alpha_0=alpha_0))(steps))
  # The float64 formula, uncapped.
  exponent = np.concatenate([[0.0], np.cumsum(
      1 / np.log(np.arange(1, 20_000) + 1.0) ** 2)])
  formula = alpha_0 * 2.0 ** exponent
  below = formula[:20_000] < 1e4 * (1 - 1e-5)
  np.testing.assert_allclose(alphas[:20_000][below], formula[below],
                             rtol=2e-5)
  assert np.all(alphas[:20_000][~below] == 1e4) and np.all(alphas[-2:] == 1e4)
  assert np.all(np.diff(alphas) >= 0) and np.all(np.isfinite(alphas))
  with pytest.raises(ValueError, match="alpha_0"):
    O.dkm_inverse_temperature(0, alpha_0=2e4)


def test_soft_kmeans_annealed_far_past_overflow_still_separates_blobs():
  # 7,200 steps: the uncapped schedule is inf from step 7,093 (NaN losses,
  # one cluster, predict_proba failing).
  import clustering  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(size=(50, 2)), 100 + rng.normal(size=(50, 2))])
  est = clustering.SoftKMeans(2, n_init=2, n_anneal_steps=7200,
                              random_state=0).fit(x)
  np.testing.assert_array_equal(np.bincount(est.labels_), [50, 50])
  assert est.labels_[0] != est.labels_[-1]
  proba = est.predict_proba(x)
  np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(proba.argmax(1), est.labels_)
  loss = jax.jit(lambda t: O.soft_kmeans_loss(
      jnp.asarray(x, jnp.float32), jnp.asarray(est.cluster_centers_),
      temperature=1 / O.dkm_inverse_temperature(t)))(7200)
  assert np.isfinite(loss)


@pytest.mark.parametrize("x_shape,c_shape,match", [
    ((5,), (3, 5), "`x` must have rank 2"),
    ((4, 5), (3, 4), "feature dimension"),
    ((4, 5), (0, 5), "`centroids` has no centroids"),
])
def test_bad_shapes(x_shape, c_shape, match):
  with pytest.raises(ValueError, match=match):
    O.soft_kmeans_loss(np.zeros(x_shape, np.float32),
                       np.zeros(c_shape, np.float32))


def test_bad_dtype_and_temperature():
  with pytest.raises(ValueError, match="`x` must be a floating-point"):
    O.soft_kmeans_loss(np.zeros((4, 2), np.int32), np.zeros((2, 2)))
  with pytest.raises(ValueError, match="`temperature` must be positive"):
    O.soft_kmeans_loss(np.zeros((4, 2)), np.zeros((2, 2)), temperature=0.0)
