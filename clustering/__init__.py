"""Clustering on top of the objectives, in four parts (imports point down):

* :mod:`clustering.estimators` - scikit-learn estimators (``KMeans``,
  ``SinkhornKMeans``, ``MCR2Clustering``, ...);
* :mod:`clustering.methods` - each method defined once: loss, assignment,
  phases (with :mod:`clustering.models`, its flax.nnx model);
* :mod:`clustering.data` and :mod:`clustering.checkpoint` - sources, the
  input pipeline and checkpoints of training runs;
* :mod:`clustering.algorithms` - k-means, spectral clustering, neighbour
  mining and metrics on arrays (JAX, NumPy, SciPy only).

May import `objectives`; never imports `experiments`. Names are loaded on
first use, so ``from clustering import kmeans`` imports neither flax nor
grain nor TFDS.
"""

import importlib

_EXPORTS = {
    "kmeans": "clustering.algorithms.kmeans",
    "KMeansResult": "clustering.algorithms.kmeans",
    "annealed_soft_kmeans": "clustering.algorithms.kmeans",
    "SoftKMeansResult": "clustering.algorithms.kmeans",
    "spectral_clustering": "clustering.algorithms.spectral",
    "nearest_neighbors": "clustering.algorithms.neighbors",
    "hungarian_accuracy": "clustering.algorithms.metrics",
    "normalized_mutual_info": "clustering.algorithms.metrics",
    "adjusted_rand_index": "clustering.algorithms.metrics",
    "clustering_metrics": "clustering.algorithms.metrics",
    "KMeans": "clustering.estimators",
    "MiniBatchKMeans": "clustering.estimators",
    "SoftKMeans": "clustering.estimators",
    "SinkhornKMeans": "clustering.estimators",
    "ClAM": "clustering.estimators",
    "MCR2Clustering": "clustering.estimators",
    "IConClustering": "clustering.estimators",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f"module 'clustering' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_EXPORTS))
