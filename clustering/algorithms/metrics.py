"""Clustering metrics: Hungarian accuracy, NMI, ARI, silhouette.

Accuracy matches clusters to classes with scipy's `linear_sum_assignment` on
the confusion matrix (the standard deep-clustering ACC); NMI (arithmetic
normalisation) and ARI are scikit-learn's. Report which split a number is on.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as sk_metrics


def _labels(y, name):
  y = np.asarray(y)
  if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"`{name}` must be a 1-D integer array, got dtype "
                     f"{y.dtype} and shape {y.shape}.")
  return y


def _pair(labels_true, labels_pred):
  t = _labels(labels_true, "labels_true")
  p = _labels(labels_pred, "labels_pred")
  if t.shape != p.shape:
    raise ValueError(f"`labels_true` {t.shape} and `labels_pred` {p.shape} "
                     "must have the same shape.")
  return t, p


def _confusion(labels_true, labels_pred):
  """``counts [classes, clusters]``, the classes, the clusters, and the
  Hungarian matching ``(rows, cols)`` that maximises the matched counts."""
  t, p = _pair(labels_true, labels_pred)
  classes, t_idx = np.unique(t, return_inverse=True)
  clusters, p_idx = np.unique(p, return_inverse=True)
  counts = np.zeros((len(classes), len(clusters)), np.int64)
  np.add.at(counts, (t_idx, p_idx), 1)
  rows, cols = linear_sum_assignment(-counts)
  return counts, classes, clusters, rows, cols


def hungarian_accuracy(labels_true, labels_pred) -> float:
  """Best one-to-one cluster-to-class matching accuracy, in [0, 1]."""
  counts, _, _, rows, cols = _confusion(labels_true, labels_pred)
  return float(counts[rows, cols].sum() / counts.sum())


def matched_confusion(labels_true, labels_pred):
  """Confusion matrix with its columns in Hungarian-matched order.

  Returns:
    ``(counts [classes, clusters], classes, clusters)``: ``counts[i, j]`` is
    how many examples of ``classes[i]`` fell in ``clusters[j]``; matched
    clusters come first, in the order of the classes they are matched to
    (the matching of :func:`hungarian_accuracy`), unmatched clusters last.
  """
  counts, classes, clusters, rows, cols = _confusion(labels_true, labels_pred)
  matched = cols[np.argsort(rows)]
  order = np.concatenate([matched, np.setdiff1d(np.arange(len(clusters)),
                                                matched)]).astype(int)
  return counts[:, order], classes, clusters[order]


def normalized_mutual_info(labels_true, labels_pred) -> float:
  t, p = _pair(labels_true, labels_pred)
  return float(sk_metrics.normalized_mutual_info_score(t, p))


def adjusted_rand_index(labels_true, labels_pred) -> float:
  t, p = _pair(labels_true, labels_pred)
  return float(sk_metrics.adjusted_rand_score(t, p))


def cluster_size_entropy(labels_pred, num_clusters: int) -> float:
  """Entropy of the cluster sizes over ``log num_clusters`` (1: equal
  sizes; lower as clusters shrink or empty). Needs no labels."""
  p = np.bincount(_labels(labels_pred, "labels_pred"),
                  minlength=num_clusters) / len(labels_pred)
  p = p[p > 0]
  return float(-np.sum(p * np.log(p)) / np.log(num_clusters))


# Above this many samples the silhouette (O(n^2)) is that of a seeded sample.
SILHOUETTE_MAX_SAMPLES = 10_000


def clustering_metrics(labels_true, labels_pred, features=None) -> dict:
  """ACC, NMI, ARI and (when `features` is given) silhouette: exact up to
  :data:`SILHOUETTE_MAX_SAMPLES` samples, above on a seeded sample of that
  many (scikit-learn's ``sample_size``)."""
  out = {
      "acc": hungarian_accuracy(labels_true, labels_pred),
      "nmi": normalized_mutual_info(labels_true, labels_pred),
      "ari": adjusted_rand_index(labels_true, labels_pred),
  }
  if features is not None:
    p = _labels(labels_pred, "labels_pred")
    sample = (SILHOUETTE_MAX_SAMPLES if len(p) > SILHOUETTE_MAX_SAMPLES
              else None)
    out["silhouette"] = (float(sk_metrics.silhouette_score(
        features, p, sample_size=sample, random_state=0))
                         if 1 < len(np.unique(p)) < len(p) else float("nan"))
  return out
