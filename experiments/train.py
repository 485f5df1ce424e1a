"""The training loop: set up, restore, train, evaluate, report.

``train_and_evaluate(config, workdir)`` trains ``config.method`` on
``config.data`` and writes to ``workdir``:

* ``metrics.jsonl`` and ``tensorboard/``: per ``log_every`` steps the loss
  and its terms, learning rate, steps/s and examples/s; per evaluation
  ACC/NMI/ARI/silhouette (``tensorboard --logdir runs/``);
* ``results.json``: final ``acc``, ``nmi``, ``ari``, ``silhouette``,
  ``final_loss``, ``num_steps``, ``seconds``, ``num_devices`` and more;
* ``predictions.npz``: ``index``, ``cluster``, ``features`` (and ``label``)
  of the evaluation set;
* ``loss.png``, ``confusion.png``, ``embedding.png``;
* ``checkpoints/``: orbax checkpoints every ``checkpoint_every`` steps and at
  the end. Started again with the same workdir, a run resumes from its
  latest checkpoint and ends with the same parameters and predictions as an
  uninterrupted run (the input order is a function of seed and step).

Failure handling (:class:`Session`, the loop's one exit path):

* killed at any moment (SIGKILL included, during a save too): the next run
  resumes from the last complete checkpoint (orbax renames a checkpoint
  into place only once it is complete); a damaged newest checkpoint is
  moved aside (to ``checkpoints_damaged/``, named in the log) and the
  previous one is used; any other restore failure raises
  ``checkpoint.CheckpointError`` with the workdir as it was;
* SIGTERM (what a TPU VM preemption or ``scancel`` sends) and Ctrl-C: the
  loop finishes the current step, saves a checkpoint and raises
  :class:`Preempted` (``experiments.main`` exits with status 143);
* a NaN/Inf loss or gradient: the step's update is never applied (checked
  on device), nothing non-finite is checkpointed, and with
  ``train.nonfinite='stop'`` training stops with :class:`NonFiniteLoss`
  naming the step and the loss terms; with ``'skip'`` it goes on;
* a config or data problem raises :class:`SetupError` before anything is
  compiled (``experiments.main`` prints it as one line and exits with 2);
* the workdir belongs to one run (:mod:`experiments.workdir`): its config
  is stored as ``config.json``, a command with a config that would make
  another run, or a second process writing the same workdir, raises
  ``workdir.WorkdirError`` before anything in it is touched (exit 2).

The loop knows nothing of any method: the method (:mod:`clustering.methods`)
says its phases, the inputs it needs and how it assigns clusters.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from typing import Callable

from absl import logging
from flax import nnx
import jax
import numpy as np

from clustering import checkpoint as checkpoint_lib
from clustering import data as data_lib
from clustering import methods
from clustering.algorithms import metrics as metrics_lib
from experiments import report
from experiments import trainer as trainer_lib
from experiments import workdir as workdir_lib

_NONFINITE = ("stop", "skip")


class SetupError(ValueError):
  """The config or the data cannot train; raised before any compilation."""


class NonFiniteLoss(FloatingPointError):
  """A step's loss or gradient was NaN/Inf with ``train.nonfinite='stop'``."""


class Preempted(Exception):
  """SIGTERM/SIGINT arrived; the finished steps are checkpointed."""

  def __init__(self, message: str, *, step: int, signum: int):
    super().__init__(message)
    self.step, self.signum = step, signum


# ------------------------------------------------------------- validation


