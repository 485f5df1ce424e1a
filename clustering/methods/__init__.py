"""Clustering methods, each defined once: loss, model, assignment, phases.

``get(config.method)`` returns the :class:`~clustering.methods.base.Method`
class the training loop runs; each module also exposes the method's pure
loss and assignment functions, which the estimators call too.
"""

from clustering.methods.base import Method
from clustering.methods.base import Phase
from clustering.methods.clam import ClAM
from clustering.methods.dkm import DKM
from clustering.methods.icon import ICon
from clustering.methods.mcr2 import MCR2
from clustering.methods.swav import SwAV

METHODS = {
    "mcr2": MCR2,
    "cpp": MCR2,
    "swav": SwAV,
    "soft_kmeans": DKM,
    "clam": ClAM,
    "icon": ICon,
}


def get(name: str) -> type[Method]:
  if name not in METHODS:
    raise ValueError(f"Unknown method {name!r}; expected one of "
                     f"{sorted(METHODS)}.")
  return METHODS[name]
