"""MCR^2 clustering with a doubly stochastic membership: MLC and CPP.

Ding et al., "Unsupervised Manifold Linearizing and Clustering" (ICCV 2023,
MLC) and Chu et al., "Image Clustering via the Principle of Rate Reduction in
the Age of Pretrained Models" (ICLR 2024, CPP). The model
(:class:`clustering.models.MCR2Model`) is a backbone with a feature head
``Z`` and a cluster head ``C`` (both L2-normalised). Recipe:

1. ``warmup``: self-supervised total coding rate on augmented views,
   ``-R(mean_v Z_v) - lambda * cos(Z_1, Z_2)`` (:func:`tcr_loss`);
2. at the first clustering step the cluster head is initialised as a copy of
   the feature head (MLC's one-shot initialisation: the first memberships
   then come from the learned features instead of noise);
3. ``cluster``: :func:`mlc_loss`, ``-gamma_r R(Z) + R_c(Z, Gamma)
   + w/2 ||Gamma||_F^2`` with ``Gamma = doubly_stochastic_membership(C)``
   (``[B, B]``, each column a cluster); CPP's ``w`` is 0.05, MLC's 0.

Assignment (:func:`assign`): spectral clustering on the evaluation set's
``Gamma`` (:func:`evaluation_membership`); above ``membership_anchors``
samples, on the ``Gamma`` of that many anchors, every sample joining the
cluster that holds most of its row of the plan against them
(:func:`extend_to_all`), so memory grows with ``n``, not ``n^2``. The
number of clusters can be chosen by CPP's coding length
(:func:`estimate_num_clusters`).

Many clusters: the recipes' ``eta`` is set for 10 clusters and sharpened
for ``k`` (:func:`membership_eta`, ``objective.eta_scaling``), and the
anchors grow to ``anchors_per_cluster * k``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

import objectives as O
from clustering import models
from clustering.algorithms import blocks
from clustering.algorithms import spectral
from clustering.methods import base

__all__ = ["Hparams", "mlc_loss", "tcr_loss", "Membership",
           "AnchoredMembership", "evaluation_membership",
           "anchored_membership", "membership_of", "extend_to_all", "assign",
           "estimate_num_clusters", "init_cluster_head", "membership_eta",
           "MCR2"]

DIFFERENTIATION = ("cpp", "unroll", "implicit")
ETA_SCALING = ("num_clusters", "none")
NEIGHBORS = ("none", "input")
#: The number of clusters the recipes' ``eta`` were set for.
ETA_REFERENCE_CLUSTERS = 10
#: The fewest anchors per cluster of the anchored assignment: a cluster with
#: one or two anchors is easily merged by the anchors' cut.
ANCHORS_PER_CLUSTER = 8


def membership_eta(eta: float, num_clusters: int, *,
                   reference_clusters: int = ETA_REFERENCE_CLUSTERS) -> float:
  r"""The membership's entropy for ``num_clusters``, as sharp as ``eta`` is
  for ``reference_clusters``.

  With ``k`` equal clusters whose cluster features agree within a cluster
  and are orthogonal across, a row of ``Gamma`` puts
  ``p = e^{1/eta} / (e^{1/eta} + k - 1)`` of its mass on its own cluster,
  whatever the batch size: at a fixed ``eta`` the blocks blur as ``k``
  grows (CPP's 0.175 gives ``p`` = 0.97 at 10 clusters, 0.75 at 100 and
  0.23 at 1,000), and training then merges clusters into sharper blocks.
  Keeping ``p`` gives ``1/eta_k = 1/eta + log((k - 1) / (k_ref - 1))``.
  Below ``reference_clusters`` ``eta`` is kept (``p`` only grows).

  Args:
    eta: the entropy at ``reference_clusters`` clusters.
    num_clusters: ``k``.
    reference_clusters: ``k_ref``.

  Returns:
    ``eta_k`` (``eta`` when ``k <= k_ref``).
  """
  if not eta > 0 or reference_clusters < 2:
    raise ValueError(f"eta={eta} must be > 0 and reference_clusters="
                     f"{reference_clusters} >= 2.")
  if num_clusters <= reference_clusters:
    return float(eta)
  return float(1.0 / (1.0 / eta + np.log((num_clusters - 1)
                                         / (reference_clusters - 1))))


def tcr_loss(z_views: jax.Array, *, eps_sq: float,
             invariance_weight: float) -> tuple[jax.Array, dict]:
  """MLC's warm-up: ``-R(mean_v Z_v) - lambda mean cos(Z_v, Z_w)``.

  Args:
    z_views: ``[V, B, z]`` unit-norm embeddings of ``V >= 2`` views.
    eps_sq: squared distortion of ``R``.
    invariance_weight: ``lambda``.

  Returns:
    ``(loss, {'tcr': loss})``.
  """
  loss = O.total_coding_rate_loss(z_views, eps_sq=eps_sq,
                                  invariance_weight=invariance_weight)
  return loss, {"tcr": loss}


def mlc_loss(z_views: jax.Array, c_views: jax.Array, *, eps_sq: float,
             eta: float, gamma_r: float = 1.0, gamma_in: float = 1.0,
             sinkhorn_iters: int = 5, differentiation: str = "cpp",
             frobenius_weight: float = 0.0,
             cluster_invariance_weight: float = 0.0
             ) -> tuple[jax.Array, dict]:
  r"""MLC/CPP's clustering loss on a batch.

  ``Z`` and ``C`` are the view means of the feature and cluster heads,
  re-normalised to unit rows; ``Gamma = doubly_stochastic_membership(C)``
  (``[B, B]``, column ``j`` the soft cluster of sample ``j``);

  .. math::
    L = -\gamma_r R(Z; \gamma_{in}) + R_c(Z, \Gamma)
        + \frac{w}{2} \|\Gamma\|_F^2 - \lambda_c \cos(Z_1, Z_2)

  Conventions (the reference code's): ``eps_sq`` is what the repos call
  ``eps``; CPP's Frobenius term is ``w/2 * sum(Gamma**2)`` over the batch's
  ``Gamma``, not divided by the batch size; the membership follows CPP's
  code with ``differentiation='cpp'`` (5 half-steps, no gradient through
  ``v``) and MLC's with ``'implicit'``.

  Args:
    z_views: ``[V, B, z]`` feature-head outputs of ``V >= 1`` views.
    c_views: ``[V, B, z]`` cluster-head outputs.
    eps_sq: squared distortion.
    eta: entropy of the membership's Sinkhorn.
    gamma_r: weight of ``R``.
    gamma_in: scale inside ``R``'s logdet.
    sinkhorn_iters: half-steps for 'cpp'/'unroll'.
    differentiation: 'cpp', 'unroll' or 'implicit'.
    frobenius_weight: ``w`` (CPP: 0.05).
    cluster_invariance_weight: ``lambda_c``, agreement of views 1 and 2
      (needs ``V >= 2``).

  Returns:
    ``(loss, {'R', 'Rc', 'gamma_fro2', 'cosine'})``.
  """
  z = models.l2_normalize(jnp.mean(z_views, axis=0))
  c = models.l2_normalize(jnp.mean(c_views, axis=0))
  gamma = O.doubly_stochastic_membership(c, eta=eta, num_iters=sinkhorn_iters,
                                         differentiation=differentiation)
  rate = O.coding_rate(z, eps_sq=eps_sq, gamma=gamma_in)
  rate_c = O.compression_rate(z, gamma, eps_sq=eps_sq)
  frobenius = jnp.sum(jnp.square(gamma))
  cosine = (jnp.mean(jnp.sum(z_views[0] * z_views[1], axis=-1))
            if z_views.shape[0] > 1 else jnp.zeros((), z.dtype))
  loss = (-gamma_r * rate + rate_c + 0.5 * frobenius_weight * frobenius
          - cluster_invariance_weight * cosine)
  return loss, {"R": rate, "Rc": rate_c, "gamma_fro2": frobenius,
                "cosine": cosine}


# ------------------------------------------------------------- assignment

# The evaluation membership: Sinkhorn run to this L1 marginal error.
MEMBERSHIP_TOL = 1e-5
MEMBERSHIP_MAX_ITERS = 2000


class Membership(NamedTuple):
  """``Gamma`` of an evaluation set and how its Sinkhorn ended.

  Attributes:
    gamma: ``[n, n]`` host array, ``n P`` for the OT plan ``P`` on
      ``|C C^T|`` at ``eta``, with its diagonal set to 0.
    converged: the marginal error reached :data:`MEMBERSHIP_TOL`.
    iterations: Sinkhorn iterations run.
    error: the final L1 marginal error.
    log_weights: ``[n]`` the plan's column potentials ``g`` (units of
      ``1/eta``): a new sample ``x``'s row of ``Gamma`` against these
      samples is ``softmax_j(|c_x . c_j| / eta + g_j)``.
  """
  gamma: np.ndarray
  converged: bool
  iterations: int
  error: float
  log_weights: np.ndarray | None = None


@jax.jit
def _membership(c, eta):
  out = O.sinkhorn(jnp.abs(c @ c.T), epsilon=eta, tol=MEMBERSHIP_TOL,
                   max_iters=MEMBERSHIP_MAX_ITERS)
  gamma = c.shape[0] * out.plan
  return (gamma * (1.0 - jnp.eye(c.shape[0], dtype=gamma.dtype)),
          out.converged, out.iterations, out.error, out.g)


def evaluation_membership(c, *, eta: float) -> Membership:
  """MLC/CPP's membership of a whole evaluation set, to convergence.

  The training membership's Sinkhorn (:func:`mlc_loss`) stops after a few
  half-steps; here it runs to :data:`MEMBERSHIP_TOL`. The diagonal (each
  sample with itself, always the largest affinity) carries no clustering
  information and is zeroed before spectral clustering.

  Args:
    c: ``[n, p]`` unit-norm cluster features.
    eta: the Sinkhorn entropy.
  """
  c = models.l2_normalize(jnp.asarray(c, jnp.float32))
  gamma, converged, iterations, error, g = _membership(c, float(eta))
  membership = Membership(np.asarray(gamma), bool(converged), int(iterations),
                          float(error), np.asarray(g))
  if not membership.converged:
    logging.warning("The evaluation membership's Sinkhorn stopped after %d "
                    "iterations at error %.2e > %.0e; the assignment may be "
                    "off (a larger eta converges faster).",
                    membership.iterations, membership.error, MEMBERSHIP_TOL)
  return membership


class AnchoredMembership(NamedTuple):
  """``Gamma`` of ``m`` anchors, the rows every other sample is cut by.

  Attributes:
    anchors: ``[m]`` sorted indices of the anchors in the evaluation set.
    membership: the anchors' dense :class:`Membership` (``[m, m]``).
  """
  anchors: np.ndarray
  membership: Membership


def anchored_membership(c, *, eta: float, num_anchors: int,
                        seed: int = 0) -> AnchoredMembership:
  """The membership of ``num_anchors`` samples of ``c`` drawn uniformly
  (seeded, without replacement): ``O(m^2)`` memory whatever ``n`` is."""
  n = np.shape(c)[0]
  anchors = np.sort(np.random.default_rng(seed).choice(
      n, size=min(int(num_anchors), n), replace=False))
  return AnchoredMembership(
      anchors, evaluation_membership(np.asarray(c)[anchors], eta=eta))


@jax.jit
def _vote_block(c, row_ids, anchor_c, log_weights, anchor_onehot, eta):
  """``[b]``: the anchor cluster holding most of each row of ``Gamma``."""
  del row_ids
  c = models.l2_normalize(c)
  logits = jnp.abs(c @ anchor_c.T) / eta + log_weights[None, :]
  rows = jax.nn.softmax(logits, axis=1)  # [b, m], each row sums to 1
  return jnp.argmax(rows @ anchor_onehot, axis=1).astype(jnp.int32)


def extend_to_all(c, anchored: AnchoredMembership, anchor_labels,
                  num_clusters: int, *, eta: float, block_size: int = 4096,
                  devices=None) -> np.ndarray:
  """Cluster ids ``[n]`` of every row of ``c`` from the anchors' partition.

  A sample's row of the Sinkhorn plan against the anchors is fixed by the
  plan's column potentials (the row marginal sets its own potential):
  ``Gamma_xj = softmax_j(|c_x . c_j| / eta + g_j)``. The sample joins the
  anchor cluster that holds the most of that row, so the cut of the
  anchors' ``Gamma`` is carried to the rest without an ``n x n`` matrix.
  Rows go in blocks of ``block_size``, each sharded over ``devices``
  (:func:`clustering.algorithms.blocks.map_row_blocks`): ``O(block_size
  m)`` memory, ``O(n m p)`` time.
  """
  c = np.asarray(c, np.float32)
  anchor_c = models.l2_normalize(jnp.asarray(c[anchored.anchors]))
  onehot = jax.nn.one_hot(jnp.asarray(anchor_labels), num_clusters,
                          dtype=jnp.float32)
  return blocks.map_row_blocks(
      _vote_block, c, anchor_c,
      np.asarray(anchored.membership.log_weights, np.float32), onehot,
      np.float32(eta), block_size=block_size, devices=devices)


def _info(membership: Membership) -> dict:
  return dict(membership_converged=membership.converged,
              membership_iterations=membership.iterations,
              membership_error=membership.error)


def assign(c, num_clusters: int, *, eta: float, seed: int = 0,
           num_anchors: int | None = None,
           membership: Membership | AnchoredMembership | None = None
           ) -> tuple[np.ndarray, dict]:
  """MLC/CPP's assignment: spectral clustering of ``Gamma`` of ``c``.

  Up to ``num_anchors`` samples (``None``: any ``n``) the whole ``[n, n]``
  ``Gamma`` is cut, as the reference code does. Above, ``num_anchors``
  samples drawn with ``seed`` are cut and every sample joins the cluster
  holding most of its ``Gamma`` row against them (:func:`extend_to_all`):
  memory ``O(m^2 + n)`` instead of ``O(n^2)``.

  Args:
    c: ``[n, p]`` cluster features (the cluster head's outputs).
    num_clusters: ``k``.
    eta: the Sinkhorn entropy.
    seed: the anchors' draw and spectral clustering's k-means seed.
    num_anchors: the largest ``n`` cut densely, and the anchors above it.
    membership: :func:`membership_of` ``c`` when already known.

  Returns:
    ``(labels [n] int32, info)``, info with the membership's
    ``membership_converged``, ``membership_iterations`` and
    ``membership_error``, ``membership_eta`` (``eta``) and
    ``membership_anchors`` (``m``, or ``n`` when dense).
  """
  if membership is None:
    membership = membership_of(c, eta=eta, num_anchors=num_anchors,
                               seed=seed)
  return _cut(c, membership, num_clusters, eta=eta, seed=seed)


def membership_of(c, *, eta: float, num_anchors: int | None, seed: int = 0
                  ) -> Membership | AnchoredMembership:
  """The dense membership up to ``num_anchors`` samples, else anchored."""
  if num_anchors is None or np.shape(c)[0] <= num_anchors:
    return evaluation_membership(c, eta=eta)
  return anchored_membership(c, eta=eta, num_anchors=num_anchors, seed=seed)


def _cut(c, membership, num_clusters, *, eta, seed):
  if isinstance(membership, Membership):
    labels = spectral.spectral_clustering(membership.gamma, num_clusters,
                                          seed=seed)
    return labels, dict(_info(membership), membership_eta=float(eta),
                        membership_anchors=len(membership.gamma))
  anchor_labels = spectral.spectral_clustering(membership.membership.gamma,
                                               num_clusters, seed=seed)
  labels = extend_to_all(c, membership, anchor_labels, num_clusters, eta=eta)
  return labels, dict(_info(membership.membership), membership_eta=float(eta),
                      membership_anchors=len(membership.anchors))


def estimate_num_clusters(membership: Membership | AnchoredMembership, c, z,
                          candidates, *, eta: float, eps_sq: float,
                          seed: int = 0) -> dict:
  """CPP's model selection: the cluster count with the shortest code.

  For each ``k`` in ``candidates`` the membership of the cluster features
  ``c`` is cut into ``k`` clusters as :func:`assign` does (densely, or on
  its anchors and carried to every sample) and the features ``z`` are coded
  under that partition (:func:`objectives.coding_length`, ``O(n p^2)``);
  the shortest total coding length wins.

  Returns:
    ``{'num_clusters': best k, 'coding_length': {k: nats}}``.
  """
  z = jnp.asarray(z)
  lengths = {}
  for k in candidates:
    labels, _ = _cut(c, membership, int(k), eta=eta, seed=seed)
    lengths[int(k)] = float(O.coding_length(z, jnp.asarray(labels),
                                            eps_sq=eps_sq,
                                            num_clusters=int(k)))
  return dict(num_clusters=min(lengths, key=lengths.get),
              coding_length=lengths)


# ---------------------------------------------------------------- method


def init_cluster_head(model: models.MCR2Model) -> None:
  """MLC's one-shot initialisation: the cluster head becomes a copy of the
  (warmed-up) feature head, so the first memberships come from the learned
  features instead of noise."""
  nnx.update(model.cluster_head, nnx.state(model.feature_head))


@dataclasses.dataclass(frozen=True)
class Hparams:
  """``config.objective`` of MLC/CPP (see ``configs/mcr2.py``)."""
  warmup_steps: int
  eps_sq: float
  gamma_in: float
  gamma_r: float
  eta: float
  sinkhorn_iters: int
  differentiation: str
  num_views: int
  invariance_weight: float
  cluster_invariance_weight: float
  frobenius_weight: float
  init_cluster_head: bool
  membership_anchors: int = 4096
  anchors_per_cluster: int = ANCHORS_PER_CLUSTER
  # 'num_clusters': ``eta`` is the entropy at 10 clusters and the run uses
  # ``membership_eta(eta, num_clusters)``; 'none': ``eta`` as given.
  eta_scaling: str = "num_clusters"
  # 'input': view 1 of every example is one of its ``num_neighbors``
  # nearest training examples in the input space (augmented as usual);
  # 'none': both views are the example itself.
  neighbors: str = "none"
  num_neighbors: int = 5

  def __post_init__(self):
    base.choice(self.differentiation, "objective.differentiation",
                DIFFERENTIATION)
    base.choice(self.eta_scaling, "objective.eta_scaling", ETA_SCALING)
    base.choice(self.neighbors, "objective.neighbors", NEIGHBORS)
    if self.neighbors == "input" and (self.num_neighbors < 1
                                      or self.num_views < 2):
      raise ValueError("objective.neighbors='input' needs "
                       "objective.num_neighbors >= 1 and objective.num_views"
                       f" >= 2; got {self.num_neighbors} and "
                       f"{self.num_views}.")
    if not (self.eps_sq > 0 and self.eta > 0):
      raise ValueError("objective.eps_sq and objective.eta must be > 0; got "
                       f"{self.eps_sq} and {self.eta}.")
    if self.num_views < 1 or (self.warmup_steps and self.num_views < 2):
      raise ValueError(f"objective.num_views={self.num_views}: the TCR "
                       "warm-up needs at least 2 views.")
    if self.membership_anchors < 2 or self.anchors_per_cluster < 0:
      raise ValueError("objective.membership_anchors must be >= 2 and "
                       "objective.anchors_per_cluster >= 0; got "
                       f"{self.membership_anchors} and "
                       f"{self.anchors_per_cluster}.")


class MCR2(base.Method):
  """MLC (``method='mcr2'``) and CPP (``method='cpp'``)."""

  Hparams = Hparams
  estimates_num_clusters = True

  @property
  def num_anchors(self) -> int:
    """Evaluation sets above this size are cut on this many anchors:
    ``max(membership_anchors, anchors_per_cluster * num_clusters)``."""
    return max(self.hp.membership_anchors,
               self.hp.anchors_per_cluster * self.num_clusters)

  @property
  def eta(self) -> float:
    """The membership's entropy for this run's number of clusters (training
    and assignment alike)."""
    if self.hp.eta_scaling == "none":
      return self.hp.eta
    return membership_eta(self.hp.eta, self.num_clusters)

  @property
  def phases(self):
    if not self.hp.warmup_steps:
      return [base.Phase("cluster", 0)]
    return [base.Phase("warmup", 0), base.Phase("cluster",
                                                self.hp.warmup_steps)]

  @property
  def input_spec(self):
    return base.InputSpec(num_views=self.hp.num_views)

  def create_model(self, rngs, example_shape):
    spec = self.model_spec
    encoder = models.make_encoder(spec, example_shape, rngs=rngs)
    z_dim = spec.z_dim_for(encoder.out_dim)
    if z_dim != spec.z_dim:
      logging.info("z_dim %d (model.z_dim %d capped at the backbone's %d "
                   "outputs)", z_dim, spec.z_dim, encoder.out_dim)
    return models.MCR2Model(encoder, head_hidden=spec.head_hidden,
                            z_dim=z_dim, rngs=rngs)

  def start_phase(self, phase, model, features):
    del features
    if phase == "cluster":
      logging.info("membership eta %.4f for %d clusters (objective.eta %g, "
                   "eta_scaling %r)", self.eta, self.num_clusters,
                   self.hp.eta, self.hp.eta_scaling)
      if self.hp.init_cluster_head:
        init_cluster_head(model)

  def loss(self, model, inputs, key, step, phase):
    del key, step
    hp = self.hp
    z, c = base.view_batch(functools.partial(model, train=True),
                           inputs.views)
    if phase == "warmup":
      return tcr_loss(z, eps_sq=hp.eps_sq,
                      invariance_weight=hp.invariance_weight)
    return mlc_loss(z, c, eps_sq=hp.eps_sq, eta=self.eta, gamma_r=hp.gamma_r,
                    gamma_in=hp.gamma_in, sinkhorn_iters=hp.sinkhorn_iters,
                    differentiation=hp.differentiation,
                    frobenius_weight=hp.frobenius_weight,
                    cluster_invariance_weight=hp.cluster_invariance_weight)

  def embed(self, model, x, *, train):
    return model(x, train=train)[0]

  def outputs(self, model, x):
    z, c = model(x, train=False)
    return {"features": z, "cluster_features": c}

  def _membership(self, outputs) -> Membership | AnchoredMembership:
    # The final evaluation assigns and then estimates k on the same
    # outputs: one Sinkhorn serves both.
    c = outputs["cluster_features"]
    if getattr(self, "_last", (None,))[0] is not c:
      self._last = (c, membership_of(c, eta=self.eta,
                                     num_anchors=self.num_anchors,
                                     seed=self.seed))
    return self._last[1]

  def assign(self, outputs):
    return assign(outputs["cluster_features"], self.num_clusters,
                  eta=self.eta, seed=self.seed,
                  membership=self._membership(outputs))

  def coding_length(self, outputs, clusters):
    return float(O.coding_length(jnp.asarray(outputs["features"]),
                                 jnp.asarray(clusters), eps_sq=self.hp.eps_sq,
                                 num_clusters=self.num_clusters))

  def estimate_num_clusters(self, outputs, candidates):
    return estimate_num_clusters(
        self._membership(outputs), outputs["cluster_features"],
        outputs["features"], candidates, eta=self.eta,
        eps_sq=self.hp.eps_sq, seed=self.seed)
