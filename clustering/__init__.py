"""Models, assignment algorithms, metrics and data for clustering.

May import `objectives`; never imports `experiments`.
"""

from clustering.metrics import adjusted_rand_index
from clustering.metrics import clustering_metrics
from clustering.metrics import hungarian_accuracy
from clustering.metrics import normalized_mutual_info
from clustering.kmeans import KMeansResult
from clustering.kmeans import kmeans
from clustering.kmeans import SoftKMeansResult
from clustering.kmeans import annealed_soft_kmeans
from clustering.neighbors import nearest_neighbors
from clustering.estimators import ClAM
from clustering.estimators import IConClustering
from clustering.estimators import KMeans
from clustering.estimators import MCR2Clustering
from clustering.estimators import SinkhornKMeans
from clustering.estimators import SoftKMeans