def validate_config(config, *, num_devices: int) -> methods.Method:
  """Checks every field that needs no data; returns the method, built from
  the config once. Raises ``ValueError`` naming the field."""
  method = methods.build(config)
  data_lib.AugmentSpec.from_config(config.data.augment)
  methods.base.choice(config.data.get("neighbor_search"),
                      "data.neighbor_search", data_lib.NEIGHBOR_SEARCH)
  methods.base.choice(config.data.get("neighbor_pairs"),
                      "data.neighbor_pairs", data_lib.NEIGHBOR_PAIRS)
  share = config.data.get("self_pair_share", 0.0)
  if not 0.0 <= share <= 1.0:
    raise ValueError(f"data.self_pair_share must be in [0, 1]; got {share}.")
  if share and not method.num_neighbors:
    raise ValueError(
        f"data.self_pair_share={share} needs neighbour pairs, and "
        f"{config.method} with these objective settings trains on two views "
        "of each example (set objective.neighbors='input').")
  b, k = config.data.batch_size, config.num_clusters
  if not isinstance(k, int) or k < 2:
    raise ValueError(f"num_clusters must be an integer >= 2; got {k!r}.")
  if b < 2 or b % num_devices:
    raise ValueError(
        f"data.batch_size={b} (the global batch) must be >= 2 and divisible "
        f"by the number of devices, {num_devices}.")
  if b % jax.process_count():
    raise ValueError(f"data.batch_size={b} must be divisible by the number of "
                     f"processes, {jax.process_count()}.")
  t, o = config.train, config.optimizer
  for name in ("num_steps", "checkpoint_every", "eval_every", "log_every"):
    if int(t[name]) < 1:
      raise ValueError(f"train.{name} must be >= 1; got {t[name]}.")
  if not 0.0 <= t.ema_decay < 1.0:
    raise ValueError(f"train.ema_decay must be in [0, 1); got {t.ema_decay}.")
  for value, name, options in ((t.nonfinite, "train.nonfinite", _NONFINITE),
                               (o.name, "optimizer.name",
                                trainer_lib.OPTIMIZERS),
                               (o.schedule, "optimizer.schedule",
                                trainer_lib.SCHEDULES)):
    methods.base.choice(value, name, options)
  if not o.learning_rate > 0:
    raise ValueError(f"optimizer.learning_rate must be > 0; got "
                     f"{o.learning_rate}.")
  if not 0 <= o.warmup_steps < t.num_steps:
    raise ValueError(f"optimizer.warmup_steps={o.warmup_steps} must be in "
                     f"[0, train.num_steps={t.num_steps}).")
  last = method.phases[-1]
  if last.first_step >= t.num_steps:
    raise ValueError(
        f"objective.warmup_steps={last.first_step} leaves no clustering "
        f"steps in train.num_steps={t.num_steps}.")
  return method


def _check_sizes(config, train_ds, eval_ds) -> None:
  k, b = config.num_clusters, config.data.batch_size
  for what, ds in (("training", train_ds), ("evaluation", eval_ds)):
    if k > ds.num_examples:
      raise ValueError(f"num_clusters={k} exceeds the {ds.num_examples} "
                       f"{what} examples.")
  if b > train_ds.num_examples:
    raise ValueError(f"data.batch_size={b} exceeds the "
                     f"{train_ds.num_examples} training examples.")


# ----------------------------------------------------------------- set-up


@dataclasses.dataclass
class Run:
  """Everything a run needs, built and checked before compiling."""
  config: object
  method: methods.Method
  train_ds: data_lib.Dataset
  eval_ds: data_lib.Dataset
  batches: data_lib.TrainingBatches
  trainer: trainer_lib.Trainer

  @property
  def is_main(self) -> bool:
    return jax.process_index() == 0


def validated(config, devices=None) -> tuple[methods.Method, object]:
  """``(method, mesh)``: the config checked once against the devices it
  will run on; ``SetupError`` naming the field."""
  mesh = trainer_lib.make_mesh(devices)
  try:
    return validate_config(config, num_devices=mesh.size), mesh
  except ValueError as e:
    raise SetupError(str(e)) from e


def setup(config, method: methods.Method, mesh) -> Run:
  """Loads the data, mines neighbours, builds the method's model and the
  trainer for a validated config; ``SetupError`` for a data problem."""
  try:
    train_ds = data_lib.load(config.data, num_clusters=config.num_clusters)
    eval_ds = (data_lib.load(config.data, num_clusters=config.num_clusters,
                             split=config.data.eval_split)
               if config.data.eval_split else train_ds)
    _check_sizes(config, train_ds, eval_ds)
    stats = data_lib.input_stats(train_ds, seed=config.seed)
    neighbors = (data_lib.mine_neighbors(train_ds, method.num_neighbors,
                                         stats,
                                         search=config.data.neighbor_search,
                                         pairs=config.data.neighbor_pairs,
                                         seed=config.seed)
                 if method.num_neighbors else None)
    model = method.create_model(nnx.Rngs(params=config.seed),
                                train_ds.example_shape)
  except ValueError as e:
    raise SetupError(str(e)) from e
  batches = data_lib.TrainingBatches(
      train_ds, batch_size=config.data.batch_size, seed=config.seed,
      neighbors=neighbors, process_index=jax.process_index(),
      process_count=jax.process_count(),
      self_share=config.data.get("self_pair_share", 0.0))
  trainer = trainer_lib.Trainer(config, method, model, mesh, stats)
  logging.info("%s on %s: %d examples %s, %d parameters, %d device(s).",
               config.method, train_ds.name, train_ds.num_examples,
               train_ds.example_shape, trainer.num_parameters(), mesh.size)
  return Run(config, method, train_ds, eval_ds, batches, trainer)


