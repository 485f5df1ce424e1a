"""Differentiable clustering objectives as pure JAX functions.

Every function takes arrays first and hyperparameters as keywords, validates
shapes at trace time (raising ``ValueError`` that names the argument), works
under ``jit``/``grad``/``vmap`` and accumulates in at least float32. The
losses and assignments whose math has batch-level statistics (soft k-means,
Sinkhorn, MCR² and the membership, ClAM, ``icon_loss``) take ``axis_name``
to compute the exact global-batch value inside ``shard_map``/``pmap``. The
I-Con kernels and ``coding_length`` do not: they relate every pair of the
rows they are given, so under ``shard_map`` all-gather the rows first (or
call them under ``jax.jit`` on a sharded batch, which is always global).

Inputs holding NaN/Inf raise ``ValueError`` when passed eagerly; inside
``jit`` wrap the function with :func:`checked` to get the same errors.
"""

from objectives._checks import checked
from objectives._clam import am_assignments
from objectives._clam import am_energy
from objectives._clam import am_evolve
from objectives._clam import clam_loss
from objectives._icon import augmentation_kernel
from objectives._icon import cluster_kernel
from objectives._icon import debias
from objectives._icon import gaussian_kernel
from objectives._icon import icon_loss
from objectives._icon import knn_kernel
from objectives._icon import label_kernel
from objectives._icon import mixture_kernel
from objectives._icon import pairwise_distances
from objectives._icon import student_t_kernel
from objectives._mcr2 import cluster_grams
from objectives._mcr2 import coding_length
from objectives._mcr2 import coding_rate
from objectives._mcr2 import compression_rate
from objectives._mcr2 import doubly_stochastic_membership
from objectives._mcr2 import logdet_spd
from objectives._mcr2 import mcr2_loss
from objectives._mcr2 import total_coding_rate_loss
from objectives._sinkhorn import SinkhornOutput
from objectives._sinkhorn import sinkhorn
from objectives._sinkhorn import swav_codes
from objectives._soft_kmeans import dkm_inverse_temperature
from objectives._soft_kmeans import soft_kmeans_assignments
from objectives._soft_kmeans import soft_kmeans_centroids
from objectives._soft_kmeans import soft_kmeans_loss
from objectives._soft_kmeans import squared_distances
