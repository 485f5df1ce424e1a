"""Self-labelling (clustering/methods/selflabel.py): the loss against its
formula, cutout, the head's first fit, the phase in the loop, and a toy
problem on which it must raise ACC."""

import dataclasses
import importlib
import types

import jax
from jax.test_util import check_grads
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from sklearn import datasets
from sklearn import linear_model

from clustering import methods
from clustering.methods import selflabel
from configs import clam
from configs import swav
from experiments import train


def numpy_selflabel_loss(clean, strong, threshold, prior_weight):
  """SCAN's weighted cross-entropy and the uniform prior, written out."""
  p = np.exp(clean - clean.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  q = np.exp(strong - strong.max(1, keepdims=True))
  q /= q.sum(1, keepdims=True)
  k = clean.shape[1]
  total, weight_sum = 0.0, 0.0
  for i in range(len(clean)):
    if p[i].max() < threshold:
      continue
    y = p[i].argmax()
    n_y = sum(1 for j in range(len(clean))
              if p[j].max() >= threshold and p[j].argmax() == y)
    total += -np.log(q[i, y]) / n_y
    weight_sum += 1.0 / n_y
  ce = total / weight_sum if weight_sum else 0.0
  mean_q = q.mean(0)
  kl = float(np.sum(1 / k * np.log((1 / k) / mean_q)))
  return ce + prior_weight * kl, ce, kl


@pytest.mark.parametrize("threshold", [0.9, pytest.param(0.5, marks=pytest.mark.slow),
                                       pytest.param(0.9999, marks=pytest.mark.slow)])
def test_loss_equals_the_formula(threshold):
  rng = np.random.default_rng(0)
  clean = rng.normal(size=(40, 5)) * 4
  clean[:25, 1] += 8  # one large confident class: the weights matter
  strong = clean + rng.normal(size=clean.shape) * 2
  loss, terms = selflabel.selflabel_loss(
      jnp.asarray(clean, jnp.float32), jnp.asarray(strong, jnp.float32),
      threshold=threshold, prior_weight=0.7)
  want, ce, kl = numpy_selflabel_loss(clean, strong, threshold, 0.7)
  np.testing.assert_allclose(float(loss), want, rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(float(terms["selflabel_ce"]), ce, rtol=2e-5,
                             atol=1e-6)
  np.testing.assert_allclose(float(terms["prior_kl"]), kl, rtol=1e-4,
                             atol=1e-6)
  p = jax.nn.softmax(jnp.asarray(clean), -1)
  np.testing.assert_allclose(float(terms["confident"]),
                             float(np.mean(np.max(p, -1) >= threshold)))


def test_class_weights_make_each_confident_class_count_equally():
  # Nine confident rows of class 0 and one of class 1; the strong view gets
  # class 0 right (CE ~0) and class 1 wrong (CE c): the weighted mean is
  # c / 2, where an unweighted mean would be c / 10.
  clean = np.full((10, 2), -20.0, np.float32)
  clean[:9, 0] = clean[9, 1] = 20.0
  strong = clean.copy()
  strong[9] = [3.0, 0.0]
  _, terms = selflabel.selflabel_loss(clean, strong, threshold=0.99,
                                      prior_weight=0.0)
  c = -np.log(1 / (1 + np.exp(3.0)))
  np.testing.assert_allclose(float(terms["selflabel_ce"]), c / 2, rtol=1e-4)


def test_no_confident_row_leaves_only_the_prior():
  clean = np.zeros((6, 3), np.float32)  # every p = 1/3
  strong = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
  loss, terms = selflabel.selflabel_loss(clean, strong, threshold=0.9,
                                         prior_weight=2.0)
  assert float(terms["selflabel_ce"]) == 0.0
  assert float(terms["confident"]) == 0.0
  np.testing.assert_allclose(float(loss), 2 * numpy_selflabel_loss(
      clean, strong, 0.9, 1.0)[2], rtol=1e-5)


@pytest.mark.slow
def test_gradients_match_finite_differences():
  rng = np.random.default_rng(2)
  clean = jnp.asarray(rng.normal(size=(12, 4)) * 3)
  strong = jnp.asarray(rng.normal(size=(12, 4)))
  with jax.enable_x64(True):
    f = lambda s: selflabel.selflabel_loss(
        clean.astype(jnp.float64), s, threshold=0.8, prior_weight=0.5)[0]
    check_grads(f, (strong.astype(jnp.float64),), order=2, modes=("rev",))
    # The targets carry no gradient (they are the model's own predictions).
    g = jax.grad(lambda c: selflabel.selflabel_loss(
        c, strong.astype(jnp.float64), threshold=0.8, prior_weight=0.5)[0])(
            clean.astype(jnp.float64))
    assert not np.any(np.asarray(g))


def test_mismatched_logits_are_a_value_error():
  with pytest.raises(ValueError, match=r"logits_clean and logits_strong.*"
                     r"\(4, 3\) and \(4, 2\)"):
    selflabel.selflabel_loss(jnp.zeros((4, 3)), jnp.zeros((4, 2)))


def test_cutout_zeroes_one_square_per_image():
  key = jax.random.key(3)
  images = jnp.ones((5, 8, 10, 2))
  out = np.asarray(selflabel.cutout(key, images, 0.5))
  centres = np.asarray(jax.random.uniform(key, (5, 2))) * [8, 10]
  rows, cols = np.arange(8) + 0.5, np.arange(10) + 0.5
  for b in range(5):
    square = ((np.abs(rows[:, None] - centres[b, 0]) < 2)
              & (np.abs(cols[None, :] - centres[b, 1]) < 2))
    np.testing.assert_array_equal(out[b, ..., 0], np.where(square, 0, 1))
    np.testing.assert_array_equal(out[b, ..., 1], out[b, ..., 0])
  assert selflabel.cutout(key, images, 0.0) is images


def test_fitted_head_is_scikit_learns_classifier():
  x, y = datasets.make_blobs(600, centers=4, n_features=6, random_state=0)
  y = np.where(y == 3, 5, y)  # cluster 3 empty, cluster 5 used
  head = selflabel.fit_head(x, y, 6, seed=0, max_examples=10_000)
  logits = ((x - head["mean"]) / head["scale"]) @ head["kernel"] + head["bias"]
  mean, std = x.mean(0), x.std(0) + 1e-6
  reference = linear_model.LogisticRegression(C=1.0, max_iter=500).fit(
      (x - mean) / std, y)
  np.testing.assert_array_equal(np.argmax(logits, 1),
                                reference.predict((x - mean) / std))
  assert np.all(logits[:, 3] < -20)  # the empty cluster is never predicted
  # Subsampled fit: still separates well-separated blobs.
  sub = selflabel.fit_head(x, y, 6, seed=0, max_examples=50)
  logits = ((x - sub["mean"]) / sub["scale"]) @ sub["kernel"] + sub["bias"]
  assert np.mean(np.argmax(logits, 1) == y) > 0.95


def test_fitted_head_for_two_clusters_and_one():
  x, y = datasets.make_blobs(200, centers=2, n_features=3, random_state=1)
  head = selflabel.fit_head(x, y, 3, seed=0, max_examples=1000)
  logits = ((x - head["mean"]) / head["scale"]) @ head["kernel"] + head["bias"]
  assert np.mean(np.argmax(logits, 1) == y) > 0.99
  one = selflabel.fit_head(x, np.full(200, 2), 3, seed=0, max_examples=1000)
  logits = ((x - one["mean"]) / one["scale"]) @ one["kernel"] + one["bias"]
  assert np.all(np.argmax(logits, 1) == 2)


@pytest.mark.parametrize("field,value,message", [
    ("threshold", 1.0, "selflabel.threshold must be in"),
    ("steps", 30, "would start self-labelling at step 0"),
    ("steps", 28, "not after the method's last phase \\('cluster' from step"),
    ("head_only", 1.0, "selflabel.head_only must be in"),
    ("bogus", 1, "selflabel.bogus is not a field"),
])
def test_bad_selflabel_configs_fail_before_training(field, value, message):
  config = clam.get_config("mnist,quick")  # phases: pretrain, cluster at 10
  config.selflabel.steps = 5
  config.selflabel[field] = value
  with pytest.raises(train.SetupError, match=message):
    train.validated(config)


def test_the_phase_is_appended_with_its_own_rate_and_inputs():
  config = swav.get_config("quick")
  config.selflabel.update(steps=10, learning_rate=3e-4)
  method = methods.build(config)
  assert [(p.name, p.first_step) for p in method.phases] == [
      ("train", 0), ("selflabel", 20)]
  assert method.phases[-1].learning_rate == 3e-4
  assert method.phases[-1].needs_outputs
  spec = method.input_spec_for("selflabel")
  assert (spec.num_views, spec.clean) == (1, True)
  assert method.input_spec_for("train") == method.inner.input_spec
  config.selflabel.steps = 0
  assert type(methods.build(config)).__name__ == "SwAV"


@pytest.mark.slow
def test_agreement_with_the_method_matches_cluster_ids_first():
  """The head and the method's rule may number the same clusters apart
  (CPP's spectral cut numbers them afresh): 5 of 6 rows agree once the ids
  are matched, whatever the numbering."""
  head = np.array([0, 0, 1, 1, 2, 2])
  inner_rule = np.array([2, 2, 0, 0, 1, 0])  # head's 0->2, 1->0, 2->1
  fake = types.SimpleNamespace(inner=types.SimpleNamespace(
      assign=lambda outputs: (inner_rule, {"sinkhorn_error": 0.0})))
  outputs = {"selflabel_logits": np.eye(3)[head],
             "selflabel_started": np.ones(6, bool)}
  clusters, info = selflabel.SelfLabelled.assign(fake, outputs)
  np.testing.assert_array_equal(clusters, head)
  assert info == {"sinkhorn_error": 0.0,
                  "selflabel_agreement": pytest.approx(5 / 6)}
  outputs["selflabel_started"] = np.zeros(6, bool)  # before the phase
  clusters, info = selflabel.SelfLabelled.assign(fake, outputs)
  np.testing.assert_array_equal(clusters, inner_rule)
  assert info == {"sinkhorn_error": 0.0}


def test_self_labelling_raises_acc_on_a_toy_problem(tmp_path):
  """Three sheared Gaussian blobs (scikit-learn's anisotropic example), on
  which nearest-prototype assignment (ClAM on the inputs) cuts the long
  clusters: a linear head trained on the confident assignments moves its
  boundaries between the blobs."""
  x, y = datasets.make_blobs(1500, centers=3, random_state=170)
  x = (x @ np.array([[0.6, -0.6], [-0.4, 0.8]])).astype(np.float32)
  np.save(tmp_path / "x.npy", x)
  np.save(tmp_path / "y.npy", y)
  accs = {}
  for steps in (0, 300):
    config = clam.get_config("pixels")
    config.num_clusters = 3
    config.data.update(name="npy", path=str(tmp_path / "x.npy"),
                       labels_path=str(tmp_path / "y.npy"))
    config.train.update(num_steps=200 + steps, eval_every=10_000,
                        checkpoint_every=10_000)
    # Only a linear head learns here (no backbone): a linear model's rate.
    config.selflabel.update(steps=steps, learning_rate=1e-2)
    accs[steps] = train.train_and_evaluate(
        config, str(tmp_path / str(steps)), show_progress=False)["acc"]
  assert accs[0] < 0.75, accs  # the prototypes cut the sheared blobs
  assert accs[300] > accs[0] + 0.04, accs


@pytest.mark.parametrize("preset", ["", "quick", "mnist", "mnist,quick"])
@pytest.mark.parametrize("recipe", ["mcr2", "cpp", "swav", "soft_kmeans",
                                    "clam", "icon"])
def test_every_recipe_preset_is_a_valid_config(recipe, preset):
  # A preset that turns self-labelling on must keep it valid when shrunk.
  config = importlib.import_module(f"configs.{recipe}").get_config(preset)
  train.validated(config)


def test_clams_28x28_preset_ends_with_500_self_labelling_steps():
  method = methods.build(clam.get_config("mnist"))
  names = [(p.name, p.first_step) for p in method.phases]
  assert names[-1] == ("selflabel", 500) and names[-2][1] < 500
  assert "selflabel" not in [p.name for p in methods.build(
      clam.get_config("")).phases]