def _meta(config, run: Run, step: int) -> dict:
  """What a checkpoint records of how its input order was made."""
  return dict(step=step, seed=config.seed, batch_size=config.data.batch_size,
              num_examples=run.train_ds.num_examples,
              input_order="grain MapDataset.range(n).shuffle(seed).repeat(); "
              "batch s = items [s*B, (s+1)*B)")


def restore(run: Run, ckpt: checkpoint_lib.Checkpointer) -> int:
  """Restores the latest checkpoint into ``run.trainer``; returns its step
  (0 without one). A checkpoint of another input order is a SetupError."""
  try:
    restored = ckpt.restore_latest(
        checkpoint_lib.abstract_like(run.trainer.state))
  except checkpoint_lib.CheckpointError:
    ckpt.close()
    raise
  if restored is None:
    return 0
  step, state, saved = restored
  expected = _meta(run.config, run, step)
  for key in ("seed", "batch_size", "num_examples"):
    if saved[key] != expected[key]:
      ckpt.close()
      raise SetupError(
          f"The checkpoint in {ckpt.directory} was written with {key}="
          f"{saved[key]}, this config has {expected[key]}; use a new "
          "--workdir.")
  run.trainer.state = state
  logging.info("Resumed from the checkpoint at step %d.", step)
  return int(step)


# ---------------------------------------------------------------- session


def _finite_mean(values) -> float:
  """Mean over the finite values (skipped steps' NaNs aside); NaN if none."""
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  return float(values.mean()) if values.size else float("nan")


class Session:
  """Everything a training run does besides stepping, with one exit path.

  Collects each step's device metrics; every ``log_every`` steps checks
  them (the non-finite policy) and writes one averaged record; saves every
  ``checkpoint_every`` steps; turns SIGTERM/SIGINT into :class:`Preempted`
  after the current step. Leaving the ``with`` block normally, by Ctrl-C or
  by a signal checks the pending steps and saves a final checkpoint; any
  exit closes the checkpointer and the metrics writer.
  """

  def __init__(self, run: Run, ckpt, writer: report.MetricsWriter, *,
               start_step: int, show_progress: bool):
    self.run, self.ckpt, self.writer = run, ckpt, writer
    self.config = run.config
    self.step = start_step
    self.pending: list[tuple[int, dict]] = []
    self.skipped: list[int] = []
    self.last_loss = float("nan")
    self.signum: int | None = None
    self.progress = report.Progress(self.config.train.num_steps, start_step,
                                    every=self.config.train.log_every,
                                    enabled=show_progress and run.is_main)
    self._t_log = time.perf_counter()
    self._previous_handlers = {}

  # -- signals: SIGTERM and SIGINT set a flag checked after each step (a
  # preemption notice gives seconds to minutes: enough to finish a step and
  # save). Outside the main thread signals cannot be caught.
  def _handler(self, signum, frame):
    del frame
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C stops at once
    self.signum = signum

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous_handlers = {
          sig: signal.signal(sig, self._handler)
          for sig in (signal.SIGTERM, signal.SIGINT)}
    return self

  def __exit__(self, exc_type, exc, tb):
    for sig, handler in self._previous_handlers.items():
      signal.signal(sig, handler)
    try:
      if exc_type is None or issubclass(exc_type, (KeyboardInterrupt,
                                                   Preempted)):
        self.check_finite()  # nothing non-finite is saved
        self.ckpt.save(self.step, self.run.trainer.state, self._meta(),
                       force=True)
    finally:
      self.ckpt.close()
    return False

  def _meta(self):
    return _meta(self.config, self.run, self.step)

  def check_finite(self):
    """Fetches the pending steps' metrics; raises NonFiniteLoss or records
    skipped steps (``train.nonfinite``)."""
    for done, m in self.pending:
      m = jax.device_get(m)
      if all(np.isfinite(m[k]) for k in ("loss", "grad_norm", "param_norm")):
        continue
      terms = ", ".join(f"{k}={float(v):.6g}" for k, v in m.items())
      if self.config.train.nonfinite == "skip":
        if done not in self.skipped:
          self.skipped.append(done)
          logging.warning("Step %d: non-finite loss, gradient or parameters "
                          "(%s); update skipped.", done, terms)
        continue
      last_good = self.ckpt.latest_step()
      raise NonFiniteLoss(
          f"Step {done}: the loss, gradient or updated parameters are not "
          f"finite ({terms}). Training stopped; "
          + (f"the last good checkpoint is step {last_good} in "
             f"{self.ckpt.directory}." if last_good is not None else
             "no checkpoint was written.")
          + " Lower optimizer.learning_rate, set optimizer.grad_clip, or "
          "set train.nonfinite='skip' to drop such steps.")

  def record(self, phase: str, metrics: dict) -> None:
    """Step ``self.step + 1`` is done; logs every ``log_every`` steps."""
    self.step += 1
    self.pending.append((self.step, metrics))
    t = self.config.train
    if self.step % t.log_every and self.step != t.num_steps:
      return
    self.check_finite()
    logged = [m for _, m in jax.device_get(self.pending)]
    now = time.perf_counter()
    rate = len(logged) / (now - self._t_log)
    # A window may span a phase change: each term is averaged over the
    # steps that have it.
    record = {k: _finite_mean([m[k] for m in logged if k in m])
              for k in logged[-1]}
    self.last_loss = float(logged[-1]["loss"])
    record.update(steps_per_sec=rate,
                  examples_per_sec=rate * self.config.data.batch_size,
                  learning_rate=self.run.trainer.learning_rate(self.step - 1))
    self.writer.write_scalars(self.step, record, phase=phase)
    self.pending, self._t_log = [], now
    self.progress.update(self.step, loss=record["loss"])

  def checkpoint_or_stop(self) -> None:
    """Saves when due; after a signal, raises :class:`Preempted` (the
    checkpoint is saved on the way out)."""
    if self.step % self.config.train.checkpoint_every == 0:
      self.check_finite()
      self.ckpt.save(self.step, self.run.trainer.state, self._meta())
    if self.signum is not None:
      name = signal.Signals(self.signum).name
      raise Preempted(
          f"{name} received: stopped after step {self.step} of "
          f"{self.config.train.num_steps} with a checkpoint in "
          f"{self.ckpt.directory}; run the same command again to resume.",
          step=self.step, signum=self.signum)


