"""The contract between a clustering method and the training loop.

A method is four things, each written once in its module and used by every
entry point (the training loop, the estimators, the tour, the notebooks):

* its **loss**, a pure function of arrays with keyword-only hyperparameters
  returning ``(loss, terms)`` (e.g. :func:`clustering.methods.mcr2.mlc_loss`);
* its **model** (:mod:`clustering.models`);
* its **assignment rule**, evaluation outputs to cluster ids;
* its **phases**, as data.

The :class:`Method` subclass ties them to the loop. The loop knows nothing
of any method: it builds the inputs the method's :class:`InputSpec` asks
for (views, clean batch, neighbour partners), steps, calls a phase's start
hook with the training set's features when the :class:`Phase` asks for
them, checkpoints, evaluates through ``outputs`` and ``assign``, and
reports. Hyperparameters are read from ``config.objective`` once, outside
traced code, into the method's frozen :attr:`Method.Hparams` dataclass.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

from flax import nnx
import jax
import numpy as np

from clustering import models
from clustering import specs
from clustering.algorithms.kmeans import kmeans as fit_kmeans
from clustering.data.pipeline import Inputs
from clustering.data.pipeline import InputSpec

__all__ = ["Phase", "phase_at", "Method", "Inputs", "InputSpec",
           "init_prototypes", "check_num_heads", "mean_over_heads",
           "head_choice", "head_losses_output", "view_batch"]


class Phase(NamedTuple):
  """A training phase.

  Attributes:
    name: e.g. ``'warmup'``, ``'cluster'``; the loss may differ per phase.
    first_step: the step it starts at.
    needs_features: the start hook wants the training set's ``features``
      (``outputs(...)['features']``), computed by the loop.
    needs_outputs: the start hook wants every output of the training set
      (the dict ``outputs`` returns) in place of ``features``.
    learning_rate: the phase trains at this constant rate with an optimizer
      whose state (Adam's moments and count) starts anew at its first step:
      a new objective, whose gradients the old moments do not describe.
      ``None``: the run's schedule, which then ends where such a phase
      begins.
  """
  name: str
  first_step: int
  needs_features: bool = False
  needs_outputs: bool = False
  learning_rate: float | None = None


def phase_at(phases: list[Phase], step: int) -> Phase:
  """The phase that ``step`` belongs to."""
  return [p for p in phases if p.first_step <= step][-1]


def choice(value, name: str, options) -> None:
  if value not in options:
    raise ValueError(f"{name} must be one of {tuple(options)}; got "
                     f"{value!r}.")


def check_num_heads(num_heads: int) -> None:
  if num_heads < 1:
    raise ValueError(f"objective.num_heads must be >= 1; got {num_heads}.")


def mean_over_heads(model: models.HeadLosses,
                    per_head: list[tuple[jax.Array, dict]], name: str
                    ) -> tuple[jax.Array, dict]:
  """SCAN's several heads: each trained on its own loss, the shared
  backbone on their mean.

  Args:
    model: its running head losses take this step's (traced).
    per_head: ``(loss, terms)`` of each head, ``terms[name]`` its loss.
    name: the loss term's name.

  Returns:
    ``(mean loss, terms)``: ``{name}_head{h}`` each head's loss, ``name``
    and every other term their mean over heads.
  """
  if len(per_head) == 1:
    return per_head[0]
  losses = jax.numpy.stack([loss for loss, _ in per_head])
  model.record_head_losses(losses)
  terms = {f"{name}_head{h}": loss for h, loss in enumerate(losses)}
  terms.update({key: jax.numpy.mean(jax.numpy.stack(
      [t[key] for _, t in per_head])) for key in per_head[0][1]})
  terms[name] = jax.numpy.mean(losses)
  return jax.numpy.mean(losses), terms


def head_choice(outputs: dict) -> dict:
  """``assign``'s report on several heads: the chosen one (``head``, the
  lowest running loss) and every head's running loss; ``{}`` for one.
  ``outputs['head_losses']`` is ``[m, H]`` (the same row for every
  example)."""
  losses = np.asarray(outputs["head_losses"][0], np.float64)
  if losses.shape[0] == 1:
    return {}
  return {"head": int(np.argmin(losses)),
          "head_losses": [float(v) for v in losses]}


def head_losses_output(model: models.HeadLosses, n: int) -> jax.Array:
  """Every head's running loss as an ``[n, H]`` per-example output."""
  return jax.numpy.broadcast_to(model.head_loss[...], (n, model.num_heads))


def init_prototypes(model: models.PrototypeModel, features: np.ndarray, *,
                    seed: int, n_init: int = 10) -> None:
  """DKM/ClAM's start of clustering: prototypes at k-means centroids
  (``n_init`` restarts) of the training set's ``features [n, dim]``, and
  ``fill`` at their mean."""
  k = model.prototypes.shape[0]
  fit = fit_kmeans(np.asarray(features, np.float32), k, n_init=n_init,
                   seed=seed)
  model.prototypes[...] = jax.numpy.asarray(fit.centroids)
  model.fill[...] = jax.numpy.asarray(np.mean(features, axis=0), np.float32)


