"""Data: sources (:mod:`.sources`), IDX files (:mod:`.idx`) and the input
pipeline (:mod:`.pipeline`: order, neighbour pairs, statistics, views)."""

from clustering.data.pipeline import AugmentSpec
from clustering.data.pipeline import augment
from clustering.data.pipeline import batch_indices
from clustering.data.pipeline import index_dataset
from clustering.data.pipeline import input_stats
from clustering.data.pipeline import InputSpec
from clustering.data.pipeline import Inputs
from clustering.data.pipeline import InputStats
from clustering.data.pipeline import mine_neighbors
from clustering.data.pipeline import NEIGHBOR_PAIRS
from clustering.data.pipeline import NEIGHBOR_SEARCH
from clustering.data.pipeline import model_inputs
from clustering.data.pipeline import partner_indices
from clustering.data.pipeline import resolve_neighbor_search
from clustering.data.pipeline import standardize
from clustering.data.pipeline import TrainingBatches
from clustering.data.sources import check_finite_rows
from clustering.data.sources import Dataset
from clustering.data.sources import from_arrays
from clustering.data.sources import gaussian_mixture
from clustering.data.sources import load
from clustering.data.sources import union_of_subspaces
