"""Config paths that no other test follows, each against an independent
computation: MLC's differentiation modes, three views, the parameter EMA,
gradient clipping, AdamW and momentum SGD, a separate evaluation split and
``distributed.auto``.

Most tests build a run on one device (``train.validated`` + ``train.setup``,
as ``train_and_evaluate`` does) on a small synthetic set, with linear heads
on an identity backbone, and take one or two jitted steps.
"""

import json
import pathlib

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clustering import data as data_lib
from clustering.algorithms import metrics as metrics_lib
from clustering.algorithms import spectral
from clustering.methods import base
from clustering.methods import mcr2
from configs import cpp as cpp_config
from configs import mcr2 as mcr2_config
from configs import soft_kmeans as soft_kmeans_config
from experiments import train
from experiments import trainer as trainer_lib

# The gradient oracle's learning rate (see `gradient_at`): large, so that
# `(p0 - p1) / lr` recovers the gradient to ~1e-7 of its own size.
_ORACLE_LR = 1e3


def small_config(**optimizer):
  """MLC's quick config, shrunk to linear heads on 6-d synthetic features;
  a constant learning rate (exact one-step algebra), noisy views."""
  config = mcr2_config.get_config("quick")
  config.data.update(dict(name="synthetic", num_examples=64, dim=6,
                          batch_size=16))
  config.data.augment.noise = 0.5  # feature vectors' only augmentation
  # Every view is of the batch itself (the recipe's neighbour pairs are
  # tested in tests/clustering/methods/frozen_features_test.py).
  config.objective.neighbors = "none"
  config.model.update(dict(encoder="identity", head_hidden=(), z_dim=4))
  config.eval.batch_size = 64
  config.optimizer.update(dict(schedule="constant", warmup_steps=0))
  config.optimizer.update(optimizer)
  return config


def make_run(config) -> train.Run:
  method, mesh = train.validated(config, jax.devices()[:1])
  run = train.setup(config, method, mesh)
  run.trainer.start_phase(method.phases[0], run.train_ds)
  return run


def host(tree):
  return jax.tree.map(lambda a: np.array(a, np.float64), tree)


def leaves(tree):
  return np.concatenate([np.ravel(a) for a in jax.tree.leaves(tree)])


def step(run, s, phase="warmup"):
  """Step ``s`` of ``run``; returns the host metrics."""
  return jax.device_get(run.trainer.train_step(phase, *run.batches(s)))


@pytest.fixture(scope="module")
def oracle():
  """A run whose optimizer is plain SGD at ``_ORACLE_LR``: one step from
  given parameters at a given step number reveals the gradient there."""
  return make_run(small_config(name="sgd", momentum=0.0,
                               learning_rate=_ORACLE_LR))


def gradient_at(oracle_run, params, rest, s):
  """The loss gradient at ``params`` on step ``s``'s batch and views (the
  views and batch are functions of (seed, step), the same in every run of
  one data/seed config)."""
  tr = oracle_run.trainer
  tr.state = jax.device_put(
      dict(tr.state, params=jax.tree.map(jnp.asarray, params),
           rest=jax.tree.map(jnp.array, rest),
           step=jnp.asarray(s, jnp.int32)), tr.replicated)
  step(oracle_run, s)
  after = host(tr.state["params"])
  return jax.tree.map(lambda p0, p1: (p0 - p1) / _ORACLE_LR,
                      host(params), after)


# ------------------------------------------------ objective.differentiation


def _logsumexp(a, axis):
  m = a.max(axis=axis, keepdims=True)
  return np.squeeze(m, axis) + np.log(np.exp(a - m).sum(axis))


