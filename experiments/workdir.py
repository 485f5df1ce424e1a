"""A workdir belongs to one run (DESIGN §10).

``Workdir(path, config)`` is held for the whole run:

* the run's config is stored as ``config.json`` when the workdir is new; a
  later command whose config differs in a field that changes the train
  state, the data or the input order is refused before anything in the
  workdir is touched, with one line naming the fields;
* a lock (``.lock``, ``fcntl.flock``) lets one process at a time write the
  workdir; a second one is refused at once. The kernel drops the lock when
  its process dies, SIGKILL included, so a killed run never leaves a stale
  lock.

In a multi-process run only process 0 takes the lock and writes
``config.json``; every process checks the stored config.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import tempfile
from typing import Any

__all__ = ["WorkdirError", "Workdir", "config_differences", "new_workdir"]

CONFIG_FILE = "config.json"
LOCK_FILE = ".lock"

# Fields that may differ between the commands of one run: how often to log,
# evaluate and save, what to do on a NaN, how to evaluate, where TFDS lives,
# how processes join. Everything else is the run's identity.
MAY_DIFFER = ("train.log_every", "train.eval_every", "train.checkpoint_every",
              "train.nonfinite", "eval.", "data.eval_split", "data.data_dir",
              "distributed.")

# Fields added after runs were stored, with the value a run stored without
# them had: resuming such a run is not refused for the field's absence.
ABSENT_MEANS = {"data.neighbor_pairs": "all", "data.self_pair_share": 0.0,
                "objective.overcluster_factor": 0,
                "data.augment.brightness": 0.0, "data.augment.contrast": 0.0}

# Fields whose 'auto' becomes a concrete value once the data are loaded
# (``data.neighbor_search``: 'exact' or 'ivf' by the number of examples). At
# the claim, 'auto' against a stored concrete value (or the reverse) is not
# yet a difference; the run compares the resolved values with
# ``Workdir.confirm_resolved`` after loading its data, so a run stored with
# 'exact' resumes under the 'auto' default when 'auto' means 'exact' there.
RESOLVED_AT_SETUP = ("data.neighbor_search",)
AUTO = "auto"


class WorkdirError(ValueError):
  """The workdir holds another run, or another process is writing it."""


def new_workdir(method: str, root: str = "runs") -> str:
  """A fresh folder ``root/<method>-<date>-<time>-<random>``, created
  atomically so that two launches in the same second never share one."""
  os.makedirs(root, exist_ok=True)
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  return tempfile.mkdtemp(prefix=f"{method}-{stamp}-", dir=root)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: tree}


def config_as_json(config) -> dict:
  """The config as plain JSON values (tuples become lists)."""
  tree = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return json.loads(json.dumps(tree, default=repr))


def config_differences(stored: dict, config, *,
                       resolved: dict[str, Any] | None = None,
                       defer_auto: bool = False) -> list[str]:
  """``'field: stored -> new'`` for each field that makes ``config`` another
  run than ``stored`` (a ``config_as_json`` dict).

  For the fields of ``RESOLVED_AT_SETUP``: ``resolved`` (``{field:
  value}``) says what 'auto' means in this run, and an 'auto' on either side
  is compared as that value; otherwise, with ``defer_auto``, a field that is
  'auto' on either side is left to that later comparison, and without it
  'auto' is compared as written.
  """
  old, new = _flatten(stored), _flatten(config_as_json(config))
  old = {**{f: v for f, v in ABSENT_MEANS.items() if f in new}, **old}
  resolved = dict(resolved or {})
  if set(resolved) - set(RESOLVED_AT_SETUP):
    raise ValueError(f"resolved: {sorted(resolved)} names a field not in "
                     f"{RESOLVED_AT_SETUP}.")
  for field in RESOLVED_AT_SETUP:
    if field in resolved:
      for fields in (old, new):
        if fields.get(field) == AUTO:
          fields[field] = resolved[field]
    elif defer_auto and AUTO in (old.get(field), new.get(field)):
      old.pop(field, None)
      new.pop(field, None)

  def may_differ(field):
    if any(field == p or (p.endswith(".") and field.startswith(p))
           for p in MAY_DIFFER):
      return True
    # The length of a run changes no step before it unless the learning
    # rate schedule or the start of self-labelling (its last steps) depends
    # on it.
    return field == "train.num_steps" and all(
        c.get("optimizer.schedule") == "constant"
        and not c.get("selflabel.steps") for c in (old, new))

  missing = object()
  return [f"{field}: {old.get(field, missing)!r} -> {new.get(field, missing)!r}"
          .replace(repr(missing), "(absent)")
          for field in sorted(set(old) | set(new))
          if old.get(field, missing) != new.get(field, missing)
          and not may_differ(field)]


def holds_run_of(path: str, config) -> bool:
  """Whether the workdir ``path`` stores a run of ``config`` (its
  ``config.json`` differs in no field that changes the run)."""
  try:
    with open(os.path.join(path, CONFIG_FILE)) as f:
      stored = json.load(f)
  except (OSError, ValueError):
    return False
  return not config_differences(stored, config)


class Workdir:
  """Claims ``path`` for ``config`` (a context manager; see module doc)."""

  def __init__(self, path: str, config, *, is_main: bool = True):
    self.path, self.config, self.is_main = path, config, is_main
    self._lock_file = None
    self._created: list[str] = []  # what this claim made, newest last

  def __enter__(self) -> "Workdir":
    stored = self._stored_config()
    if stored is not None:
      self._refuse_another_run(stored)
    if not self.is_main:
      return self
    if not os.path.isdir(self.path):
      os.makedirs(self.path)
      self._created.append(self.path)
    self._lock()
    try:
      stored = self._stored_config()  # it may have changed before the lock
      if stored is None:
        path = os.path.join(self.path, CONFIG_FILE)
        _atomic_write_json(path, config_as_json(self.config))
        self._created.append(path)
      else:
        self._refuse_another_run(stored)
    except BaseException:
      self.__exit__(*sys.exc_info())
      raise
    return self

  def __exit__(self, exc_type, exc, tb):
    # A run that failed before writing anything (bad data found during
    # set-up) leaves the workdir as it found it.
    if exc_type is not None and self._created and set(
        os.listdir(self.path)) <= {CONFIG_FILE, LOCK_FILE}:
      for path in reversed(self._created):
        if path == self.path:
          os.remove(os.path.join(path, LOCK_FILE))
          os.rmdir(path)
        else:
          os.remove(path)
    self._unlock()
    return False

  def _stored_config(self) -> dict | None:
    path = os.path.join(self.path, CONFIG_FILE)
    try:
      with open(path) as f:
        return json.load(f)
    except FileNotFoundError:
      return None
    except (OSError, ValueError) as e:
      raise WorkdirError(f"{path} cannot be read ({e}); this workdir's run "
                         "is unknown: use a new --workdir.") from e

  def confirm_resolved(self, resolved: dict[str, Any]) -> None:
    """Compares the stored run's ``RESOLVED_AT_SETUP`` fields with this
    run's, 'auto' read as ``resolved`` (``{field: value}``, known once the
    data are loaded); ``WorkdirError`` if they differ."""
    stored = self._stored_config()
    if stored is not None:
      self._refuse_another_run(stored, resolved=resolved)

  def _refuse_another_run(self, stored: dict, *,
                          resolved: dict[str, Any] | None = None) -> None:
    # At the claim (nothing resolved yet) an 'auto' waits for set-up.
    differences = config_differences(stored, self.config, resolved=resolved,
                                     defer_auto=resolved is None)
    if differences:
      raise WorkdirError(
          f"{self.path} holds another run (its config.json differs in "
          f"{'; '.join(differences)}): use a new --workdir, or the same "
          "config to resume it.")

  def _lock(self) -> None:
    path = os.path.join(self.path, LOCK_FILE)
    f = open(path, "a+")  # pylint: disable=consider-using-with
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      f.seek(0)
      holder = f.read().strip() or "another process"
      f.close()
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise
      raise WorkdirError(
          f"{self.path} is being written by {holder}; wait for it to finish "
          "or use another --workdir.") from None
    f.seek(0)
    f.truncate()
    f.write(f"process {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    self._lock_file = f

  def _unlock(self) -> None:
    if self._lock_file is not None:
      fcntl.flock(self._lock_file, fcntl.LOCK_UN)
      self._lock_file.close()
      self._lock_file = None


def _atomic_write_json(path: str, obj: dict) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)
