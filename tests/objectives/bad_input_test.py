"""Bad input: wrong rank, mismatched sizes, integer and NaN/Inf arrays give a
ValueError that names the argument (NaN/Inf inside jit: via O.checked)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import objectives as O

X = np.ones((6, 3), np.float32)
C = np.ones((4, 3), np.float32)
M = np.eye(4, dtype=np.float32)[np.arange(6) % 4]

CALLS = {
    "soft_kmeans_loss": lambda x=X, c=C: O.soft_kmeans_loss(x, c),
    "soft_kmeans_centroids": lambda x=X, c=M: O.soft_kmeans_centroids(x, c),
    "sinkhorn": lambda x=X: O.sinkhorn(x, epsilon=0.1),  # x: scores [n, k]
    "compression_rate": lambda x=X, c=M: O.compression_rate(x, c,
                                                            eps_sq=0.5),
    "clam_loss": lambda x=X, c=C: O.clam_loss(x, c, np.zeros_like(x),
                                              beta=1.0),
    "icon_loss": lambda x=X, c=C: O.icon_loss(
        O.gaussian_kernel(x), O.gaussian_kernel(x @ c.T)),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_wrong_rank_integer_and_nan_inputs(name):
  call = CALLS[name]
  with pytest.raises(ValueError, match=r"`\w+` must have rank 2"):
    call(x=X[None])
  with pytest.raises(ValueError, match=r"`\w+` must be a floating-point"):
    call(x=X.astype(np.int32))
  bad = X.copy()
  bad[2, 1] = np.nan
  with pytest.raises(ValueError, match=r"`\w+` contains NaN"):
    call(x=bad)
  bad[2, 1] = np.inf
  with pytest.raises(ValueError, match=r"`\w+` contains NaN or \+-?Inf"):
    call(x=bad)


def test_mismatched_sizes_name_both_arguments():
  with pytest.raises(ValueError, match=r"`centroids` .*\[k, d\]|Mismatched"):
    O.soft_kmeans_loss(X, np.ones((4, 5), np.float32))
  with pytest.raises(ValueError, match=r"Mismatched number of samples"):
    O.compression_rate(X, M[:5], eps_sq=0.5)


def test_nan_inside_jit_is_caught_by_checked():
  def loss(z, m):
    return O.mcr2_loss(z, m, eps_sq=0.5)

  z = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)
  z = z / jnp.linalg.norm(z, axis=1, keepdims=True)
  assert float(O.checked(loss)(z, M)) == pytest.approx(
      float(jax.jit(loss)(z, M)), rel=1e-5)
  with pytest.raises(ValueError, match=r"`z` contains NaN or \+-Inf"):
    O.checked(loss)(z.at[1, 1].set(jnp.nan), M)
  # Without `checked` the jitted loss does not look (no cost): NaN out.
  assert np.isnan(float(jax.jit(loss)(z.at[1, 1].set(jnp.nan), M)))


def test_out_of_range_hyperparameters_are_named():
  with pytest.raises(ValueError, match="`temperature`"):
    O.soft_kmeans_loss(X, C, temperature=0.0)
  with pytest.raises(ValueError, match="`epsilon`"):
    O.sinkhorn(X @ C.T, epsilon=-1.0)
  with pytest.raises(ValueError, match="`eps_sq`"):
    O.coding_rate(X, eps_sq=float("nan"))
  with pytest.raises(ValueError, match="`alpha`"):
    O.debias(O.gaussian_kernel(X), alpha=1.5)