class Method:
  """A clustering method, as the training loop sees it.

  Subclasses set :attr:`Hparams` and implement ``create_model``, ``loss``,
  ``outputs`` and ``assign``; they may override ``phases``,
  ``input_spec``, ``start_phase`` and the optional capabilities below.
  """

  Hparams: ClassVar[type]
  #: Capability: choosing the number of clusters (``estimate_num_clusters``).
  estimates_num_clusters: ClassVar[bool] = False

  def __init__(self, hparams, *, num_clusters: int, model: models.ModelSpec,
               seed: int):
    self.hp = hparams
    self.num_clusters = num_clusters
    self.model_spec = model
    self.seed = seed

  @classmethod
  def from_config(cls, config) -> "Method":
    """Reads ``config.objective`` and ``config.model`` once (``ValueError``
    for an unknown, missing or out-of-range field)."""
    hp = specs.from_config(cls.Hparams, config.objective, "objective")
    return cls(hp, num_clusters=config.num_clusters,
               model=models.ModelSpec.from_config(config.model),
               seed=config.seed)

  # ------------------------------------------------------------- recipe
  @property
  def phases(self) -> list[Phase]:
    return [Phase("train", 0)]

  @property
  def input_spec(self) -> InputSpec:
    return InputSpec()

  def input_spec_for(self, phase: str) -> InputSpec:
    """The inputs the loss of ``phase`` needs (default: ``input_spec``;
    ``input_spec.standardize`` holds for every phase and evaluation)."""
    del phase
    return self.input_spec

  @property
  def num_neighbors(self) -> int:
    """Capability: train on neighbour pairs. ``k > 0``: the loop mines each
    training example's ``k`` nearest neighbours in the input space before
    step 0, and view 1 of every anchor is one of them. By default read
    from the hparams' ``neighbors == 'input'`` and ``num_neighbors``."""
    if getattr(self.hp, "neighbors", "none") != "input":
      return 0
    return self.hp.num_neighbors

  def create_model(self, rngs: nnx.Rngs, example_shape) -> nnx.Module:
    """The method's model for inputs of ``example_shape`` (e.g. ``(28, 28,
    1)`` or ``(d,)``)."""
    raise NotImplementedError

  def start_phase(self, phase: str, model: nnx.Module,
                  features: np.ndarray | None) -> None:
    """Hook at the first step of ``phase``; may modify ``model`` in place.
    ``features [n, ...]`` of the training set when the phase asked (the
    outputs dict with ``needs_outputs``)."""
    del phase, model, features

  def loss(self, model: nnx.Module, inputs: Inputs, key: jax.Array,
           step: jax.Array, phase: str) -> tuple[jax.Array, dict]:
    """``(loss, {term: scalar})`` of a global batch (traced)."""
    raise NotImplementedError

  # --------------------------------------------------------- evaluation
  def outputs(self, model: nnx.Module, x: jax.Array) -> dict[str, Any]:
    """Per-example outputs of standardised inputs ``x`` (traced);
    ``'features'`` is always there (silhouette, the embedding plot)."""
    raise NotImplementedError

  def embed(self, model: nnx.Module, x: jax.Array, *,
            train: bool) -> jax.Array:
    """``outputs(model, x)['features']`` (``[m, ...]``), with BatchNorm in
    training mode when ``train`` (traced): what a head on the method's
    features (self-labelling) is trained on."""
    raise NotImplementedError

  def assign(self, outputs: dict) -> tuple[np.ndarray, dict]:
    """``(cluster ids [m] int32, info)`` by the method's rule; ``info``
    reports how the assignment went (e.g. Sinkhorn's convergence)."""
    raise NotImplementedError

  def coding_length(self, outputs: dict, clusters: np.ndarray
                    ) -> float | None:
    """CPP's coding length (nats) of the features under ``clusters``,
    for methods that code their features (MLC/CPP); ``None`` elsewhere."""
    del outputs, clusters
    return None

  def estimate_num_clusters(self, outputs: dict, candidates) -> dict:
    """``{'num_clusters': k, 'coding_length': {k: nats}}`` when
    :attr:`estimates_num_clusters`."""
    raise NotImplementedError(f"{type(self).__name__} does not choose the "
                              "number of clusters.")


def view_batch(model_fn, views: jax.Array):
  """Applies ``model_fn`` to ``[V, B, ...]`` views as one ``[V*B, ...]``
  batch and restores the view axis on every output.

  BatchNorm then sees all views together, as in SwAV/CPP's multi-crop code.
  """
  v, b = views.shape[:2]
  out = model_fn(views.reshape((v * b,) + views.shape[2:]))
  return jax.tree.map(lambda o: o.reshape((v, b) + o.shape[1:]), out)
