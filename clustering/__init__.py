"""Models, assignment algorithms, metrics and data for clustering.

May import `objectives`; never imports `experiments`.
"""

from clustering.metrics import adjusted_rand_index
from clustering.metrics import clustering_metrics
from clustering.metrics import hungarian_accuracy
from clustering.metrics import normalized_mutual_info
from clustering.kmeans import KMeansResult
from clustering.kmeans import kmeans
