"""Several cluster heads (I-Con) or prototype sets (SwAV) on one backbone,
the lowest running loss assigning."""

import json

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clustering import models
from clustering.methods import icon
from clustering.methods import swav
from configs import icon as icon_config
from configs import swav as swav_config
from experiments import train


def make_model(num_heads=3):
  return models.IConModel(models.Identity((6,)), head_hidden=(), num_clusters=4,
                          rngs=nnx.Rngs(0), num_heads=num_heads)


def test_running_head_losses_are_bias_corrected_exponential_means():
  model = make_model()
  rng = np.random.default_rng(0)
  steps = rng.uniform(0, 5, size=(7, 3))
  for losses in steps:
    model.record_head_losses(jnp.asarray(losses, jnp.float32), decay=0.9)
  w = 0.9 ** np.arange(6, -1, -1)  # the newest step weighs most
  want = (w[:, None] * steps).sum(0) / w.sum()
  np.testing.assert_allclose(np.asarray(model.head_loss[...]), want,
                             rtol=1e-5)
  # The first step counts fully (no pull towards the zero start).
  fresh = make_model()
  fresh.record_head_losses(jnp.array([1.0, 2.0, 3.0]))
  np.testing.assert_allclose(np.asarray(fresh.head_loss[...]), [1, 2, 3],
                             rtol=1e-6)


def test_the_head_with_the_lowest_running_loss_gives_the_logits():
  model = make_model()
  x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 6)), jnp.float32)
  _, every = model.all_logits(x)
  for best in range(3):
    losses = jnp.full((3,), 2.0).at[best].set(1.0)
    model.head_loss[...] = losses
    np.testing.assert_array_equal(np.asarray(model(x)[1]),
                                  np.asarray(every[best]))
  assert not np.allclose(every[0], every[1])  # distinct initialisations


@pytest.mark.slow
def test_loss_is_the_mean_of_each_heads_own_loss():
  config = icon_config.get_config("quick")
  config.objective.update(num_heads=3, neighbors="batch")  # kNN of the batch
  method = icon.ICon.from_config(config)
  model = method.create_model(nnx.Rngs(0), (8, 8, 1))
  views = jnp.asarray(np.random.default_rng(2).normal(size=(2, 16, 8, 8, 1)),
                      jnp.float32)
  inputs = icon.base.Inputs(views, None)
  loss, terms = method.loss(model, inputs, jax.random.key(0), 0, "train")
  _, logits = model.all_logits(views.reshape(32, 8, 8, 1), train=True)
  flat = views.reshape(32, -1)
  each = [float(icon.icon_clustering_loss(
      l, alpha_p=config.objective.alpha_p, alpha_q=config.objective.alpha_q,
      knn_inputs=flat, knn_k=config.objective.knn_k,
      knn_walks=config.objective.knn_walks)[0]) for l in logits]
  np.testing.assert_allclose(float(loss), np.mean(each), rtol=1e-5)
  np.testing.assert_allclose([float(terms[f"kl_head{h}"]) for h in range(3)],
                             each, rtol=1e-5)
  # The step recorded them.
  np.testing.assert_allclose(np.asarray(model.head_loss[...]), each,
                             rtol=1e-5)


# SwAV: several prototype sets on one projector, chosen the same way.


def swav_method(num_heads=3):
  config = swav_config.get_config("quick")
  config.objective.num_heads = num_heads
  return swav.SwAV.from_config(config), config


def test_swav_scores_come_from_the_prototype_set_with_the_lowest_loss():
  method, _ = swav_method()
  model = method.create_model(nnx.Rngs(0), (8, 8, 1))
  x = jnp.asarray(np.random.default_rng(3).normal(size=(6, 8, 8, 1)),
                  jnp.float32)
  z = np.asarray(model(x), np.float64)
  protos = np.asarray(model.prototypes[...], np.float64)
  protos /= np.linalg.norm(protos, axis=-1, keepdims=True)
  for best in range(3):
    model.head_loss[...] = jnp.full((3,), 2.0).at[best].set(1.0)
    out = method.outputs(model, x)
    np.testing.assert_allclose(np.asarray(out["scores"]), z @ protos[best].T,
                               rtol=1e-4, atol=1e-5)
    clusters, info = method.assign(jax.tree.map(np.asarray, out))
    np.testing.assert_array_equal(clusters,
                                  np.argmax(z @ protos[best].T, axis=-1))
    assert info == {"head": best, "head_losses": [2.0 if h != best else 1.0
                                                  for h in range(3)]}
  assert not np.allclose(protos[0], protos[1])  # distinct initialisations


