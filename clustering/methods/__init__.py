"""Clustering methods: a model, a loss per training phase, an assignment rule.

``get(config.method)`` returns the class; see :mod:`clustering.methods.base`
for the interface the training loop relies on.
"""

from clustering.methods.base import Method
from clustering.methods.clam import ClAM
from clustering.methods.icon import ICon
from clustering.methods.mcr2 import MCR2
from clustering.methods.soft_kmeans import SoftKMeans
from clustering.methods.swav import SwAV

METHODS = {
    "mcr2": MCR2,
    "cpp": MCR2,
    "swav": SwAV,
    "soft_kmeans": SoftKMeans,
    "clam": ClAM,
    "icon": ICon,
}


def get(name: str) -> type[Method]:
  if name not in METHODS:
    raise ValueError(f"Unknown method {name!r}; expected one of "
                     f"{sorted(METHODS)}.")
  return METHODS[name]