# ------------------------------------------------------------- evaluation


def evaluate(run: Run, dataset: data_lib.Dataset, *,
             final: bool = False) -> dict:
  """Cluster assignments of ``dataset`` by the method's rule, and their
  metrics. With ``final``, a method that can choose the number of clusters
  does so over ``config.eval.num_clusters_candidates`` (when given)."""
  outputs, labels = run.trainer.outputs(dataset)
  clusters, info = run.method.assign(outputs)
  candidates = tuple(run.config.eval.num_clusters_candidates)
  if final and candidates and run.method.estimates_num_clusters:
    estimate = run.method.estimate_num_clusters(outputs, candidates)
    info = dict(info, num_clusters_estimate=estimate["num_clusters"],
                coding_length={str(k): v for k, v in
                               estimate["coding_length"].items()})
  features = outputs["features"].reshape(len(clusters), -1)
  scores = metrics_lib.clustering_metrics(
      clusters if labels is None else labels, clusters, features)
  if labels is None:  # without labels only the silhouette means something
    scores.update(acc=None, nmi=None, ari=None)
  scores["num_clusters_used"] = int(np.unique(clusters).size)
  if final:
    info = dict(info, **model_selection(run, outputs, clusters))
  return dict(scores=scores, clusters=clusters, labels=labels,
              features=features, info=info)


def model_selection(run: Run, outputs: dict, clusters: np.ndarray) -> dict:
  """What tells a good run from a collapsed one without labels.

  ``cluster_entropy``: the entropy of the cluster sizes over ``log k``
  (1: equal sizes; a collapse drives it down); ``coding_length_per_example``:
  CPP's coding length of the features under the assignment over ``n``
  (nats; MLC/CPP only, else None; ``coding_length`` is the cluster-count
  estimate's, per candidate k). With ``silhouette`` (in the method's own space)
  and the final loss, in ``results.json``.
  """
  length = run.method.coding_length(outputs, clusters)
  return dict(
      cluster_entropy=metrics_lib.cluster_size_entropy(
          clusters, run.config.num_clusters),
      coding_length_per_example=(None if length is None
                                 else length / len(clusters)))


