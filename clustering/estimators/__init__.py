"""scikit-learn-compatible estimators over a feature matrix ``X [n, d]``.

For clustering embeddings (or pixels) directly, without a training loop:

    from clustering import SinkhornKMeans
    labels = SinkhornKMeans(n_clusters=10, random_state=0).fit_predict(X)

Every estimator follows scikit-learn's conventions (constructor arguments
are stored unchanged, fitted attributes end in ``_``, ``get_params``/
``set_params``, ``fit``/``fit_predict``/``labels_``, ``random_state``) and
runs its numerical work jitted on whatever device JAX has, in float32. They
pass ``sklearn.utils.estimator_checks`` except where a check contradicts
what the method is (listed in ``tests/clustering/estimators_test.py``).

* :mod:`.centroids`: :class:`KMeans`, :class:`MiniBatchKMeans`,
  :class:`SoftKMeans`, :class:`SinkhornKMeans`;
* :mod:`.learned`: :class:`ClAM`, :class:`MCR2Clustering`,
  :class:`IConClustering`, which fit their method's own loss
  (:mod:`clustering.methods`) with one training helper (:mod:`.fit`).
"""

from clustering.estimators.centroids import KMeans
from clustering.estimators.centroids import MiniBatchKMeans
from clustering.estimators.centroids import SinkhornKMeans
from clustering.estimators.centroids import SoftKMeans
from clustering.estimators.learned import ClAM
from clustering.estimators.learned import IConClustering
from clustering.estimators.learned import MCR2Clustering

__all__ = ["KMeans", "MiniBatchKMeans", "SoftKMeans", "SinkhornKMeans", "ClAM",
           "MCR2Clustering", "IConClustering"]
