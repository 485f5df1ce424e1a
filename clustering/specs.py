"""Frozen, typed settings read from a config section once.

Models (:class:`clustering.models.ModelSpec`), augmentations
(:class:`clustering.data.AugmentSpec`) and each method's hyperparameters
(``Hparams`` in :mod:`clustering.methods`) are frozen dataclasses built by
:func:`from_config` outside traced code, so a misspelt, missing or
out-of-range field is an error before anything runs.
"""

from __future__ import annotations

import dataclasses


def from_config(cls, section, where: str):
  """``cls(**section)`` for a frozen dataclass ``cls``.

  Args:
    cls: the dataclass; its ``__post_init__`` checks ranges.
    section: a ConfigDict (or mapping) of field values; lists become tuples.
    where: the section's name in errors, e.g. ``'objective'``.

  Raises:
    ValueError: naming an unknown field, or a missing one that has no
      default.
  """
  fields = dataclasses.fields(cls)
  names = {f.name for f in fields}
  given = dict(section.items()) if section is not None else {}
  unknown = sorted(set(given) - names)
  if unknown:
    raise ValueError(f"{where}.{unknown[0]} is not a field of {where}; "
                     f"expected some of {sorted(names)}.")
  missing = sorted(f.name for f in fields if f.name not in given and
                   f.default is dataclasses.MISSING)
  if missing:
    raise ValueError(f"{where}.{missing[0]} is missing from the config.")
  return cls(**{k: (tuple(v) if isinstance(v, list) else v)
                for k, v in given.items()})
