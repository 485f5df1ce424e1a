"""Self-labelling: any method's last phase, in the manner of SCAN and SPICE.

Van Gansbeke et al., "SCAN: Learning to Classify Images without Labels"
(ECCV 2020) and Niu et al., "SPICE: Semantic Pseudo-labeling for Image
Clustering" (TIP 2022) end their clustering with a phase that trains on the
model's own confident predictions. With ``selflabel.steps > 0`` every method
ends so (:class:`SelfLabelled` wraps it):

1. at the phase's first step the method assigns the training set by its own
   rule (spectral clustering for MLC/CPP, nearest prototype for DKM/ClAM,
   argmax of the head for SwAV/I-Con), and a linear classifier on the
   method's ``features`` is fitted to those assignments (multinomial
   logistic regression on standardised features, :func:`fit_head`): the
   self-label head starts as the method's partition, with confidences;
2. each step, the head's predictions on the clean batch whose probability
   is ``>= threshold`` are targets for a cross-entropy on a strongly
   augmented view (the run's augmentation plus cutout), weighted per class
   by the inverse of its count among the batch's targets, plus a uniform
   prior on the view's mean prediction that keeps clusters from emptying
   (:func:`selflabel_loss`); the backbone and the head are trained;
3. the assignment is the head's argmax.

Nothing here looks at labels; ``threshold`` and the prior are SCAN's.
"""

from __future__ import annotations

import dataclasses

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from clustering import models
from clustering.algorithms import metrics
from clustering.methods import base

__all__ = ["Hparams", "selflabel_loss", "cutout", "fit_head", "SelfLabelled",
           "PHASE"]

PHASE = "selflabel"


def selflabel_loss(logits_clean: jax.Array, logits_strong: jax.Array, *,
                   threshold: float = 0.99, prior_weight: float = 1.0
                   ) -> tuple[jax.Array, dict]:
  r"""SCAN's self-labelling loss, with a uniform prior against collapse.

  With ``p = softmax(logits_clean)`` (no gradient), targets
  ``y_i = argmax p_i`` for the confident rows ``m_i = [max p_i >=
  threshold]``, ``n_c`` the confident rows of class ``c`` and
  ``w_i = m_i / n_{y_i}``:

  .. math::
    L = \frac{\sum_i w_i \mathrm{CE}(\mathrm{logits\_strong}_i, y_i)}
             {\sum_i w_i}
        + \lambda\, \mathrm{KL}(u \,\|\, \bar q),
    \quad \bar q = \frac{1}{B}\sum_i \mathrm{softmax}(\mathrm{logits\_strong}_i)

  The class weights are SCAN's (each confident class counts equally, so a
  large cluster cannot absorb the others); ``u`` is uniform over the ``k``
  clusters. No confident row: the cross-entropy is 0.

  Args:
    logits_clean: ``[B, k]`` the head on the un-augmented batch.
    logits_strong: ``[B, k]`` the head on a strongly augmented view.
    threshold: confidence a target needs (SCAN: 0.99).
    prior_weight: ``lambda``.

  Returns:
    ``(loss, {'selflabel_ce', 'prior_kl', 'confident', 'classes_confident'})``,
    ``confident`` the fraction of rows with a target, ``classes_confident``
    the fraction of the ``k`` classes that have one.
  """
  if logits_clean.shape != logits_strong.shape or logits_clean.ndim != 2:
    raise ValueError("logits_clean and logits_strong must both be [B, k]; got "
                     f"{logits_clean.shape} and {logits_strong.shape}.")
  k = logits_clean.shape[-1]
  probs = jax.nn.softmax(jax.lax.stop_gradient(logits_clean), axis=-1)
  targets = jnp.argmax(probs, axis=-1)
  mask = (jnp.max(probs, axis=-1) >= threshold).astype(logits_strong.dtype)
  counts = jnp.sum(jax.nn.one_hot(targets, k) * mask[:, None], axis=0)
  weights = mask / jnp.maximum(counts[targets], 1.0)
  log_q = jax.nn.log_softmax(logits_strong, axis=-1)
  ce = -jnp.take_along_axis(log_q, targets[:, None], axis=-1)[:, 0]
  ce = jnp.sum(weights * ce) / jnp.maximum(jnp.sum(weights), 1e-12)
  mean_q = jnp.mean(jnp.exp(log_q), axis=0)
  prior_kl = -jnp.log(k) - jnp.mean(jnp.log(mean_q + 1e-12))
  return ce + prior_weight * prior_kl, {
      "selflabel_ce": ce, "prior_kl": prior_kl, "confident": jnp.mean(mask),
      "classes_confident": jnp.mean((counts > 0).astype(jnp.float32))}


