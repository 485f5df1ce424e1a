"""Each method's loss against its formula written out standalone (NumPy,
float64, explicit loops and matrices as the reference repos write them).

A change to any term, weight or convention of a loss makes its test fail.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.special import softmax

from clustering.methods import clam
from clustering.methods import dkm
from clustering.methods import icon
from clustering.methods import mcr2
from clustering.methods import spaces
from clustering.methods import swav
from tests.objectives import helpers


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def rng(seed=0):
  return np.random.default_rng(seed)


def coding_rate(z, eps_sq, gamma=1.0):
  n, d = z.shape
  return 0.5 * np.linalg.slogdet(np.eye(d) + gamma * d / (n * eps_sq)
                                 * z.T @ z)[1]


def compression_rate(z, membership, eps_sq):
  """The mcr2 repo's loop: one explicit n x n diagonal per cluster."""
  n, d = z.shape
  total = 0.0
  for j in range(membership.shape[1]):
    pi = np.diag(membership[:, j])
    tr = np.trace(pi) + 1e-8
    total += tr / (2 * n) * np.linalg.slogdet(
        np.eye(d) + d / (tr * eps_sq) * z.T @ pi @ z)[1]
  return total


def cpp_membership(c, eta, half_steps=5):
  """CPP's SinkhornDistance on |C C^T|: u first, log domain."""
  n = c.shape[0]
  s = np.abs(c @ c.T) / eta
  u, v = np.zeros(n), np.zeros(n)
  for h in range(half_steps):
    if h % 2 == 0:
      u = np.log(1.0 / n) - logsumexp(s + v[None, :], axis=1)
    else:
      v = np.log(1.0 / n) - logsumexp(s + u[:, None], axis=0)
  return n * np.exp(s + u[:, None] + v[None, :])


@pytest.mark.parametrize("frobenius_weight", [0.0, 0.05])
def test_mlc_and_cpp_loss_match_the_formula(frobenius_weight):
  r = rng(0)
  z_views = unit(r.normal(size=(2, 12, 5)))
  c_views = unit(r.normal(size=(2, 12, 4)))
  kw = dict(eps_sq=0.1, eta=0.175, gamma_r=1.3, gamma_in=0.7,
            frobenius_weight=frobenius_weight, cluster_invariance_weight=0.4)
  loss, terms = mcr2.mlc_loss(jnp.asarray(z_views, jnp.float32),
                              jnp.asarray(c_views, jnp.float32), **kw)
  z, c = unit(z_views.mean(0)), unit(c_views.mean(0))
  gamma = cpp_membership(c, 0.175)
  rate = coding_rate(z, 0.1, gamma=0.7)
  rate_c = compression_rate(z, gamma, 0.1)
  fro = np.sum(gamma ** 2)  # CPP: not divided by the batch size
  cosine = np.mean(np.sum(z_views[0] * z_views[1], axis=1))
  expected = -1.3 * rate + rate_c + 0.5 * frobenius_weight * fro - 0.4 * cosine
  np.testing.assert_allclose(float(terms["R"]), rate, rtol=1e-4)
  np.testing.assert_allclose(float(terms["Rc"]), rate_c, rtol=1e-4)
  np.testing.assert_allclose(float(terms["gamma_fro2"]), fro, rtol=1e-4)
  np.testing.assert_allclose(float(terms["cosine"]), cosine, rtol=1e-5)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4, atol=1e-5)


def test_mlc_loss_one_view_has_no_agreement_term():
  z = unit(rng(1).normal(size=(1, 10, 4)))
  loss, terms = mcr2.mlc_loss(jnp.asarray(z, jnp.float32),
                              jnp.asarray(z, jnp.float32), eps_sq=0.5,
                              eta=0.2, frobenius_weight=0.05)
  gamma = cpp_membership(z[0], 0.2)
  expected = (-coding_rate(z[0], 0.5) + compression_rate(z[0], gamma, 0.5)
              + 0.025 * np.sum(gamma ** 2))
  assert float(terms["cosine"]) == 0.0
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4)


def test_tcr_loss_matches_the_formula():
  views = unit(rng(2).normal(size=(2, 16, 6)))
  loss, terms = mcr2.tcr_loss(jnp.asarray(views, jnp.float32), eps_sq=0.2,
                                invariance_weight=20.0)
  agreement = np.mean(np.sum(views[0] * views[1], axis=1))
  expected = -coding_rate(views.mean(0), 0.2) - 20.0 * agreement
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
  assert float(terms["tcr"]) == float(loss)


def test_swav_loss_matches_the_formula():
  r = rng(3)
  z = unit(r.normal(size=(2, 20, 6)))
  protos = unit(r.normal(size=(5, 6)))
  scores = z @ protos.T
  loss, terms = swav.swav_loss(jnp.asarray(scores, jnp.float32),
                               epsilon=0.05, sinkhorn_iters=3,
                               temperature=0.1)
  q = [helpers.swav_sinkhorn_reference(s, 0.05, 3) for s in scores]
  log_p = [np.log(softmax(s / 0.1, axis=1)) for s in scores]
  expected = -0.5 * np.mean(np.sum(q[0] * log_p[1], 1)
                            + np.sum(q[1] * log_p[0], 1))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
  counts = np.bincount(scores[0].argmax(1), minlength=5) / 20
  nz = counts[counts > 0]
  np.testing.assert_allclose(float(terms["balance"]),
                             np.exp(-np.sum(nz * np.log(nz))) / 5, rtol=1e-5)