# -------------------------------------------------------------------- run


def train_and_evaluate(config, workdir: str, *,
                       on_step: Callable[[int], None] | None = None,
                       show_progress: bool = True, devices=None) -> dict:
  """Trains and evaluates ``config`` in ``workdir``; returns ``results``.

  Args:
    config: a method config (see ``configs/``).
    workdir: output directory; an existing checkpoint there is resumed.
    on_step: called with the number of completed steps after each step
      (tests use it to interrupt a run).
    show_progress: draw the progress bar.
    devices: the devices to train on (default: every device of every
      process); tests compare 1 device with 8.

  Returns:
    The dict written to ``results.json``.
  """
  t_start = time.perf_counter()
  method, mesh = validated(config, devices)
  # Claimed before anything reads or writes it: one run, one writer.
  with workdir_lib.Workdir(workdir, config,
                           is_main=jax.process_index() == 0) as claim:
    run = setup(config, method, mesh)
    claim.confirm_resolved({"data.neighbor_search":
                            data_lib.resolve_neighbor_search(
                                config.data.neighbor_search,
                                run.train_ds.num_examples)})
    ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                       every=config.train.checkpoint_every)
    start_step = restore(run, ckpt)
    writer = report.MetricsWriter(workdir, enabled=run.is_main,
                                  resume_step=start_step)
    with Session(run, ckpt, writer, start_step=start_step,
                 show_progress=show_progress) as session:
      for step in range(start_step, config.train.num_steps):
        phase = methods.phase_at(run.method.phases, step)
        if step == phase.first_step:
          run.trainer.start_phase(phase, run.train_ds)
        session.record(phase.name,
                       run.trainer.train_step(phase.name, *run.batches(step)))
        if on_step is not None:
          on_step(step + 1)
        session.checkpoint_or_stop()
        if (step + 1) % config.train.eval_every == 0 and (
            step + 1 < config.train.num_steps):
          ev = evaluate(run, run.eval_ds)
          writer.write_scalars(step + 1, ev["scores"], group="eval")
          logging.info("step %d eval: %s", step + 1, ev["scores"])
    results = _report(run, session, writer, workdir, start_step=start_step,
                      t_start=t_start)
  logging.info("results: %s", {k: results[k] for k in (
      "acc", "nmi", "ari", "silhouette", "seconds")})
  return results


def _report(run: Run, session: Session, writer: report.MetricsWriter,
            workdir: str, *, start_step: int, t_start: float) -> dict:
  """The final evaluation, written to ``results.json``, predictions and
  plots (by the main process); returns the results."""
  config, num_steps = run.config, run.config.train.num_steps
  ev = evaluate(run, run.eval_ds, final=True)
  results = dict(
      ev["scores"], **ev["info"],
      final_loss=_final_loss(session.last_loss, writer),
      num_steps=num_steps, skipped_steps=session.skipped,
      resumed_from=start_step, seconds=time.perf_counter() - t_start,
      num_devices=run.trainer.mesh.size, num_processes=jax.process_count(),
      method=config.method, data=run.train_ds.name,
      eval_data=run.eval_ds.name, num_examples=run.eval_ds.num_examples,
      num_parameters=run.trainer.num_parameters(),
      train_steps_per_sec=session.progress.steps_per_sec,
      backend=jax.default_backend())
  writer.write_scalars(num_steps, ev["scores"], group="eval")
  writer.close()
  if run.is_main:
    _write_outputs(workdir, run, results, ev, writer.read())
  return results


def _final_loss(last_loss: float, writer: report.MetricsWriter) -> float:
  """The last logged loss (of an earlier session for a finished run)."""
  if np.isfinite(last_loss):
    return last_loss
  records = [r for r in writer.read() if r.get("loss") is not None]
  return records[-1]["loss"] if records else float("nan")


def _write_outputs(workdir: str, run: Run, results: dict, ev: dict,
                   records: list[dict]) -> None:
  report.write_json(os.path.join(workdir, "results.json"), results)
  report.write_predictions(os.path.join(workdir, "predictions.npz"),
                           clusters=ev["clusters"], features=ev["features"],
                           labels=ev["labels"])
  report.plot_run(workdir, records, run.method.phases,
                  features=ev["features"], clusters=ev["clusters"],
                  labels=ev["labels"],
                  title=f"{run.config.method} on {run.eval_ds.name}")