def _np_membership(c, eta, half_steps, frozen_v=None):
  """Doubly stochastic ``n P`` of ``|C C^T| / eta`` by alternating
  half-steps (rows first); ``frozen_v``: column potentials held fixed."""
  n = c.shape[0]
  logits = np.abs(c @ c.T) / eta
  u, v, vs = np.zeros(n), np.zeros(n), []
  for h in range(half_steps):
    if h % 2 == 0:
      u = -np.log(n) - _logsumexp(logits + v[None, :], 1)
    else:
      v = -np.log(n) - _logsumexp(logits + u[:, None], 0)
      if frozen_v is not None:
        v = frozen_v[len(vs)]
      vs.append(v)
  return n * np.exp(logits + u[:, None] + v[None, :]), vs


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_mlc_loss(z, c, hp, half_steps, frozen_v=None):
  """``-gamma_r R(Z) + R_c(Z, Gamma)`` (MLC's formula), float64."""
  n, d = z.shape
  gamma, vs = _np_membership(c, hp.eta, half_steps, frozen_v)
  logdet = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
  rate = 0.5 * logdet(np.eye(d) + hp.gamma_in * d / (n * hp.eps_sq) * z.T @ z)
  tr = gamma.sum(0) + 1e-8
  rate_c = sum(tr[j] / (2 * n) * logdet(
      np.eye(d) + d / (tr[j] * hp.eps_sq) * (z.T * gamma[:, j]) @ z)
               for j in range(n))
  return -hp.gamma_r * rate + rate_c, vs


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
@pytest.mark.parametrize("mode", ["unroll", "implicit"])
def test_differentiation_mode_reaches_the_cluster_head_gradient(mode):
  """``objective.differentiation`` decides the gradient that reaches the
  cluster head, as the math says: 'unroll' is the derivative of the 5
  half-steps, 'implicit' the derivative of the converged membership, both
  unlike 'cpp' (the default), which holds the column potentials fixed.

  The method is built from the config as the training loop builds it; the
  reference is a float64 NumPy Sinkhorn differentiated by central
  differences along a random direction of the cluster head's parameters.
  """
  config = small_config()
  config.objective.differentiation = mode
  method = train.validate_config(config, num_devices=1)
  model = method.create_model(nnx.Rngs(params=0), (6,))
  rng = np.random.default_rng(0)
  views = rng.normal(size=(2, 10, 6)).astype(np.float32)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss_fn(p):
    m = nnx.merge(graphdef, p, rest, copy=True)
    return method.loss(m, base.Inputs(jnp.asarray(views), None),
                       jax.random.key(0), 0, "cluster")[0]

  loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
  p, g = host(params), host(grads)
  head, ghead = p["cluster_head"]["out"], g["cluster_head"]["out"]
  dw = rng.normal(size=head["kernel"].shape)
  db = rng.normal(size=head["bias"].shape)
  directional = float(np.sum(ghead["kernel"] * dw)
                      + np.sum(ghead["bias"] * db))

  x = views.astype(np.float64)
  feat = p["feature_head"]["out"]
  z = _unit(_unit(x @ feat["kernel"] + feat["bias"]).mean(0))

  def c_at(t):  # the cluster features with the head moved by t * direction
    return _unit(_unit(x @ (head["kernel"] + t * dw)
                       + (head["bias"] + t * db)).mean(0))

  hp, h = method.hp, 1e-5
  assert hp.differentiation == mode and hp.sinkhorn_iters == 5
  _, frozen = _np_mlc_loss(z, c_at(0.0), hp, 5)
  converged = 4001  # half-steps: Sinkhorn run to convergence

  def fd(half_steps, frozen_v=None):
    return (_np_mlc_loss(z, c_at(h), hp, half_steps, frozen_v)[0]
            - _np_mlc_loss(z, c_at(-h), hp, half_steps, frozen_v)[0]) / (2 * h)

  expected = {"cpp": fd(5, frozen), "unroll": fd(5), "implicit": fd(converged)}
  np.testing.assert_allclose(directional, expected[mode], rtol=2e-4)
  for other in set(expected) - {mode}:  # the modes are told apart
    assert abs(expected[other] - expected[mode]) > 20 * 2e-4 * abs(
        expected[mode]), (other, expected)
  # The forward value too: 5 half-steps vs the converged membership.
  np.testing.assert_allclose(
      float(loss), _np_mlc_loss(z, c_at(0.0), hp,
                                5 if mode == "unroll" else converged)[0],
      rtol=1e-5)


# ------------------------------------------------------ objective.num_views


