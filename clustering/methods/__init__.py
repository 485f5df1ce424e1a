"""Clustering methods, each defined once: loss, model, assignment, phases.

``build(config)`` returns the :class:`~clustering.methods.base.Method` the
training loop runs (``get(config.method)`` its class), wrapped by
:class:`~clustering.methods.selflabel.SelfLabelled` when the config ends
with self-labelling; each module also exposes the method's pure
loss and assignment functions, which the estimators call too.
"""

from clustering.methods.base import Method
from clustering.methods.base import Phase
from clustering.methods.base import phase_at
from clustering.methods.clam import ClAM
from clustering.methods.dkm import DKM
from clustering.methods.icon import ICon
from clustering.methods.mcr2 import MCR2
from clustering.methods.selflabel import SelfLabelled
from clustering.methods.swav import SwAV
from clustering.methods import selflabel as _selflabel
from clustering import specs as _specs

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


def build(config) -> Method:
  """``config.method`` built from ``config`` once, ending with the
  self-labelling phase when ``config.selflabel.steps > 0``."""
  method = get(config.method).from_config(config)
  hp = _specs.from_config(_selflabel.Hparams, config.get("selflabel"),
                          "selflabel")
  if not hp.steps:
    return method
  return SelfLabelled(method, hp, num_steps=int(config.train.num_steps))
