r"""Speed against the alternatives, measured side by side in one process.

    python -m benchmarks.speed [--quick] [--out=DIR]
        [--cases=sinkhorn,kmeans,mcr2,throughput]

Each row: our time and the alternative's (warm: after one compiling call,
median of `--repeats` runs), their ratio (alternative / ours, > 1 means we
are faster), compile times, XLA's temporary-buffer size where it matters
(MCR^2), and the accuracy each reached. Runs on whatever device JAX has
(CPU here). MNIST-test is read from ../shared/data/mnist_test or
--mnist_dir; the k-means case is skipped with a message when absent. The
throughput case times the training loop of every config's default model
(seconds per step and examples/s; there is no alternative in that row).
"""

from __future__ import annotations

import json
import pathlib
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import clustering
import objectives as O
from clustering.data import idx

DEFAULT_MNIST_DIR = str(
    pathlib.Path(__file__).resolve().parents[2] / "shared/data/mnist_test")
CASES = ("sinkhorn", "kmeans", "mcr2", "throughput")


def define_flags():
  """Command-line flags, defined only when run as a program: the quality
  benchmark defines its own `--quick` and `--out` in the same process
  when both modules are imported (as in the test suite)."""
  flags.DEFINE_bool("quick", False, "small shapes, for a smoke run.")
  flags.DEFINE_string("out", None, "folder for results.md/results.json.")
  flags.DEFINE_list("cases", list(CASES), "cases.")
  flags.DEFINE_integer("repeats", 3, "timed runs per measurement.")
  flags.DEFINE_string("mnist_dir", DEFAULT_MNIST_DIR,
                      "folder with MNIST t10k IDX files.")


def _block(out):
  return jax.tree_util.tree_map(
      lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a,
      out)


def timed(fn, repeats):
  """(compile+first-call seconds, median warm seconds, last output)."""
  t0 = time.perf_counter()
  out = _block(fn())
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = _block(fn())
    times.append(time.perf_counter() - t0)
  return first, statistics.median(times), out


def _row(case, ours, alt, alt_name, ours_acc, alt_acc, **extra):
  return dict(case=case, ours_s=ours[1], alt_s=alt[1], alternative=alt_name,
              speedup=alt[1] / ours[1], ours_first_s=ours[0],
              alt_first_s=alt[0], ours_accuracy=ours_acc,
              alt_accuracy=alt_acc, **extra)