def _np_tcr(z_views, eps_sq, invariance_weight):
  """``-R(mean_v Z_v) - lambda mean_{v<w} mean_i cos(Z_v[i], Z_w[i])``."""
  num_views, n, d = z_views.shape
  mean = z_views.mean(0)
  rate = 0.5 * np.linalg.slogdet(
      np.eye(d) + d / (n * eps_sq) * mean.T @ mean)[1]
  unit = _unit(z_views)
  cosines = [np.mean(np.sum(unit[v] * unit[w], -1))
             for v in range(num_views) for w in range(v + 1, num_views)]
  return -rate - invariance_weight * np.mean(cosines)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_three_views_reach_the_tcr_loss(monkeypatch):
  """``objective.num_views=3``: the training step's batch carries three
  distinct views and its TCR loss is the three-view formula (NumPy, on the
  feature head's outputs of those views), not the two-view one."""
  config = small_config()
  config.objective.num_views = 3
  run = make_run(config)
  seen = {}
  method_loss = run.method.loss

  def loss_with_views(model, inputs, key, s, phase):
    loss, terms = method_loss(model, inputs, key, s, phase)
    seen["shape"] = inputs.views.shape
    return loss, dict(terms, views=inputs.views)  # returned by the step

  monkeypatch.setattr(run.method, "loss", loss_with_views)
  before = host(run.trainer.state["params"])
  metrics = step(run, 0)
  views = np.asarray(metrics["views"], np.float64)
  assert seen["shape"] == views.shape == (3, 16, 6)
  x, _ = run.batches(0)
  stats = run.trainer.stats
  for v in range(3):  # each this batch plus its own N(0, 0.5^2) noise
    noise = views[v] * stats.channel_std + stats.channel_mean - x
    assert 0.4 < noise.std() < 0.6 and abs(noise.mean()) < 0.15
    assert not np.allclose(views[v], views[(v + 1) % 3])
  head = before["feature_head"]["out"]
  z = _unit(views @ head["kernel"] + head["bias"])
  hp = run.method.hp
  expected = _np_tcr(z, hp.eps_sq, hp.invariance_weight)
  np.testing.assert_allclose(metrics["tcr"], expected, rtol=1e-5)
  two_views = _np_tcr(z[:2], hp.eps_sq, hp.invariance_weight)
  assert abs(two_views - expected) > 100 * 1e-5 * abs(expected)


# ------------------------------------------------------------ train.ema_decay


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_evaluation_uses_the_ema_of_the_step_parameters(monkeypatch):
  """``train.ema_decay=0.8``: ``train.evaluate`` (the loop's evaluation)
  scores the model with ``ema_t = d ema_{t-1} + (1-d) params_t``, started
  at the phase's initial parameters, computed here from each step's
  parameters; not the raw parameters."""
  config = small_config(learning_rate=0.05)
  config.train.ema_decay = 0.8  # not 0.5: d and 1 - d must differ
  run = make_run(config)
  ema = host(run.trainer.state["params"])  # the warm-up phase's start
  for s in range(3):
    step(run, s)
    params = host(run.trainer.state["params"])
    ema = jax.tree.map(lambda e, p: 0.8 * e + 0.2 * p, ema, params)
  # MLC's spectral assignment is beside the point here (and compiles for
  # seconds): any rule on the outputs will do.
  monkeypatch.setattr(run.method, "assign", lambda out: (
      np.argmax(out["features"], 1).astype(np.int32), {}))
  ev = train.evaluate(run, run.eval_ds)

  def features(p):
    model = nnx.merge(run.trainer.graphdef, jax.tree.map(jnp.asarray, p),
                      run.trainer.state["rest"], copy=True)
    x, _ = run.eval_ds.all()
    x = data_lib.standardize(jnp.asarray(x), run.trainer.stats,
                             run.method.input_spec.standardize)
    return np.asarray(run.method.outputs(model, x)["features"])

  np.testing.assert_allclose(leaves(run.trainer.state["ema"]), leaves(ema),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ev["features"], features(ema), atol=1e-5)
  assert np.abs(features(params) - features(ema)).max() > 1e-2


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_phase_start_hook_gets_the_trained_models_features_not_the_ema():
  """With an EMA, the hook that initialises the next phase (k-means
  prototypes, a cluster head) sees the model it initialises: the raw
  parameters' features, not the lagging average's."""
  from clustering.methods import base
  config = small_config(learning_rate=0.05)
  config.train.ema_decay = 0.8
  run = make_run(config)
  for s in range(3):
    step(run, s)
  seen = {}
  original = run.method.start_phase

  def spy(name, model, features):
    seen["features"] = np.asarray(features)
    return original(name, model, features)

  run.method.start_phase = spy
  raw = np.asarray(run.trainer.outputs(run.train_ds, use_ema=False)[0][
      "features"])
  ema = np.asarray(run.trainer.outputs(run.train_ds, use_ema=True)[0][
      "features"])
  assert np.abs(raw - ema).max() > 1e-2  # the two differ here
  run.trainer.start_phase(base.Phase("cluster", 3, True), run.train_ds)
  np.testing.assert_allclose(seen["features"], raw, atol=1e-6)