def cutout(key: jax.Array, images: jax.Array, fraction: float) -> jax.Array:
  """Zeroes one random square of side ``fraction * min(h, w)`` in each of
  ``images [B, h, w, c]`` (standardised inputs: 0 is the mean), as SCAN's
  strong augmentation does; the square may cross the border."""
  if not fraction:
    return images
  b, h, w = images.shape[:3]
  side = fraction * min(h, w)
  centres = jax.random.uniform(key, (b, 2)) * jnp.array([h, w])
  rows = jnp.arange(h)[None, :, None] + 0.5
  cols = jnp.arange(w)[None, None, :] + 0.5
  inside = ((jnp.abs(rows - centres[:, 0, None, None]) < side / 2)
            & (jnp.abs(cols - centres[:, 1, None, None]) < side / 2))
  return jnp.where(inside[..., None], 0.0, images).astype(images.dtype)


def fit_head(features: np.ndarray, labels: np.ndarray, num_clusters: int, *,
             seed: int, max_examples: int) -> dict[str, np.ndarray]:
  """A linear classifier of ``labels`` on ``features [n, d]``.

  Multinomial logistic regression (scikit-learn, L2 penalty ``C = 1``) on
  standardised features, fitted on a seeded subset of at most
  ``max_examples`` rows. A cluster the method left empty gets a bias of
  -30 (never predicted at first).

  Returns:
    ``{'kernel' [d, k], 'bias' [k], 'mean' [d], 'scale' [d]}``: logits are
    ``((f - mean) / scale) @ kernel + bias``.
  """
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  features = np.asarray(features, np.float32).reshape(len(labels), -1)
  rng = np.random.default_rng(seed)
  rows = (rng.choice(len(labels), max_examples, replace=False)
          if len(labels) > max_examples else np.arange(len(labels)))
  x, y = features[rows], np.asarray(labels)[rows]
  mean, scale = x.mean(0), x.std(0) + 1e-6
  kernel = np.zeros((x.shape[1], num_clusters), np.float32)
  bias = np.full((num_clusters,), -30.0, np.float32)
  present = np.unique(y)
  if len(present) == 1:  # nothing to separate: that cluster everywhere
    bias[present[0]] = 0.0
  else:
    fit = LogisticRegression(C=1.0, max_iter=500, random_state=seed).fit(
        (x - mean) / scale, y)
    coef = fit.coef_ if len(present) > 2 else np.concatenate(
        [-fit.coef_, fit.coef_]) / 2
    intercept = fit.intercept_ if len(present) > 2 else np.concatenate(
        [-fit.intercept_, fit.intercept_]) / 2
    kernel[:, fit.classes_] = coef.T
    bias[fit.classes_] = intercept
  return dict(kernel=kernel, bias=bias, mean=mean.astype(np.float32),
              scale=scale.astype(np.float32))


@dataclasses.dataclass(frozen=True)
class Hparams:
  """``config.selflabel`` (see ``configs/default.py``)."""
  steps: int = 0
  threshold: float = 0.99
  prior_weight: float = 1.0
  learning_rate: float = 1e-4
  cutout: float = 0.5
  fit_examples: int = 20000
  head_only: float = 0.2

  def __post_init__(self):
    if self.steps < 0:
      raise ValueError(f"selflabel.steps must be >= 0; got {self.steps}.")
    if not 0 < self.threshold < 1:
      raise ValueError("selflabel.threshold must be in (0, 1); got "
                       f"{self.threshold}.")
    if self.prior_weight < 0 or not 0 <= self.cutout < 1:
      raise ValueError("selflabel.prior_weight must be >= 0 and "
                       "selflabel.cutout in [0, 1); got "
                       f"{self.prior_weight} and {self.cutout}.")
    if not 0 <= self.head_only < 1:
      raise ValueError("selflabel.head_only must be in [0, 1); got "
                       f"{self.head_only}.")
    if not self.learning_rate > 0 or self.fit_examples < 2:
      raise ValueError("selflabel.learning_rate must be > 0 and "
                       "selflabel.fit_examples >= 2; got "
                       f"{self.learning_rate} and {self.fit_examples}.")