def sinkhorn_case(quick, repeats):
  from ott.geometry import geometry
  from ott.problems.linear import linear_problem
  from ott.solvers.linear import sinkhorn as ott_sinkhorn

  rows = []
  rng = np.random.default_rng(0)

  def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)

  n, k = (1024, 750) if quick else (4096, 3000)
  swav = jnp.asarray(unit(rng.standard_normal((n, 128))) @
                     unit(rng.standard_normal((k, 128))).T, jnp.float32)
  m = 1024 if quick else 8192
  x, y = rng.standard_normal((m, 2)), rng.standard_normal((m, 2)) + 1.0
  square = jnp.asarray(-((x[:, None] - y[None]) ** 2).sum(-1), jnp.float32)
  square_eps = float(0.05 * jnp.mean(-square))

  def ott_solver(scores, eps, **kw):
    @jax.jit
    def run(s):
      geom = geometry.Geometry(cost_matrix=-s, epsilon=eps)
      out = ott_sinkhorn.Sinkhorn(**kw)(linear_problem.LinearProblem(geom))
      return out.matrix, out.n_iters
    return lambda: run(scores)

  for name, scores, eps in (("SwAV %dx%d eps=0.05" % swav.shape, swav, 0.05),
                            ("square %dx%d eps=0.05*mean(cost)" % square.shape,
                             square, square_eps)):
    tol = 1e-3
    ours_fn = jax.jit(lambda s: O.sinkhorn(s, epsilon=eps, tol=tol,
                                           max_iters=5000))
    ours = timed(lambda: ours_fn(scores), repeats)
    alt = timed(ott_solver(scores, eps, threshold=tol, max_iterations=5000),
                repeats)
    col_err = lambda p: float(jnp.abs(p.sum(0) - 1 / p.shape[1]).sum())
    ours_err, alt_err = col_err(ours[2].plan), col_err(alt[2][0])
    rows.append(_row(f"Sinkhorn to tol {tol}: {name}", ours, alt, "ott-jax",
                     f"err {ours_err:.1e}, {int(ours[2].iterations)} it",
                     f"err {alt_err:.1e}, {int(alt[2][1])} it",
                     tol=tol, ours_error=ours_err, alt_error=alt_err))

  iters = 100
  ott_fixed = ott_solver(swav, 0.01, threshold=-1.0, min_iterations=iters,
                         max_iterations=iters)
  alt = timed(ott_fixed, repeats)
  for name, block in (("", 10), (", log domain (scaling_block=0)", 0)):
    ours_fn = jax.jit(lambda s, b=block: O.sinkhorn(
        s, epsilon=0.01, num_iters=iters, scaling_block=b).plan)
    ours = timed(lambda: ours_fn(swav), repeats)
    rel = float(jnp.max(jnp.abs(ours[2] - alt[2][0])) / jnp.max(alt[2][0]))
    rows.append(_row(
        f"Sinkhorn {iters} iters eps=0.01{name}: SwAV {n}x{k}", ours, alt,
        "ott-jax", f"{1e3 * ours[1] / iters:.2f} ms/it; max rel diff to ott "
        f"{rel:.1e}", f"{1e3 * alt[1] / iters:.2f} ms/it", rel_diff=rel))
  return rows


def kmeans_case(quick, repeats, mnist_dir):
  from sklearn.cluster import KMeans
  try:
    x, _ = idx.load_idx_dir(mnist_dir)
  except (ValueError, FileNotFoundError) as e:
    print(f"k-means case skipped: {e}")
    return []
  if quick:
    x = x[:2000]
  # Both reach different local optima per seed: compare over several.
  seeds = [0] if quick else list(range(5))
  ours_runs = [timed(lambda s=s: clustering.kmeans(x, 10, n_init=10, seed=s),
                     repeats) for s in seeds]
  alt_runs = [timed(lambda s=s: KMeans(10, n_init=10, random_state=s).fit(x),
                    repeats) for s in seeds]
  ours_inertia = np.array([float(r[2].inertia) for r in ours_runs])
  alt_inertia = np.array([r[2].inertia_ for r in alt_runs])
  wins = int(np.sum(ours_inertia <= alt_inertia))

  def summary(runs):
    return (statistics.median(r[0] for r in runs),
            statistics.median(r[1] for r in runs), None)

  return [_row(f"k-means MNIST-test {x.shape[0]}x{x.shape[1]}, k=10, n_init=10"
               f" (median over seeds {seeds[0]}-{seeds[-1]})",
               summary(ours_runs), summary(alt_runs), "scikit-learn KMeans",
               f"mean inertia {ours_inertia.mean():.6g}; lower or equal on "
               f"{wins}/{len(seeds)} seeds",
               f"mean inertia {alt_inertia.mean():.6g}",
               ours_inertia=float(ours_inertia.mean()),
               alt_inertia=float(alt_inertia.mean()))]


def _reference_compression(z, pi, eps_sq):
  """The reference repos' formulation: k explicit n x n diagonal matrices."""
  n, d = z.shape
  total = 0.0
  for j in range(pi.shape[1]):
    tr = jnp.sum(pi[:, j]) + 1e-8
    big = jnp.diag(pi[:, j])
    total += tr / (2 * n) * jnp.linalg.slogdet(
        jnp.eye(d) + d / (tr * eps_sq) * z.T @ big @ z)[1]
  return total


def _reference_mcr2(z, pi, eps_sq=0.5):
  n, d = z.shape
  rate = 0.5 * jnp.linalg.slogdet(jnp.eye(d) + d / (n * eps_sq) * z.T @ z)[1]
  return -rate + _reference_compression(z, pi, eps_sq)