# --------------------------------------------------------------- optimizers


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_grad_clip_scales_the_sgd_step_to_the_clip_norm(oracle):
  """``optimizer.grad_clip=c``: the SGD step is ``-lr g min(1, c/|g|)``
  (the global norm over every parameter, clipped before the learning
  rate); ``g`` from the gradient oracle."""
  lr, clip = 0.5, 1e-3
  run = make_run(small_config(name="sgd", momentum=0.9, learning_rate=lr,
                              grad_clip=clip))
  p0, rest = host(run.trainer.state["params"]), run.trainer.state["rest"]
  g = gradient_at(oracle, p0, rest, 0)
  metrics = step(run, 0)
  norm = np.linalg.norm(leaves(g))
  np.testing.assert_allclose(metrics["grad_norm"], norm, rtol=1e-4)
  assert norm > 100 * clip  # the clip is active
  p1 = host(run.trainer.state["params"])
  np.testing.assert_allclose(
      leaves(p1), leaves(p0) - lr * leaves(g) * clip / norm, rtol=1e-5,
      atol=1e-7)
  np.testing.assert_allclose(np.linalg.norm(leaves(p1) - leaves(p0)),
                             lr * clip, rtol=1e-3)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_adamw_first_step_decays_the_weights(oracle):
  """``optimizer.name='adamw'``: the first step is
  ``-lr (g / (|g| + 1e-8) + wd p)``; the cluster head, which the TCR
  warm-up leaves without gradient, only shrinks by ``1 - lr wd``."""
  lr, wd = 0.1, 0.5
  run = make_run(small_config(name="adamw", learning_rate=lr,
                              weight_decay=wd))
  p0, rest = host(run.trainer.state["params"]), run.trainer.state["rest"]
  g = gradient_at(oracle, p0, rest, 0)
  step(run, 0)
  p1 = host(run.trainer.state["params"])
  expected = jax.tree.map(lambda p, g: p - lr * (g / (np.abs(g) + 1e-8)
                                                 + wd * p), p0, g)
  np.testing.assert_allclose(leaves(p1), leaves(expected), rtol=1e-5,
                             atol=1e-6)
  assert not np.any(leaves(g["cluster_head"]))
  np.testing.assert_allclose(leaves(p1["cluster_head"]),
                             (1 - lr * wd) * leaves(p0["cluster_head"]),
                             rtol=1e-6)


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_sgd_momentum_second_step_carries_the_first_gradient(oracle):
  """``optimizer.name='sgd'``, ``momentum=m``: ``p1 = p0 - lr g1``,
  ``p2 = p1 - lr (g2 + m g1)`` (heavy ball), gradients from the oracle at
  each step's parameters."""
  lr, m = 0.05, 0.9
  run = make_run(small_config(name="sgd", learning_rate=lr, momentum=m))
  p0, rest = host(run.trainer.state["params"]), run.trainer.state["rest"]
  g1 = gradient_at(oracle, p0, rest, 0)
  step(run, 0)
  p1, rest = host(run.trainer.state["params"]), run.trainer.state["rest"]
  g2 = gradient_at(oracle, p1, rest, 1)
  step(run, 1)
  p2 = host(run.trainer.state["params"])
  np.testing.assert_allclose(leaves(p1), leaves(p0) - lr * leaves(g1),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      leaves(p2), leaves(p1) - lr * (leaves(g2) + m * leaves(g1)),
      rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------ data.eval_split


def _write_idx(path, array):
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
      int(s).to_bytes(4, "big") for s in array.shape)
  pathlib.Path(path).write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_eval_split_evaluates_the_other_split(tmp_path, monkeypatch):
  """``data.eval_split='test'`` on an IDX directory of 96 training and 40
  test images: training reads ``train``; the evaluation, results.json and
  predictions.npz are the 40 test images, in order, with their labels."""
  rng = np.random.default_rng(0)
  splits = {"train": np.arange(96) % 3,
            "t10k": np.repeat([2, 0, 1], [14, 13, 13])}
  for stem, labels in splits.items():
    images = rng.integers(0, 60, (len(labels), 8, 8))
    for k in range(3):  # a bright row per class
      images[labels == k, 2 * k + 1] += 180
    _write_idx(tmp_path / f"{stem}-images-idx3-ubyte", images)
    _write_idx(tmp_path / f"{stem}-labels-idx1-ubyte", labels)
  config = soft_kmeans_config.get_config("autoencoder,quick")  # cheapest run
  config.num_clusters = 3
  config.data.update(dict(name="idx", path=str(tmp_path), eval_split="test",
                          batch_size=16))
  config.model.update(dict(hidden=(16,), z_dim=8))
  config.objective.warmup_steps = 0
  config.train.update(dict(num_steps=2, eval_every=2))
  monkeypatch.setattr(train.report, "plot_run", lambda *a, **k: None)
  workdir = tmp_path / "run"
  results = train.train_and_evaluate(config, str(workdir),
                                     show_progress=False,
                                     devices=jax.devices()[:1])
  assert results["data"] == f"idx:{tmp_path.name}:train"
  assert results["eval_data"] == f"idx:{tmp_path.name}:t10k"
  assert results["num_examples"] == 40
  assert json.loads((workdir / "results.json").read_text())[
      "num_examples"] == 40
  preds = np.load(workdir / "predictions.npz")
  np.testing.assert_array_equal(preds["label"], splits["t10k"])
  assert preds["features"].shape == (40, 8)
  assert results["acc"] == pytest.approx(
      metrics_lib.hungarian_accuracy(splits["t10k"], preds["cluster"]))


