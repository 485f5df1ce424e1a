"""The training loop: data-parallel, checkpointed, resumable, evaluated.

``train_and_evaluate(config, workdir)`` trains ``config.method`` on
``config.data`` and writes to ``workdir``:

* ``metrics.jsonl``: per ``log_every`` steps the loss and its terms,
  learning rate, steps/s and examples/s; per evaluation ACC/NMI/ARI/silhouette;
* ``results.json``: final ``acc``, ``nmi``, ``ari``, ``silhouette``,
  ``final_loss``, ``num_steps``, ``seconds``, ``num_devices`` and more;
* ``predictions.npz``: ``index``, ``cluster``, ``features`` (and ``label``) of the
  evaluation set;
* ``loss.png``, ``confusion.png``, ``embedding.png``;
* ``checkpoints/``: orbax checkpoints every ``checkpoint_every`` steps and at
  the end. Started again with the same workdir, a run resumes from its
  latest checkpoint and ends with the same parameters and predictions as an
  uninterrupted run (the input order is a function of seed and step).

Failure handling:

* killed at any moment (SIGKILL included, during a save too): the next run
  resumes from the last complete checkpoint (orbax renames a checkpoint
  into place only once it is complete); an unreadable newest checkpoint is
  reported and the previous one is used;
* SIGTERM (what a TPU VM preemption or ``scancel`` sends) and Ctrl-C: the
  loop finishes the current step, saves a checkpoint and raises
  :class:`Preempted` (``experiments.main`` exits with status 143);
* a NaN/Inf loss or gradient: the step's update is never applied (checked
  on device), nothing non-finite is checkpointed, and with
  ``train.nonfinite='stop'`` training stops with :class:`NonFiniteLoss`
  naming the step and the loss terms; with ``'skip'`` it goes on;
* a config or data problem raises :class:`SetupError` before anything is
  compiled (``experiments.main`` prints it as one line and exits with 2).

Parallelism: one 1-D mesh ``('data',)`` over every device of every process;
each global batch is sharded ``P('data')``, the train state is replicated
``P()``, and one jitted step (per training phase) updates it in place (donated
buffers). Under this Auto mesh XLA inserts the collectives, so the loss of a
global batch is the same number on 1 or 8 devices.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
from typing import Callable

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from clustering import checkpoint as checkpoint_lib
from clustering import data as data_lib
from clustering import methods
from clustering import metrics as metrics_lib
from experiments import report

_OPTIMIZERS = ("adam", "adamw", "sgd")
_SCHEDULES = ("constant", "cosine")
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


def validate_config(config, *, num_devices: int, num_examples: int | None = None,
                    num_eval_examples: int | None = None) -> None:
  """Raises ``ValueError`` for a config that cannot train, before any work."""
  methods.get(config.method)  # unknown method
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
  t = config.train
  for name in ("num_steps", "checkpoint_every", "eval_every", "log_every"):
    if int(t[name]) < 1:
      raise ValueError(f"train.{name} must be >= 1; got {t[name]}.")
  if not 0.0 <= t.ema_decay < 1.0:
    raise ValueError(f"train.ema_decay must be in [0, 1); got {t.ema_decay}.")
  if t.get("nonfinite", "stop") not in _NONFINITE:
    raise ValueError(f"train.nonfinite must be one of {_NONFINITE}; got "
                     f"{t.nonfinite!r}.")
  o = config.optimizer
  if o.name not in _OPTIMIZERS:
    raise ValueError(f"optimizer.name must be one of {_OPTIMIZERS}; got "
                     f"{o.name!r}.")
  if o.schedule not in _SCHEDULES:
    raise ValueError(f"optimizer.schedule must be one of {_SCHEDULES}; got "
                     f"{o.schedule!r}.")
  if not o.learning_rate > 0:
    raise ValueError(f"optimizer.learning_rate must be > 0; got "
                     f"{o.learning_rate}.")
  if not 0 <= o.warmup_steps < t.num_steps:
    raise ValueError(f"optimizer.warmup_steps={o.warmup_steps} must be in "
                     f"[0, train.num_steps={t.num_steps}).")
  warmup = config.objective.get("warmup_steps", 0)
  if warmup and warmup >= t.num_steps:
    raise ValueError(
        f"objective.warmup_steps={warmup} leaves no clustering steps in "
        f"train.num_steps={t.num_steps}.")
  if num_examples is not None:
    if k > num_examples:
      raise ValueError(f"num_clusters={k} exceeds the {num_examples} "
                       "training examples.")
    if b > num_examples:
      raise ValueError(f"data.batch_size={b} exceeds the {num_examples} "
                       "training examples.")
  if num_eval_examples is not None and k > num_eval_examples:
    raise ValueError(f"num_clusters={k} exceeds the {num_eval_examples} "
                     "evaluation examples.")


# ----------------------------------------------------------------- pieces


def make_optimizer(config, num_steps: int) -> optax.GradientTransformation:
  o = config
  if o.schedule == "cosine":
    lr = optax.warmup_cosine_decay_schedule(
        0.0, o.learning_rate, max(o.warmup_steps, 0) or 1, max(num_steps, 2))
  else:
    lr = (optax.linear_schedule(0.0, o.learning_rate, o.warmup_steps)
          if o.warmup_steps else o.learning_rate)
  if o.name == "adam":
    tx = optax.adam(lr)
  elif o.name == "adamw":
    tx = optax.adamw(lr, weight_decay=o.weight_decay)
  else:
    tx = optax.sgd(lr, momentum=o.momentum)
  if o.grad_clip:
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), tx)
  return tx, lr


def dataset_stats(dataset: data_lib.Dataset, *, seed: int,
                  max_examples: int = 10_000) -> tuple[dict, np.ndarray]:
  """Input statistics from (a seeded sample of) the training set."""
  rng = np.random.default_rng(seed)
  m = min(dataset.num_examples, max_examples)
  idx = np.sort(rng.choice(dataset.num_examples, m, replace=False))
  x, _ = dataset.get(idx)
  flat = x.reshape(m, -1)
  chan = x.reshape(-1, x.shape[-1]) if dataset.is_image else flat
  stats = dict(channel_mean=chan.mean(0), channel_std=np.maximum(chan.std(0),
                                                                 1e-3),
               feature_mean=flat.mean(0),
               feature_std=np.maximum(flat.std(0), 1e-3))
  if not dataset.is_image:  # features: per-feature is per-channel
    stats["channel_mean"], stats["channel_std"] = (stats["feature_mean"],
                                                   stats["feature_std"])
  return stats, x


def initialize_distributed(config) -> bool:
  """Joins JAX's distributed runtime as ``config.distributed`` says.

  Must run before anything touches a device. Returns whether it did. On CPU
  the collectives go through gloo (the CPU backend has no other
  cross-process implementation).

  Raises:
    ValueError: for an incomplete or impossible ``config.distributed``.
  """
  d = config.get("distributed")
  if d is None or not (d.coordinator_address or d.auto):
    return False
  if d.coordinator_address:
    if d.num_processes < 1 or not 0 <= d.process_id < d.num_processes:
      raise ValueError(
          "config.distributed needs num_processes >= 1 and 0 <= process_id "
          f"< num_processes; got num_processes={d.num_processes}, "
          f"process_id={d.process_id}.")
    device_ids = ([int(i) for i in str(d.local_device_ids).split(",")]
                  if d.local_device_ids else None)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=d.coordinator_address,
                               num_processes=d.num_processes,
                               process_id=d.process_id,
                               local_device_ids=device_ids)
  else:  # TPU VM, Slurm, Open MPI: JAX reads the cluster's environment.
    jax.distributed.initialize()
  return True


def make_mesh(devices=None):
  """1-D ``('data',)`` mesh over ``devices`` (default: all, of all hosts)."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def global_batch(x_local: np.ndarray, sharding) -> jax.Array:
  """This process's rows of a global batch -> one array sharded over all."""
  return jax.make_array_from_process_local_data(sharding, x_local)