def _einsum_mlc(z, gamma, eps_sq=0.5):
  """Straightforward batched version: einsum Grams + slogdet."""
  n, d = z.shape
  tr = jnp.sum(gamma, 0) + 1e-8
  grams = jnp.einsum("nk,nd,ne->kde", gamma, z, z)
  logdet = jnp.linalg.slogdet(jnp.eye(d) + (d / (tr * eps_sq))[:, None, None]
                              * grams)[1]
  return jnp.sum(tr * logdet) / (2 * n)


def _temp_mib(fn, *args):
  """XLA's temporary-buffer size for ``fn(*args)`` (its peak working set
  beyond inputs and outputs), or None where the backend does not say."""
  analysis = fn.lower(*args).compile().memory_analysis()
  return None if analysis is None else analysis.temp_size_in_bytes / 2**20


def _mib(value):
  return "-" if value is None else f"{value:.0f}"


# The n x n formulation is O(n^2 d) per cluster: beyond this many n^2 d
# flops per cluster it takes minutes and GiBs, so it is not run.
_REFERENCE_MAX_N2D = 4096**2 * 128


def mcr2_case(quick, repeats):
  rows = []
  rng = np.random.default_rng(0)
  k = 10
  if quick:
    sizes = [(1024, 128)]
  else:
    sizes = [(n, d) for n in (1024, 4096, 16384) for d in (128, 512)]
    sizes.insert(2, (4000, 128))  # the size of the issue's reference figure
  for n, d in sizes:
    z = rng.standard_normal((n, d)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    for kind in ("hard", "soft"):
      if kind == "hard":
        pi = jax.nn.one_hot(rng.integers(0, k, n), k)
      else:
        pi = jax.nn.softmax(jnp.asarray(rng.standard_normal((n, k)) * 2.0,
                                        jnp.float32))
      ours_fn = jax.jit(jax.value_and_grad(
          lambda z, pi: O.mcr2_loss(z, pi, eps_sq=0.5)))
      ours = timed(lambda: ours_fn(z, pi), repeats)
      ours_mem = _temp_mib(ours_fn, z, pi)
      case = f"MCR2 loss+grad n={n} d={d} k={k} ({kind})"
      if n * n * d <= _REFERENCE_MAX_N2D:
        ref_fn = jax.jit(jax.value_and_grad(_reference_mcr2))
        alt = timed(lambda: ref_fn(z, pi), repeats)
        alt_mem = _temp_mib(ref_fn, z, pi)
        alt_acc = f"loss {float(alt[2][0]):.5f}"
      else:
        alt, alt_mem, alt_acc = (float("nan"), float("nan"), None), None, (
            "not run: O(n^2 d)")
      rows.append(_row(case, ours, alt, "n x n diagonal formulation (JAX)",
                       f"loss {float(ours[2][0]):.5f}", alt_acc,
                       ours_mib=_mib(ours_mem), alt_mib=_mib(alt_mem),
                       ours_loss=float(ours[2][0]),
                       alt_loss=float(alt[2][0]) if alt_acc.startswith(
                           "loss") else None))
  n, d = (512, 64) if quick else (1024, 128)
  z = rng.standard_normal((n, d)).astype(np.float32)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  gamma = O.doubly_stochastic_membership(z, eta=0.175)
  ours_fn = jax.jit(jax.value_and_grad(
      lambda z, g: O.compression_rate(z, g, eps_sq=0.5), argnums=(0, 1)))
  alt_fn = jax.jit(jax.value_and_grad(_einsum_mlc, argnums=(0, 1)))
  ours = timed(lambda: ours_fn(z, gamma), repeats)
  alt = timed(lambda: alt_fn(z, gamma), repeats)
  rows.append(_row(f"MLC Rc(Z, Gamma) loss+grad n=k={n} d={d}", ours, alt,
                   "einsum + slogdet (JAX)", f"loss {float(ours[2][0]):.5f}",
                   f"loss {float(alt[2][0]):.5f}",
                   ours_mib=_mib(_temp_mib(ours_fn, z, gamma)),
                   alt_mib=_mib(_temp_mib(alt_fn, z, gamma)),
                   ours_loss=float(ours[2][0]), alt_loss=float(alt[2][0])))
  return rows


# Each config's default (digits) run, timed over the last of three windows
# of this many steps: the first two include compilation and phase changes.
_THROUGHPUT_WINDOW = 30


def throughput_case(quick, repeats):
  """Examples/s of the training loop for every config's default model."""
  del repeats
  import importlib  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  from experiments import train  # pylint: disable=g-import-not-at-top

  window = 3 if quick else _THROUGHPUT_WINDOW
  names = ["mcr2"] if quick else ["mcr2", "cpp", "swav", "soft_kmeans",
                                  "clam", "icon"]
  rows = []
  for name in names:
    # --quick (the tests): the quick config, to check the row's form.
    config = importlib.import_module(f"configs.{name}").get_config(
        "quick" if quick else None)
    if config.objective.get("warmup_steps", 0):
      config.objective.warmup_steps = window
    config.optimizer.warmup_steps = 0  # the schedule does not change speed
    config.train.update(dict(num_steps=3 * window, log_every=window,
                             eval_every=10**9, checkpoint_every=10**9))
    with tempfile.TemporaryDirectory() as workdir:
      train.train_and_evaluate(config, workdir, show_progress=False)
      with open(pathlib.Path(workdir) / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    last = [r for r in records if "examples_per_sec" in r][-1]
    seconds_per_step = 1.0 / last["steps_per_sec"]
    rows.append(dict(
        case=f"train step: configs/{name}.py ({config.model.encoder}, "
        f"batch {config.data.batch_size}, phase {last['phase']})",
        ours_s=seconds_per_step, alt_s=float("nan"), alternative="-",
        speedup=float("nan"), ours_first_s=float("nan"),
        alt_first_s=float("nan"),
        ours_accuracy=f"{last['examples_per_sec']:.0f} examples/s",
        alt_accuracy=None))
  return rows


def _fmt(value, spec):
  if value is None or (isinstance(value, float) and not np.isfinite(value)):
    return "-"
  return format(value, spec)


def to_markdown(rows):
  head = ("| case | ours (s) | alternative | alt (s) | speed-up | ours "
          "compile+1st (s) | alt 1st (s) | ours temp MiB | alt temp MiB | "
          "ours accuracy | alt accuracy |\n" + "|---" * 11 + "|\n")
  body = "".join(
      f"| {r['case']} | {_fmt(r['ours_s'], '.4f')} | {r['alternative']} "
      f"| {_fmt(r['alt_s'], '.4f')} | {_fmt(r['speedup'], '.2f')}x "
      f"| {_fmt(r['ours_first_s'], '.2f')} | {_fmt(r['alt_first_s'], '.2f')} "
      f"| {r.get('ours_mib', '-')} | {r.get('alt_mib', '-')} "
      f"| {r['ours_accuracy']} | {r['alt_accuracy'] or '-'} |\n"
      for r in rows)
  return head + body


def main(argv):
  del argv
  f = flags.FLAGS
  print(f"devices: {jax.devices()}")
  rows = []
  cases = {"sinkhorn": lambda: sinkhorn_case(f.quick, f.repeats),
           "kmeans": lambda: kmeans_case(f.quick, f.repeats, f.mnist_dir),
           "mcr2": lambda: mcr2_case(f.quick, f.repeats),
           "throughput": lambda: throughput_case(f.quick, f.repeats)}
  for name in f.cases:
    if name not in cases:
      raise app.UsageError(f"unknown case {name!r}; choose from {sorted(cases)}")
    print(f"running {name} ...", flush=True)
    rows += cases[name]()
  table = to_markdown(rows)
  print(table)
  if f.out:
    out = pathlib.Path(f.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(f"devices: {jax.devices()}\n\n{table}")
    (out / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
  define_flags()
  app.run(main)