# -------------------------------------------------------- distributed.auto


def test_distributed_auto_lets_jax_detect_the_cluster(monkeypatch):
  """``distributed.auto=True`` without a coordinator address: one call of
  ``jax.distributed.initialize()`` with no arguments (JAX reads the TPU
  VM / Slurm / Open MPI environment); the CPU collectives stay as they
  were. Off by default: no call."""
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize",
                      lambda *args, **kwargs: calls.append((args, kwargs)))
  config = mcr2_config.get_config("quick")
  assert not trainer_lib.initialize_distributed(config)
  assert calls == []
  before = jax.config.jax_cpu_collectives_implementation
  config.distributed.auto = True
  assert trainer_lib.initialize_distributed(config)
  assert calls == [((), {})]
  assert jax.config.jax_cpu_collectives_implementation == before


# --------------------------------------------- eval.num_clusters_candidates


def _np_coding_length(x, labels, eps_sq):
  """CPP's coding length of a partition (Ma et al. 2007, as CPP selects
  k): ``sum_j (n_j + d)/2 logdet(I + d/(eps_sq n_j) X_j^T X_j)
  - n_j log(n_j / n)``."""
  n, d = x.shape
  total = 0.0
  for j in np.unique(labels):
    xj = x[labels == j]
    nj = len(xj)
    total += (nj + d) / 2 * np.linalg.slogdet(
        np.eye(d) + d / (eps_sq * nj) * xj.T @ xj)[1] - nj * np.log(nj / n)
  return total


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_cluster_count_is_the_independent_coding_length_argmin():
  """CPP's ``eval.num_clusters_candidates`` through ``train.evaluate``
  (final): with cluster features in 4 orthogonal tight clusters, each
  candidate's coding length is CPP's formula (float64 NumPy, at the
  config's ``eps_sq``) of the features under the spectral partition of the
  membership at that k, and the estimate is the argmin of those lengths:
  the true 4."""
  config = cpp_config.get_config("quick")
  config.num_clusters = 4
  config.eval.num_clusters_candidates = (2, 4, 6)  # each k compiles (~1 s)
  method = train.validate_config(config, num_devices=1)
  rng = np.random.default_rng(0)
  centres = np.linalg.qr(rng.normal(size=(16, 16)))[0][:4]
  truth = np.arange(120) % 4
  c = _unit(centres[truth] + 0.15 * rng.normal(size=(120, 16)) / 4)
  # The coding length is of the feature head's outputs, the partition of
  # the cluster head's: two different embeddings of the same 4 clusters.
  z = _unit(centres[truth] @ rng.normal(size=(16, 16))
            + 0.3 * rng.normal(size=(120, 16)) / 4)
  c, z = c.astype(np.float32), z.astype(np.float32)
  outputs = {"features": z, "cluster_features": c}

  class Stub:  # a run whose model outputs are these features
    pass

  run = Stub()
  run.config, run.method, run.trainer = config, method, Stub()
  run.trainer.outputs = lambda dataset: (outputs, truth)
  ev = train.evaluate(run, None, final=True)

  gamma = mcr2.evaluation_membership(c, eta=config.objective.eta).gamma
  expected = {}
  for k in config.eval.num_clusters_candidates:
    labels = spectral.spectral_clustering(gamma, k, seed=config.seed)
    expected[k] = _np_coding_length(z.astype(np.float64), labels,
                                     config.objective.eps_sq)
  assert {int(k): v for k, v in ev["info"]["coding_length"].items()} == (
      pytest.approx(expected, rel=1e-4))
  best = min(expected, key=expected.get)
  assert ev["info"]["num_clusters_estimate"] == best == 4
  assert ev["scores"]["acc"] == 1.0