def test_dkm_loss_matches_the_formula():
  r = rng(4)
  z, mu = r.normal(size=(15, 3)), r.normal(size=(4, 3))
  x, recon = r.normal(size=(15, 2, 2)), r.normal(size=(15, 4))
  space = spaces.reconstruction_loss(jnp.asarray(x, jnp.float32),
                                     jnp.asarray(recon, jnp.float32))
  loss, terms = dkm.dkm_loss(jnp.asarray(z, jnp.float32),
                             jnp.asarray(mu, jnp.float32), alpha=2.5,
                             kmeans_weight=0.3, space=space)
  d = ((z[:, None, :] - mu[None]) ** 2).sum(-1)
  r_ik = softmax(-2.5 * d, axis=1)  # temperature 1 / alpha
  kmeans = np.mean(np.sum(r_ik * d, axis=1))
  recon_mse = np.mean((x.reshape(15, 4) - recon) ** 2)
  np.testing.assert_allclose(float(terms["soft_kmeans"]), kmeans, rtol=1e-5)
  np.testing.assert_allclose(float(terms["reconstruction"]), recon_mse,
                             rtol=1e-5)
  np.testing.assert_allclose(float(loss), recon_mse + 0.3 * kmeans,
                             rtol=1e-5)


def test_clam_completion_loss_matches_the_dynamics():
  r = rng(5)
  z, rho = r.normal(size=(9, 4)), r.normal(size=(3, 4))
  fill = z.mean(0)
  key = jax.random.key(7)
  loss, terms = clam.clam_completion_loss(
      jnp.asarray(z, jnp.float32), jnp.asarray(rho, jnp.float32), key,
      fill_value=jnp.asarray(fill, jnp.float32), beta=1.5, alpha=0.1,
      num_steps=10, mask_fraction=0.3, clam_weight=2.0, space=(0.25, {}))
  # The mask is the documented draw: bernoulli(key, mask_fraction).
  m = np.asarray(jax.random.bernoulli(key, 0.3, z.shape), np.float64)
  v = np.where(m > 0, fill, z)
  for _ in range(10):
    d = ((rho[None] - v[:, None]) ** 2).sum(-1)  # [n, k]
    w = softmax(-0.75 * d, axis=1)  # beta / 2
    v = v + 0.1 * m * np.einsum("nk,nkd->nd", w, rho[None] - v[:, None])
  completion = np.mean(m * (z - v) ** 2)  # over all n * d entries
  np.testing.assert_allclose(float(terms["completion_mse"]), completion,
                             rtol=1e-4)
  np.testing.assert_allclose(float(loss), 0.25 + 2.0 * completion,
                             rtol=1e-4)


def test_clam_assignment_evolves_then_takes_the_nearest_memory():
  r = rng(6)
  z, rho = r.normal(size=(30, 2)), r.normal(size=(4, 2)) * 2
  dist = np.asarray(clam.memory_distances(jnp.asarray(z, jnp.float32),
                                          jnp.asarray(rho, jnp.float32),
                                          beta=2.0, alpha=0.1, num_steps=10))
  v = z.copy()
  for _ in range(10):
    w = softmax(-1.0 * ((rho[None] - v[:, None]) ** 2).sum(-1), axis=1)
    v = v + 0.1 * np.einsum("nk,nkd->nd", w, rho[None] - v[:, None])
  np.testing.assert_allclose(dist, ((v[:, None] - rho[None]) ** 2).sum(-1),
                             rtol=1e-4, atol=1e-5)


def icon_reference(logits, temperature, alpha_p, alpha_q, knn_x=None, k=0,
                   walks=0):
  """Debiased InfoNCE clustering, written out with explicit matrices."""
  n = logits.shape[0]
  b = n // 2
  probs = softmax(logits / temperature, axis=1)
  p = np.zeros((n, n))
  for i in range(n):
    p[i, (i + b) % n] = 1.0  # the pair partner
  if k:
    dist = ((knn_x[:, None] - knn_x[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    a = np.zeros((n, n))
    for i in range(n):
      a[i, np.argsort(dist[i])[:k]] = 1.0 / k
    total, power = a.copy(), a.copy()
    for _ in range(walks):
      power = power @ a
      total += power
    p = 0.5 * p + 0.5 * total / total.sum(1, keepdims=True)
  p = (1 - alpha_p) * p + alpha_p / n
  q = probs @ (probs / probs.sum(0)).T  # sum_c P_ic P_jc / sum_l P_lc
  q = q / q.sum(1, keepdims=True)
  q = (1 - alpha_q) * q + alpha_q / n
  return np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1))


@pytest.mark.parametrize("knn_k,walks", [(0, 0), (3, 1)])
def test_icon_clustering_loss_matches_the_formula(knn_k, walks):
  r = rng(8)
  logits = r.normal(size=(16, 4)) * 2
  x = r.normal(size=(16, 5))
  loss, terms = icon.icon_clustering_loss(
      jnp.asarray(logits, jnp.float32), temperature=0.7, alpha_p=0.6,
      alpha_q=0.2, knn_inputs=jnp.asarray(x, jnp.float32) if knn_k else None,
      knn_k=knn_k, knn_walks=walks)
  expected = icon_reference(logits, 0.7, 0.6, 0.2, x, knn_k, walks)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
  usage = softmax(logits / 0.7, axis=1).mean(0)
  np.testing.assert_allclose(float(terms["cluster_entropy"]),
                             -np.sum(usage * np.log(usage)), rtol=1e-5)
