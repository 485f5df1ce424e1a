r"""Every objective on the embedded digits data, in one short run.

    python -m experiments.tour [--restarts=10] [--clam_steps=300]

Loads scikit-learn's digits (1,797 real 8x8 images, no network), scales the
pixels to [0, 1] and, with the objectives and the estimators:

* fits annealed soft k-means (DKM schedule) with restarts run under `vmap`;
* assigns samples to those centroids by balanced Sinkhorn OT;
* scores memberships with MCR^2 (true labels should compress best) and picks
  the number of clusters with CPP's coding length;
* trains ClAM's memories on its masked completion loss (the `ClAM`
  estimator: the method's own loss and assignment) and compares their
  silhouette with k-means';
* evaluates the I-Con loss of a kNN graph against the soft k-means cluster
  kernel.

It prints a table of ACC/NMI/ARI/silhouette and the objective values.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from sklearn import datasets

import clustering
import objectives as O
from clustering.algorithms import metrics

_RESTARTS = flags.DEFINE_integer("restarts", 10, "soft k-means restarts.")
_ANNEAL_STEPS = flags.DEFINE_integer("anneal_steps", 60, "DKM annealing steps.")
_CLAM_STEPS = flags.DEFINE_integer("clam_steps", 300, "ClAM Adam steps.")
_SEED = flags.DEFINE_integer("seed", 0, "random seed.")


def load_digits():
  x, y = datasets.load_digits(return_X_y=True)
  x = x / 16.0  # pixel intensities are 0..16; keep k-means' geometry
  return x.astype(np.float32), y.astype(np.int32)


def run(restarts=10, anneal_steps=60, clam_steps=300, seed=0, log=print):
  start = time.time()
  x, y = load_digits()
  n, d = x.shape
  k = 10
  rows = []

  fit = clustering.annealed_soft_kmeans(x, k, n_init=restarts,
                                        steps=anneal_steps, seed=seed)
  centroids, inertia = fit.centroids, float(fit.inertia)
  km_labels = np.asarray(jnp.argmin(O.squared_distances(x, centroids), 1))
  rows.append(("soft k-means (DKM annealing)",
               metrics.clustering_metrics(y, km_labels, x),
               f"inertia {inertia:.0f}"))

  unit = x / np.linalg.norm(x, axis=1, keepdims=True)
  protos = centroids / jnp.linalg.norm(centroids, axis=1, keepdims=True)
  ot = O.sinkhorn(unit @ protos.T, epsilon=0.05, tol=1e-4)
  ot_labels = np.asarray(jnp.argmax(ot.plan, 1)).astype(np.int32)
  rows.append(("Sinkhorn balanced assignment",
               metrics.clustering_metrics(y, ot_labels, x),
               f"{int(ot.iterations)} iters, err {float(ot.error):.1e}"))

  clam = clustering.ClAM(n_clusters=k, max_iter=clam_steps,
                         random_state=seed).fit(x)
  rows.append(("ClAM (masked completion)",
               metrics.clustering_metrics(y, clam.labels_, x),
               f"loss {float(clam.loss_curve_[-1]):.3f}, "
               f"beta {clam.beta_:.2f}"))

  log(f"digits: n={n}, d={d}, k={k}, devices={jax.devices()}")
  log(f"{'method':32s} {'ACC':>6s} {'NMI':>6s} {'ARI':>6s} {'silh':>6s}  notes")
  for name, m, note in rows:
    log(f"{name:32s} {m['acc']:6.3f} {m['nmi']:6.3f} {m['ari']:6.3f} "
        f"{m['silhouette']:6.3f}  {note}")

  onehot = lambda labels: jax.nn.one_hot(labels, k)
  random_labels = np.random.default_rng(seed).integers(0, k, n)
  log("\nMCR^2 loss (eps_sq=0.5, lower = more discriminative partition):")
  for name, labels in (("true labels", y), ("soft k-means", km_labels),
                       ("random labels", random_labels)):
    value = float(O.mcr2_loss(unit, onehot(labels), eps_sq=0.5))
    log(f"  {name:14s} {value:8.3f}")

  log("\nCPP coding length per candidate k (eps_sq=0.1; lowest is chosen):")
  lengths = {}
  for cand in (5, 8, 10, 12, 15):
    labels = clustering.annealed_soft_kmeans(
        x, cand, n_init=max(restarts // 2, 1), steps=anneal_steps,
        seed=seed).labels
    lengths[cand] = float(O.coding_length(unit, labels, eps_sq=0.1,
                                          num_clusters=cand))
    log(f"  k={cand:2d} {lengths[cand]:12.1f}")
  log(f"  chosen k = {min(lengths, key=lengths.get)}")

  resp = O.soft_kmeans_assignments(x, centroids,
                                   temperature=float(jnp.mean(
                                       O.squared_distances(x, centroids))))
  log_p = O.debias(O.knn_kernel(x, k=3, walks=1), alpha=0.7)
  icon = float(O.icon_loss(log_p, O.debias(O.cluster_kernel(resp), alpha=0.7)))
  uniform = float(O.icon_loss(log_p, jnp.full((n, n), -np.log(n))))
  log(f"\nI-Con debiased kNN -> cluster-kernel KL: {icon:.4f} "
      f"(uniform q: {uniform:.4f})")
  log(f"total {time.time() - start:.1f} s")
  return {"rows": rows, "coding_length": lengths, "icon": icon,
          "icon_uniform": uniform}


def main(argv):
  del argv
  run(restarts=_RESTARTS.value, anneal_steps=_ANNEAL_STEPS.value,
      clam_steps=_CLAM_STEPS.value, seed=_SEED.value)


if __name__ == "__main__":
  app.run(main)