def test_swav_loss_is_the_mean_of_each_prototype_sets_own_loss():
  method, config = swav_method()
  model = method.create_model(nnx.Rngs(0), (8, 8, 1))
  views = jnp.asarray(np.random.default_rng(4).normal(size=(2, 16, 8, 8, 1)),
                      jnp.float32)
  step = config.objective.freeze_prototypes_steps  # prototypes trained
  loss, terms = method.loss(model, swav.base.Inputs(views, None),
                            jax.random.key(0), step, "train")
  z = np.asarray(model(views.reshape(32, 8, 8, 1), train=True))
  z = z.reshape(2, 16, -1)
  protos = np.asarray(model.prototypes[...], np.float64)
  protos /= np.linalg.norm(protos, axis=-1, keepdims=True)
  each = [float(swav.swav_loss(
      jnp.asarray(z @ p.T, jnp.float32), epsilon=config.objective.epsilon,
      sinkhorn_iters=config.objective.sinkhorn_iters,
      temperature=config.objective.temperature)[0]) for p in protos]
  assert len(set(np.round(each, 4))) == 3  # the sets differ
  np.testing.assert_allclose(float(loss), np.mean(each), rtol=1e-4)
  np.testing.assert_allclose(
      [float(terms[f"swapped_ce_head{h}"]) for h in range(3)], each,
      rtol=1e-4)
  np.testing.assert_allclose(np.asarray(model.head_loss[...]), each,
                             rtol=1e-4)
  # Each set's gradient comes from its own loss only.
  grads = nnx.grad(lambda m: method.loss(
      m, swav.base.Inputs(views, None), jax.random.key(0), step,
      "train")[0])(model)
  one = nnx.grad(lambda m: swav.swav_loss(
      swav.base.view_batch(lambda v: m(v, train=True), views)
      @ m.unit_prototypes()[1].T, epsilon=config.objective.epsilon,
      sinkhorn_iters=config.objective.sinkhorn_iters,
      temperature=config.objective.temperature)[0] / 3)(model)
  np.testing.assert_allclose(np.asarray(grads.prototypes[...][1]),
                             np.asarray(one.prototypes[...][1]),
                             rtol=1e-4, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("method_config, head_term", [
    (icon_config, "kl"), (swav_config, "swapped_ce")])
def test_a_run_records_the_chosen_head_and_every_heads_loss(
    method_config, head_term, tmp_path):
  config = method_config.get_config("quick")
  config.objective.num_heads = 3
  results = train.train_and_evaluate(config, str(tmp_path),
                                     show_progress=False)
  assert len(results["head_losses"]) == 3
  assert results["head"] == int(np.argmin(results["head_losses"]))
  records = [json.loads(l) for l in
             (tmp_path / "metrics.jsonl").read_text().splitlines()]
  last = [r for r in records if f"{head_term}_head0" in r][-1]
  assert last["loss"] == pytest.approx(
      np.mean([last[f"{head_term}_head{h}"] for h in range(3)]), rel=1e-5)


@pytest.mark.parametrize("method_config", [icon_config, swav_config])
def test_num_heads_must_be_positive_for_every_method_with_heads(
    method_config):
  config = method_config.get_config("quick")
  config.objective.num_heads = 0
  cls = icon.ICon if method_config is icon_config else swav.SwAV
  with pytest.raises(ValueError, match="objective.num_heads must be >= 1"):
    cls.from_config(config)


# I-Con's over-clustering heads (IIC): trained on the same pairs, never
# assigning.


def overclustering_icon(factor=3, num_heads=2):
  config = icon_config.get_config("quick")
  config.objective.update(num_heads=num_heads, overcluster_factor=factor)
  return icon.ICon.from_config(config), config


def test_overclustering_heads_have_factor_times_the_clusters():
  method, config = overclustering_icon(factor=3, num_heads=2)
  model = method.create_model(nnx.Rngs(0), (8, 8, 1))
  x = jnp.zeros((5, 8, 8, 1))
  h, logits = model.all_logits(x)
  assert logits.shape == (2, 5, config.num_clusters)
  assert model.overcluster_logits(h).shape == (2, 5, 3 * config.num_clusters)
  # Without over-clustering the model's state is the one it always had, so
  # earlier checkpoints restore.
  plain = icon.ICon.from_config(icon_config.get_config("quick")).create_model(
      nnx.Rngs(0), (8, 8, 1))
  paths = {p for p, _ in nnx.to_flat_state(nnx.state(plain))}
  assert not any("overcluster" in str(p) for p in paths)


def test_overclustering_loss_adds_the_mean_of_its_heads_and_never_assigns():
  method, config = overclustering_icon(factor=3, num_heads=2)
  model = method.create_model(nnx.Rngs(0), (8, 8, 1))
  views = jnp.asarray(np.random.default_rng(5).normal(size=(2, 16, 8, 8, 1)),
                      jnp.float32)
  loss, terms = method.loss(model, icon.base.Inputs(views, None),
                            jax.random.key(0), 0, "train")
  flat = views.reshape(32, 8, 8, 1)
  h, logits = model.all_logits(flat, train=True)
  over_logits = model.overcluster_logits(h, train=True)
  hp = config.objective

  def one(l):
    return float(icon.icon_clustering_loss(
        l, alpha_p=hp.alpha_p, alpha_q=hp.alpha_q)[0])

  main = [one(l) for l in logits]
  over = [one(l) for l in over_logits]
  np.testing.assert_allclose(float(loss), np.mean(main) + np.mean(over),
                             rtol=1e-5)
  np.testing.assert_allclose(float(terms["kl"]), np.mean(main), rtol=1e-5)
  np.testing.assert_allclose(float(terms["kl_overcluster"]), np.mean(over),
                             rtol=1e-5)
  # Only the k-way heads compete for the assignment.
  np.testing.assert_allclose(np.asarray(model.head_loss[...]), main,
                             rtol=1e-5)
  out = jax.tree.map(np.asarray, method.outputs(model, flat))
  clusters, info = method.assign(out)
  assert clusters.max() < config.num_clusters
  assert info["head"] == int(np.argmin(main))


def test_overclustering_factor_must_not_be_negative():
  config = icon_config.get_config("quick")
  config.objective.overcluster_factor = -1
  with pytest.raises(ValueError, match="objective.overcluster_factor"):
    icon.ICon.from_config(config)