# ------------------------------------------- label-free model selection


@pytest.mark.slow  # (the fast tier stays under 3 minutes)
def test_model_selection_measures_against_numpy(tmp_path):
  """``cluster_entropy`` and ``coding_length_per_example`` in results.json
  (next to the cluster-count estimate's ``coding_length``), recomputed
  from the saved predictions by the formulas written out."""
  config = mcr2_config.get_config("quick")
  results = train.train_and_evaluate(config, str(tmp_path),
                                     show_progress=False)
  pred = np.load(tmp_path / "predictions.npz")
  clusters = pred["cluster"]
  p = np.bincount(clusters) / len(clusters)
  p = p[p > 0]
  assert results["cluster_entropy"] == pytest.approx(
      -np.sum(p * np.log(p)) / np.log(config.num_clusters), rel=1e-6)
  features = np.float64(pred["features"])
  assert results["coding_length_per_example"] == pytest.approx(
      _np_coding_length(features, clusters, config.objective.eps_sq)
      / len(clusters), rel=1e-3)
  # Methods that do not code their features report none.
  assert base.Method.coding_length(object(), {}, clusters) is None


@pytest.mark.parametrize("warmup", [0, 10])
def test_learning_rate_schedules_follow_their_formulas(warmup):
  """The rate at each step, against the written formulas: the cosine
  schedule rises linearly from 0 over ``warmup`` steps (none: step 0 is at
  the peak), then ``peak * (1 + cos(pi (t - w) / (N - w))) / 2``."""
  peak, num_steps = 3e-3, 100
  config = mcr2_config.get_config("quick").optimizer
  config.update(dict(learning_rate=peak, warmup_steps=warmup))
  steps = np.arange(num_steps + 1)
  config.schedule = "cosine"
  _, lr = trainer_lib.make_optimizer(config, num_steps)
  t = np.maximum(steps - warmup, 0) / (num_steps - warmup)
  expected = np.where(steps < warmup, peak * steps / max(warmup, 1),
                      peak * (1 + np.cos(np.pi * t)) / 2)
  np.testing.assert_allclose([float(lr(s)) for s in steps], expected,
                             rtol=1e-5, atol=1e-9)
  config.schedule = "constant"
  _, lr = trainer_lib.make_optimizer(config, num_steps)
  expected = np.minimum(peak * steps / max(warmup, 1), peak) if warmup \
      else np.full(steps.shape, peak)
  np.testing.assert_allclose([float(lr(s)) for s in steps], expected,
                             rtol=1e-5, atol=1e-9)
  _, lr = trainer_lib.make_optimizer(config, num_steps, learning_rate=1e-4)
  assert float(lr(0)) == float(lr(num_steps)) == np.float32(1e-4)


@pytest.mark.parametrize("name", ["cpp", "mcr2", "clam", "soft_kmeans",
                                  "icon", "swav"])
@pytest.mark.parametrize("arg", ["quick", "mnist,quick"])
def test_quick_stays_quick_under_every_preset(name, arg):
  """A preset's own lengths must not undo ``:quick`` (CPP's 28x28 preset
  once set 1,500 steps after it)."""
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"configs.{name}").get_config(arg)
  assert config.train.num_steps <= 30
  assert config.data.batch_size <= 64
  assert config.objective.get("warmup_steps", 0) < config.train.num_steps