class SelfLabelled(base.Method):
  """``inner``'s phases, then :data:`PHASE` for the last ``hp.steps`` of
  ``num_steps`` steps; the model is ``inner``'s with a self-label head
  (:class:`clustering.models.SelfLabelModel`)."""

  def __init__(self, inner: base.Method, hparams: Hparams, *,
               num_steps: int):
    super().__init__(hparams, num_clusters=inner.num_clusters,
                     model=inner.model_spec, seed=inner.seed)
    self.inner = inner
    self.first_step = num_steps - hparams.steps
    last_inner = inner.phases[-1]
    if not last_inner.first_step < self.first_step:
      raise ValueError(
          f"selflabel.steps={hparams.steps} of train.num_steps={num_steps} "
          f"would start self-labelling at step {self.first_step}, not after "
          f"the method's last phase ({last_inner.name!r} from step "
          f"{last_inner.first_step}).")
    self.estimates_num_clusters = inner.estimates_num_clusters

  @property
  def phases(self):
    return self.inner.phases + [base.Phase(PHASE, self.first_step,
                                           needs_outputs=True,
                                           learning_rate=self.hp.learning_rate)]

  @property
  def input_spec(self):
    return self.inner.input_spec

  def input_spec_for(self, phase):
    if phase != PHASE:
      return self.inner.input_spec_for(phase)
    return base.InputSpec(num_views=1, clean=True,
                          standardize=self.inner.input_spec.standardize)

  @property
  def num_neighbors(self):
    return self.inner.num_neighbors

  def create_model(self, rngs, example_shape):
    inner = self.inner.create_model(rngs, example_shape)
    dim = self._feature_dim(inner, example_shape)
    return models.SelfLabelModel(inner, dim, self.num_clusters, rngs=rngs)

  def _feature_dim(self, model, example_shape) -> int:
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct((2,) + tuple(example_shape), jnp.float32)
    out = jax.eval_shape(
        lambda s, x: self.inner.outputs(nnx.merge(graphdef, s), x)[
            "features"], state, x)
    return int(np.prod(out.shape[1:]))

  def start_phase(self, phase, model, features):
    if phase != PHASE:
      return self.inner.start_phase(phase, model.inner, features)
    outputs = features  # the phase asked for every output
    labels, _ = self.inner.assign(outputs)
    head = fit_head(outputs["features"], labels, self.num_clusters,
                    seed=self.seed, max_examples=self.hp.fit_examples)
    model.set_head(**head)
    logits = model.head_logits(jnp.asarray(outputs["features"]))
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))
    agree = float(np.mean(np.argmax(probs, -1) == labels))
    logging.info(
        "Self-labelling from step %d: the head reproduces %.3f of the "
        "method's assignment; %.3f of the examples are confident (p >= %g).",
        self.first_step, agree,
        float(np.mean(probs.max(-1) >= self.hp.threshold)), self.hp.threshold)

  def loss(self, model, inputs, key, step, phase):
    if phase != PHASE:
      return self.inner.loss(model.inner, inputs, key, step, phase)
    strong = inputs.views[0]
    if strong.ndim == 4:
      strong = cutout(key, strong, self.hp.cutout)
    both = jnp.concatenate([inputs.clean, strong])
    features = self.inner.embed(model.inner, both, train=True)
    # The head first learns the strong views on a fixed backbone: fitted
    # on clean features, it is too poor on strong views at first for its
    # gradients to be worth sending into the backbone.
    head_only = step < self.first_step + int(self.hp.head_only * self.hp.steps)
    features = jnp.where(head_only, jax.lax.stop_gradient(features),
                         features)
    logits = model.head_logits(features.reshape(both.shape[0], -1))
    b = inputs.clean.shape[0]
    return selflabel_loss(logits[:b], logits[b:], threshold=self.hp.threshold,
                          prior_weight=self.hp.prior_weight)

  def outputs(self, model, x):
    out = dict(self.inner.outputs(model.inner, x))
    out["selflabel_logits"] = model.head_logits(
        out["features"].reshape(x.shape[0], -1))
    out["selflabel_started"] = jnp.broadcast_to(model.started[...],
                                                (x.shape[0],))
    return out

  def assign(self, outputs):
    """The head's argmax once self-labelling has started (``info``: the
    fraction of examples on which it agrees with the method's own rule, a
    label-free measure of how far self-labelling moved the partition);
    the method's own rule before.

    The agreement matches the two partitions' cluster ids one to one first
    (Hungarian): a rule such as MLC/CPP's spectral cut of Gamma numbers its
    clusters afresh at every evaluation.
    """
    inner, info = self.inner.assign(outputs)
    if not outputs["selflabel_started"][0]:
      return inner, info
    clusters = np.argmax(outputs["selflabel_logits"], axis=-1).astype(np.int32)
    return clusters, dict(info, selflabel_agreement=float(
        metrics.hungarian_accuracy(inner, clusters)))

  def coding_length(self, outputs, clusters):
    return self.inner.coding_length(outputs, clusters)

  def estimate_num_clusters(self, outputs, candidates):
    return self.inner.estimate_num_clusters(outputs, candidates)