def _copy(tree):
  return jax.tree.map(lambda a: jnp.array(a, copy=True), tree)


class Trainer:
  """Holds the method, the jitted functions and the mesh for one run."""

  def __init__(self, config, method: methods.Method, model: nnx.Module,
               mesh):
    self.config, self.method, self.mesh = config, method, mesh
    self.replicated = NamedSharding(mesh, P())
    self.sharded = NamedSharding(mesh, P("data"))
    self.graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    self.tx, self.schedule = make_optimizer(config.optimizer,
                                            config.train.num_steps)
    self.base_key = jax.random.key(config.seed)
    state = dict(params=params, rest=rest, opt_state=self.tx.init(params),
                 ema=_copy(params) if config.train.ema_decay else {},
                 step=jnp.zeros((), jnp.int32))
    self.state = jax.device_put(state, self.replicated)
    self._steps: dict[str, Callable] = {}
    self._outputs = jax.jit(self._outputs_fn, out_shardings=self.replicated)

  # -- train
  def _step_fn(self, state, x, *, phase):
    step = state["step"]
    key = jax.random.fold_in(self.base_key, step)

    def loss_fn(params):
      model = nnx.merge(self.graphdef, params, state["rest"], copy=True)
      loss, aux = self.method.loss(model, x, key, step, phase)
      _, _, rest = nnx.split(model, nnx.Param, ...)
      return loss, (aux, rest)

    (loss, (aux, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"])
    updates, opt_state = self.tx.update(grads, state["opt_state"],
                                        state["params"])
    params = optax.apply_updates(state["params"], updates)
    ema = state["ema"]
    if self.config.train.ema_decay:
      ema = optax.incremental_update(params, ema,
                                     1.0 - self.config.train.ema_decay)
    grad_norm = optax.tree.norm(grads)
    param_norm = optax.tree.norm(params)
    # A NaN/Inf step (loss, gradient or the updated parameters) leaves the
    # state as it was (the step counter moves on): nothing non-finite ever
    # reaches the parameters or a checkpoint.
    finite = (jnp.isfinite(loss) & jnp.isfinite(grad_norm)
              & jnp.isfinite(param_norm))
    new_state = jax.tree.map(
        lambda new, old: jnp.where(finite, new, old),
        dict(params=params, rest=rest, opt_state=opt_state, ema=ema),
        {k: state[k] for k in ("params", "rest", "opt_state", "ema")})
    new_state["step"] = step + 1
    metrics = dict(loss=loss, grad_norm=grad_norm, param_norm=param_norm,
                   **aux)
    return new_state, metrics

  def train_step(self, phase: str, x: jax.Array):
    if phase not in self._steps:
      self._steps[phase] = jax.jit(
          functools.partial(self._step_fn, phase=phase), donate_argnums=0,
          out_shardings=(self.replicated, self.replicated))
    self.state, metrics = self._steps[phase](self.state, x)
    return metrics

  # -- model surgery at phase boundaries
  def start_phase(self, phase: str, train_outputs: Callable[[], dict]):
    model = nnx.merge(self.graphdef, self.state["params"], self.state["rest"],
                       copy=True)
    self.method.start_phase(phase, model, train_outputs)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    # Copies: the hook may alias arrays (a head copied from another), and
    # the donated train step needs every buffer to be distinct.
    state = dict(self.state, params=_copy(params), rest=_copy(rest))
    if self.config.train.ema_decay:
      state["ema"] = _copy(params)
    self.state = jax.device_put(state, self.replicated)

  # -- evaluation
  def _outputs_fn(self, params, rest, x):
    model = nnx.merge(self.graphdef, params, rest, copy=True)
    return self.method.outputs(model, x)

  def outputs(self, dataset: data_lib.Dataset, *, use_ema: bool = True):
    """Method outputs for every example of ``dataset`` (host arrays)."""
    params = (self.state["ema"] if use_ema and self.config.train.ema_decay
              else self.state["params"])
    chunk = self.config.eval.batch_size
    num_devices = self.mesh.size
    chunk = max(num_devices, chunk - chunk % num_devices)
    pieces, labels = [], []
    for start in range(0, dataset.num_examples, chunk):
      idx = np.arange(start, min(start + chunk, dataset.num_examples))
      x, y = dataset.get(idx)
      pad = (-len(idx)) % num_devices
      if pad:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
      per_process = x.shape[0] // jax.process_count()
      x = x[jax.process_index() * per_process:][:per_process]
      out = self._outputs(params, self.state["rest"],
                          global_batch(x, self.sharded))
      if jax.process_count() > 1:  # each process holds its rows only
        out = multihost_utils.process_allgather(out, tiled=True)
      pieces.append(jax.tree.map(lambda o, n=len(idx): np.asarray(o)[:n], out))
      labels.append(y)
    outs = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    labels = None if labels[0] is None else np.concatenate(labels)
    return outs, labels


def evaluate(trainer: Trainer, dataset: data_lib.Dataset, *,
             final: bool = False) -> dict:
  """Cluster assignments of ``dataset`` and their metrics.

  With ``final``, a method that can estimate the number of clusters does so
  over ``config.eval.num_clusters_candidates`` (when given).
  """
  outputs, labels = trainer.outputs(dataset)
  clusters = trainer.method.assign(outputs)
  extra = {}
  candidates = tuple(trainer.config.eval.get("num_clusters_candidates", ()))
  if final and candidates and hasattr(trainer.method,
                                      "estimate_num_clusters"):
    estimate = trainer.method.estimate_num_clusters(outputs, candidates)
    extra = dict(num_clusters_estimate=estimate["num_clusters"],
                 coding_length={str(k): v for k, v in
                                estimate["coding_length"].items()})
  features = outputs["features"].reshape(len(clusters), -1)
  if labels is not None:
    scores = metrics_lib.clustering_metrics(labels, clusters, features)
  else:
    scores = dict(acc=None, nmi=None, ari=None,
                  silhouette=metrics_lib.clustering_metrics(
                      clusters, clusters, features)["silhouette"])
  scores["num_clusters_used"] = int(np.unique(clusters).size)
  return dict(scores=scores, clusters=clusters, labels=labels,
              features=features, extra=extra)


# -------------------------------------------------------------------- run


def _finite_mean(values) -> float:
  """Mean over the finite values (skipped steps' NaNs aside); NaN if none."""
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  return float(values.mean()) if values.size else float("nan")


class _StopFlag:
  signum: int | None = None


@contextlib.contextmanager
def _stop_signals():
  """SIGTERM and SIGINT set a flag that the loop checks after each step
  (a preemption notice gives seconds to minutes: enough to finish a step
  and save). Outside the main thread signals cannot be caught; the flag
  then stays unset."""
  flag = _StopFlag()
  if threading.current_thread() is not threading.main_thread():
    yield flag
    return

  def handler(signum, frame):
    del frame
    if flag.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C stops at once
    flag.signum = signum

  previous = {sig: signal.signal(sig, handler)
              for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield flag
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)


def train_and_evaluate(config, workdir: str, *,
                       on_step: Callable[[int], None] | None = None,
                       show_progress: bool = True,
                       devices=None) -> dict:
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
  mesh = make_mesh(devices)
  num_devices = mesh.size
  methods.get(config.method)
  try:
    validate_config(config, num_devices=num_devices)
    train_ds = data_lib.load(config.data, num_clusters=config.num_clusters)
    eval_ds = (data_lib.load(config.data, num_clusters=config.num_clusters,
                             split=config.data.eval_split)
               if config.data.eval_split else train_ds)
    validate_config(config, num_devices=num_devices,
                    num_examples=train_ds.num_examples,
                    num_eval_examples=eval_ds.num_examples)
  except ValueError as e:
    raise SetupError(str(e)) from e

  is_main = jax.process_index() == 0
  stats, x_sample = dataset_stats(train_ds, seed=config.seed)
  method = methods.get(config.method)(config,
                                      example_shape=train_ds.example_shape,
                                      stats=stats)
  method.prepare(train_ds)
  model = method.create_model(nnx.Rngs(params=config.seed), x_sample)
  trainer = Trainer(config, method, model, mesh)
  os.makedirs(workdir, exist_ok=True)  # only once the config is known good
  num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(
      trainer.state["params"]))
  logging.info("%s on %s: %d examples %s, %d parameters, %d device(s).",
               config.method, train_ds.name, train_ds.num_examples,
               train_ds.example_shape, num_params, num_devices)

  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                     every=config.train.checkpoint_every)
  writer = report.MetricsWriter(workdir, enabled=is_main)
  order = data_lib.index_dataset(train_ds.num_examples, seed=config.seed)
  b = config.data.batch_size
  meta = lambda s: dict(step=s, seed=config.seed, batch_size=b,  # noqa: E731
                        num_examples=train_ds.num_examples,
                        input_order="grain MapDataset.range(n).shuffle(seed)"
                        ".repeat(); batch s = items [s*B, (s+1)*B)")
  start_step = 0
  restored = ckpt.restore_latest(checkpoint_lib.abstract_like(trainer.state))
  if restored is not None:
    latest, state, saved = restored
    for key in ("seed", "batch_size", "num_examples"):
      if saved[key] != meta(latest)[key]:
        raise SetupError(
            f"The checkpoint in {workdir} was written with {key}="
            f"{saved[key]}, this config has {meta(latest)[key]}; use a new "
            "--workdir.")
    trainer.state, start_step = state, int(latest)
    logging.info("Resumed from the checkpoint at step %d.", start_step)
  writer.truncate_after(start_step)

  num_steps = config.train.num_steps
  phase_starts = {first: name for name, first in method.phases}
  progress = report.Progress(num_steps, start_step,
                             every=config.train.log_every,
                             enabled=show_progress and is_main)
  train_outputs = lambda: trainer.outputs(train_ds)[0]  # noqa: E731
  pending, t_log, last_loss = [], time.perf_counter(), float("nan")
  skipped = []  # steps whose update was dropped (train.nonfinite='skip')
  num_checked = 0  # pending[:num_checked] are known to be finite

  def check_finite():
    """Fetches the unchecked steps' metrics; raises NonFiniteLoss or logs
    skipped steps. Called before every checkpoint and log line."""
    nonlocal num_checked
    for done, m in pending[num_checked:]:
      m = jax.device_get(m)
      if all(np.isfinite(m[k]) for k in ("loss", "grad_norm", "param_norm")):
        continue
      terms = ", ".join(f"{k}={float(v):.6g}" for k, v in m.items())
      if config.train.nonfinite == "skip":
        skipped.append(done)
        logging.warning("Step %d: non-finite loss, gradient or parameters "
                        "(%s); update skipped.", done, terms)
        continue
      last_good = ckpt.latest_step()
      ckpt.close()
      raise NonFiniteLoss(
          f"Step {done}: the loss, gradient or updated parameters are not "
          f"finite ({terms}). Training stopped; "
          + (f"the last good checkpoint is step {last_good} in "
             f"{ckpt.directory}." if last_good is not None else
             "no checkpoint was written.")
          + " Lower optimizer.learning_rate, set optimizer.grad_clip, or "
          "set train.nonfinite='skip' to drop such steps.")
    num_checked = len(pending)

  step = start_step
  with _stop_signals() as stop:
    try:
      while step < num_steps:
        phase = method.phase(step)
        if step in phase_starts:
          trainer.start_phase(phase, train_outputs)
        idx = data_lib.batch_indices(order, step, b,
                                     process_index=jax.process_index(),
                                     process_count=jax.process_count())
        x, _ = train_ds.get(idx)
        if method.neighbors is not None:
          partners = data_lib.partner_indices(
              method.neighbors, idx, seed=config.seed, step=step,
              batch_size=b, process_index=jax.process_index(),
              process_count=jax.process_count())
          x = (x, train_ds.get(partners)[0])
        batch = jax.tree.map(lambda a: global_batch(a, trainer.sharded), x)
        pending.append((step + 1, trainer.train_step(phase, batch)))
        step += 1
        if step % config.train.log_every == 0 or step == num_steps:
          check_finite()
          logged = [m for _, m in jax.device_get(pending)]
          now = time.perf_counter()
          rate = len(logged) / (now - t_log)
          # A window may span a phase change: average each term over the
          # steps that have it.
          record = {k: _finite_mean([m[k] for m in logged if k in m])
                    for k in logged[-1]}
          last_loss = float(logged[-1]["loss"])
          record.update(step=step, phase=phase, steps_per_sec=rate,
                        examples_per_sec=rate * b,
                        learning_rate=float(trainer.schedule(step - 1))
                        if callable(trainer.schedule) else trainer.schedule)
          writer.write(record)
          pending, num_checked, t_log = [], 0, now
          progress.update(step, loss=record["loss"])
        if on_step is not None:
          on_step(step)
        if step % config.train.checkpoint_every == 0:
          check_finite()
          ckpt.save(step, trainer.state, meta(step))
        if stop.signum is not None:
          check_finite()
          ckpt.save(step, trainer.state, meta(step), force=True)
          ckpt.close()
          name = signal.Signals(stop.signum).name
          raise Preempted(
              f"{name} received: stopped after step {step} of {num_steps} "
              f"with a checkpoint in {ckpt.directory}; run the same command "
              "again to resume.", step=step, signum=stop.signum)
        if step % config.train.eval_every == 0 and step < num_steps:
          ev = evaluate(trainer, eval_ds)
          writer.write(dict(step=step, eval=ev["scores"]))
          logging.info("step %d eval: %s", step, ev["scores"])
    except KeyboardInterrupt:
      # Stopped by hand (or by a test hook): keep the finished steps.
      check_finite()
      ckpt.save(step, trainer.state, meta(step), force=True)
      ckpt.close()
      raise
  check_finite()
  ckpt.save(num_steps, trainer.state, meta(num_steps), force=True)
  ckpt.close()

  if not np.isfinite(last_loss) and start_step == num_steps:
    records = [r for r in writer.read() if "loss" in r]
    last_loss = records[-1]["loss"] if records else float("nan")
  ev = evaluate(trainer, eval_ds, final=True)
  seconds = time.perf_counter() - t_start
  results = dict(ev["scores"], **ev["extra"], final_loss=last_loss,
                 num_steps=num_steps, skipped_steps=skipped,
                 resumed_from=start_step, seconds=seconds,
                 num_devices=num_devices, num_processes=jax.process_count(),
                 method=config.method, data=train_ds.name,
                 eval_data=eval_ds.name,
                 num_examples=eval_ds.num_examples, num_parameters=num_params,
                 train_steps_per_sec=progress.steps_per_sec,
                 backend=jax.default_backend())
  if is_main:
    writer.write(dict(step=num_steps, eval=ev["scores"]))
    report.write_json(os.path.join(workdir, "results.json"), results)
    arrays = dict(index=np.arange(eval_ds.num_examples),
                  cluster=ev["clusters"],
                  features=np.asarray(ev["features"], np.float32))
    if ev["labels"] is not None:
      arrays["label"] = ev["labels"]
    tmp = os.path.join(workdir, f"predictions.tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, os.path.join(workdir, "predictions.npz"))
    report.plot_run(workdir, writer.read(), method.phases,
                    features=ev["features"], clusters=ev["clusters"],
                    labels=ev["labels"],
                    title=f"{config.method} on {eval_ds.name}")
  logging.info("results: %s", {k: results[k] for k in (
      "acc", "nmi", "ari", "silhouette", "seconds")})
  return results
