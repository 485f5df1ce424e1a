"""The device side of a run: mesh, train state, the jitted step and outputs.

One 1-D mesh ``('data',)`` over every device of every process; each global
batch is sharded ``P('data')``, the train state is replicated ``P()``, and
one jitted step (per training phase) updates it in place (donated buffers).
Under this Auto mesh XLA inserts the collectives, so the loss of a global
batch is the same number on 1 or 8 devices.
"""

from __future__ import annotations

import functools
from typing import Callable

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from clustering import data as data_lib
from clustering import methods

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")


def make_optimizer(config, num_steps: int, *,
                   learning_rate: float | None = None):
  """``(optax transformation, learning-rate schedule)`` of
  ``config.optimizer`` over ``num_steps`` steps, or at the constant
  ``learning_rate`` when given (a phase with its own rate).

  The rate is always a schedule of the optimizer's own step count, so every
  phase's optimizer state has the same structure (one checkpoint layout).
  """
  o = config
  if learning_rate is not None:
    lr = optax.constant_schedule(learning_rate)
  elif o.schedule == "cosine":
    # warmup_steps=0 starts at the peak rate (step 0 is a training step).
    lr = optax.warmup_cosine_decay_schedule(
        0.0, o.learning_rate, max(o.warmup_steps, 0), max(num_steps, 2))
  else:
    lr = (optax.linear_schedule(0.0, o.learning_rate, o.warmup_steps)
          if o.warmup_steps else optax.constant_schedule(o.learning_rate))
  if o.name == "adam":
    tx = optax.adam(lr)
  elif o.name == "adamw":
    tx = optax.adamw(lr, weight_decay=o.weight_decay)
  else:
    tx = optax.sgd(lr, momentum=o.momentum)
  if o.grad_clip:
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), tx)
  return tx, lr


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


def global_batch(x_local, sharding):
  """This process's rows of a global batch -> one array sharded over all
  (``None`` stays ``None``)."""
  if x_local is None:
    return None
  return jax.make_array_from_process_local_data(sharding, x_local)


def _copy(tree):
  return jax.tree.map(lambda a: jnp.array(a, copy=True), tree)


class Trainer:
  """The train state of one run, its jitted step and evaluation outputs."""

  def __init__(self, config, method: methods.Method, model: nnx.Module, mesh,
               stats: data_lib.InputStats):
    self.config, self.method, self.mesh = config, method, mesh
    self.stats = stats
    self.augment = data_lib.AugmentSpec.from_config(config.data.augment)
    self.replicated = NamedSharding(mesh, P())
    self.sharded = NamedSharding(mesh, P("data"))
    self.graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    # Phases with their own learning rate get their own optimizer; the
    # run's schedule ends where the first of them begins.
    own_rate = [p for p in method.phases if p.learning_rate is not None]
    self.phases = method.phases
    self.tx, self.schedule = make_optimizer(
        config.optimizer, min([p.first_step for p in own_rate]
                              + [config.train.num_steps]))
    self.phase_tx = {p.name: make_optimizer(config.optimizer, 0,
                                            learning_rate=p.learning_rate)[0]
                     for p in own_rate}
    self.ema_decay = config.train.ema_decay
    self.base_key = jax.random.key(config.seed)
    state = dict(params=params, rest=rest, opt_state=self.tx.init(params),
                 ema=_copy(params) if self.ema_decay else {},
                 step=jnp.zeros((), jnp.int32))
    self.state = jax.device_put(state, self.replicated)
    self._steps: dict[str, Callable] = {}
    self._outputs = jax.jit(self._outputs_fn, out_shardings=self.replicated)

  def num_parameters(self) -> int:
    return sum(int(np.prod(p.shape))
               for p in jax.tree.leaves(self.state["params"]))

  def learning_rate(self, step: int) -> float:
    phase = methods.phase_at(self.phases, step)
    if phase.learning_rate is not None:
      return float(phase.learning_rate)
    return float(self.schedule(step))

  # -- train
  def _step_fn(self, state, x, partners, *, phase):
    step = state["step"]
    view_key, loss_key = jax.random.split(
        jax.random.fold_in(self.base_key, step))
    inputs = data_lib.model_inputs(view_key, x, partners,
                                   spec=self.method.input_spec_for(phase),
                                   augment_spec=self.augment,
                                   stats=self.stats)

    def loss_fn(params):
      model = nnx.merge(self.graphdef, params, state["rest"], copy=True)
      loss, terms = self.method.loss(model, inputs, loss_key, step, phase)
      return loss, (terms, nnx.split(model, nnx.Param, ...)[2])

    (loss, (terms, rest)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state["params"])
    tx = self.phase_tx.get(phase, self.tx)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    ema = state["ema"]
    if self.ema_decay:
      ema = optax.incremental_update(params, ema, 1.0 - self.ema_decay)
    grad_norm, param_norm = optax.tree.norm(grads), optax.tree.norm(params)
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
    return new_state, dict(loss=loss, grad_norm=grad_norm,
                           param_norm=param_norm, **terms)

  def train_step(self, phase: str, x: np.ndarray, partners=None) -> dict:
    """One step on this process's rows ``x`` (and their neighbours'
    ``partners``) of the global batch; returns the step's device metrics."""
    if phase not in self._steps:
      self._steps[phase] = jax.jit(
          functools.partial(self._step_fn, phase=phase), donate_argnums=0,
          out_shardings=(self.replicated, self.replicated))
    self.state, metrics = self._steps[phase](
        self.state, global_batch(x, self.sharded),
        global_batch(partners, self.sharded))
    return metrics

  # -- model surgery at phase boundaries
  def start_phase(self, phase: methods.Phase,
                  train_set: data_lib.Dataset) -> None:
    """Runs the method's start hook on the current model (with the training
    set's features when the phase asks for them)."""
    # The model being trained, not its average: the hook initialises it.
    features = None
    if phase.needs_features or phase.needs_outputs:
      outputs = self.outputs(train_set, use_ema=False)[0]
      features = outputs if phase.needs_outputs else outputs["features"]
    model = nnx.merge(self.graphdef, self.state["params"], self.state["rest"],
                      copy=True)
    self.method.start_phase(phase.name, model, features)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    # Copies: the hook may alias arrays (a head copied from another), and
    # the donated train step needs every buffer to be distinct.
    state = dict(self.state, params=_copy(params), rest=_copy(rest))
    if phase.learning_rate is not None:
      state["opt_state"] = self.phase_tx[phase.name].init(state["params"])
    if self.ema_decay:
      state["ema"] = _copy(params)
    self.state = jax.device_put(state, self.replicated)

  # -- evaluation
  def _outputs_fn(self, params, rest, x):
    model = nnx.merge(self.graphdef, params, rest, copy=True)
    x = data_lib.standardize(x, self.stats, self.method.input_spec.standardize)
    return self.method.outputs(model, x)

  def outputs(self, dataset: data_lib.Dataset, *, use_ema: bool = True):
    """``(method outputs, labels)`` for every example of ``dataset`` (host
    arrays), in chunks of ``config.eval.batch_size``."""
    params = (self.state["ema"] if use_ema and self.ema_decay
              else self.state["params"])
    num_devices = self.mesh.size
    chunk = self.config.eval.batch_size
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
    return outs, (None if labels[0] is None else np.concatenate(labels))
