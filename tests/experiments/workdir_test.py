"""A workdir belongs to one run: stored config, refused configs, the lock,
fresh names (DESIGN §10)."""

import datetime
import json
import os
import pathlib
import signal
import subprocess
import sys
import types

import pytest

from configs import cpp
from configs import icon
from configs import mcr2
from configs import soft_kmeans
from experiments import workdir as workdir_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _snapshot(path):
  """Every file under ``path`` with its bytes and modification time."""
  return {str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns)
          for p in sorted(pathlib.Path(path).rglob("*")) if p.is_file()}


def test_the_first_command_stores_its_config(tmp_path):
  config = mcr2.get_config("quick")
  with workdir_lib.Workdir(str(tmp_path / "run"), config):
    pass
  stored = json.loads((tmp_path / "run" / "config.json").read_text())
  assert stored["method"] == "mcr2"
  assert stored["num_clusters"] == 10
  assert stored["model"]["hidden"] == [64]  # tuples as JSON lists
  # The same command again is the same run.
  with workdir_lib.Workdir(str(tmp_path / "run"), mcr2.get_config("quick")):
    pass


@pytest.mark.parametrize("change, named", [
    (lambda c: setattr(c, "num_clusters", 12), "num_clusters: 10 -> 12"),
    (lambda c: setattr(c, "seed", 1), "seed: 0 -> 1"),
    (lambda c: c.model.update(hidden=(32,)), "model.hidden: [64] -> [32]"),
    (lambda c: c.data.update(batch_size=32), "data.batch_size: 64 -> 32"),
    (lambda c: c.optimizer.update(learning_rate=1e-2),
     "optimizer.learning_rate: 0.001 -> 0.01"),
    # mcr2's schedule is cosine: the length changes every step's rate.
    (lambda c: c.train.update(num_steps=60), "train.num_steps: 30 -> 60"),
])
def test_a_config_of_another_run_is_refused_touching_nothing(tmp_path, change,
                                                              named):
  run = tmp_path / "run"
  with workdir_lib.Workdir(str(run), mcr2.get_config("quick")):
    (run / "metrics.jsonl").write_text('{"step": 5, "loss": 1.0}\n')
  before = _snapshot(run)
  config = mcr2.get_config("quick")
  change(config)
  with pytest.raises(workdir_lib.WorkdirError) as error:
    with workdir_lib.Workdir(str(run), config):
      pytest.fail("entered a workdir of another run")
  assert named in str(error.value)
  assert "\n" not in str(error.value)
  assert _snapshot(run) == before


def test_another_method_is_refused_naming_it(tmp_path):
  with workdir_lib.Workdir(str(tmp_path), mcr2.get_config("quick")):
    pass
  with pytest.raises(workdir_lib.WorkdirError, match="method: 'mcr2' -> 'cpp'"):
    with workdir_lib.Workdir(str(tmp_path), cpp.get_config("quick")):
      pass


def test_fields_that_change_no_step_may_differ(tmp_path):
  with workdir_lib.Workdir(str(tmp_path),
                           soft_kmeans.get_config("autoencoder,quick")):
    pass
  config = soft_kmeans.get_config("autoencoder,quick")
  assert config.optimizer.schedule == "constant"
  config.train.update(log_every=1, eval_every=7, checkpoint_every=3,
                      nonfinite="skip", num_steps=90)  # constant schedule
  config.eval.batch_size = 100
  config.data.eval_split = "test"
  with workdir_lib.Workdir(str(tmp_path), config):
    pass
  stored = json.loads((tmp_path / "config.json").read_text())
  assert stored["train"]["num_steps"] == 30  # the first command's record


def test_a_field_added_later_is_read_as_its_old_value(tmp_path):
  """A run stored before ``data.neighbor_pairs`` existed trained on every
  neighbour pair: it resumes under 'all' and is refused under 'mutual'."""
  with workdir_lib.Workdir(str(tmp_path), mcr2.get_config("quick")):
    pass
  stored = json.loads((tmp_path / "config.json").read_text())
  del stored["data"]["neighbor_pairs"]
  (tmp_path / "config.json").write_text(json.dumps(stored))
  config = mcr2.get_config("quick")
  config.data.neighbor_pairs = "all"
  with workdir_lib.Workdir(str(tmp_path), config):
    pass
  config.data.neighbor_pairs = "mutual"
  with pytest.raises(workdir_lib.WorkdirError,
                     match="data.neighbor_pairs: 'all' -> 'mutual'"):
    with workdir_lib.Workdir(str(tmp_path), config):
      pass


@pytest.mark.parametrize("config_module, section, field, value, message", [
    (mcr2, "data", "self_pair_share", 0.5,
     "data.self_pair_share: 0.0 -> 0.5"),
    (icon, "objective", "overcluster_factor", 5,
     "objective.overcluster_factor: 0 -> 5"),
    (icon, "data.augment", "brightness", 0.4,
     "data.augment.brightness: 0.0 -> 0.4"),
    (icon, "data.augment", "contrast", 0.4,
     "data.augment.contrast: 0.0 -> 0.4"),
])
def test_a_run_stored_before_an_option_existed_resumes_without_it(
    config_module, section, field, value, message, tmp_path):
  with workdir_lib.Workdir(str(tmp_path), config_module.get_config("quick")):
    pass
  stored = json.loads((tmp_path / "config.json").read_text())
  node = stored
  for key in section.split("."):
    node = node[key]
  del node[field]
  (tmp_path / "config.json").write_text(json.dumps(stored))
  with workdir_lib.Workdir(str(tmp_path), config_module.get_config("quick")):
    pass
  config = config_module.get_config("quick")
  config_section = config
  for key in section.split("."):
    config_section = config_section[key]
  config_section[field] = value
  with pytest.raises(workdir_lib.WorkdirError, match=message):
    with workdir_lib.Workdir(str(tmp_path), config):
      pass


@pytest.mark.parametrize("stored, new, resolved, refused", [
    ("exact", "auto", "exact", None),   # 'auto' means 'exact' here
    ("auto", "exact", "exact", None),
    ("exact", "auto", "ivf", "data.neighbor_search: 'exact' -> 'ivf'"),
    ("auto", "ivf", "exact", "data.neighbor_search: 'exact' -> 'ivf'"),
    ("auto", "auto", "ivf", None),
])
def test_an_auto_search_is_compared_as_what_it_resolves_to(
    stored, new, resolved, refused, tmp_path):
  """``data.neighbor_search='auto'`` is 'exact' or 'ivf' by the number of
  examples: the claim lets 'auto' against a stored value pass, and the
  comparison after loading the data refuses a search that differs."""
  config = icon.get_config("quick")
  config.data.neighbor_search = stored
  with workdir_lib.Workdir(str(tmp_path), config):
    pass
  config = icon.get_config("quick")
  config.data.neighbor_search = new
  with workdir_lib.Workdir(str(tmp_path), config) as claim:
    if refused is None:
      claim.confirm_resolved({"data.neighbor_search": resolved})
    else:
      with pytest.raises(workdir_lib.WorkdirError, match=refused):
        claim.confirm_resolved({"data.neighbor_search": resolved})


def test_concrete_searches_that_differ_are_refused_at_the_claim(tmp_path):
  config = icon.get_config("quick")
  config.data.neighbor_search = "exact"
  with workdir_lib.Workdir(str(tmp_path), config):
    pass
  config.data.neighbor_search = "approximate"
  with pytest.raises(workdir_lib.WorkdirError,
                     match="data.neighbor_search: 'exact' -> 'approximate'"):
    with workdir_lib.Workdir(str(tmp_path), config):
      pytest.fail("entered a workdir of another run")
  # Before the data are loaded nothing tells 'auto' from 'exact': a finished
  # run is only reused by a config that names its search.
  config.data.neighbor_search = "auto"
  assert not workdir_lib.holds_run_of(str(tmp_path), config)
  config.data.neighbor_search = "exact"
  assert workdir_lib.holds_run_of(str(tmp_path), config)


def test_a_second_writer_is_refused_at_once(tmp_path):
  config = mcr2.get_config("quick")
  with workdir_lib.Workdir(str(tmp_path), config):
    with pytest.raises(workdir_lib.WorkdirError,
                       match=f"being written by process {os.getpid()}"):
      with workdir_lib.Workdir(str(tmp_path), config):
        pass
  with workdir_lib.Workdir(str(tmp_path), config):  # released on exit
    pass


def test_a_killed_writer_leaves_no_stale_lock(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c",
       "import sys, time; from configs import mcr2; "
       "from experiments import workdir as w; "
       "d = w.Workdir(sys.argv[1], mcr2.get_config('quick')).__enter__(); "
       "print('locked', flush=True); time.sleep(600)", str(tmp_path)],
      cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(workdir_lib.WorkdirError, match="being written by"):
      with workdir_lib.Workdir(str(tmp_path), mcr2.get_config("quick")):
        pass
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with workdir_lib.Workdir(str(tmp_path), mcr2.get_config("quick")):
    pass


def test_other_processes_of_a_run_check_the_config_but_do_not_lock(tmp_path):
  config = mcr2.get_config("quick")
  with workdir_lib.Workdir(str(tmp_path), config):
    with workdir_lib.Workdir(str(tmp_path), config, is_main=False):
      pass  # process 1 of the same run: no lock taken
    other = mcr2.get_config("quick")
    other.seed = 3
    with pytest.raises(workdir_lib.WorkdirError, match="seed: 0 -> 3"):
      with workdir_lib.Workdir(str(tmp_path), other, is_main=False):
        pass


def test_an_unreadable_stored_config_is_refused(tmp_path):
  (tmp_path / "config.json").write_text('{"method": "mcr')
  with pytest.raises(workdir_lib.WorkdirError, match="cannot be read"):
    with workdir_lib.Workdir(str(tmp_path), mcr2.get_config("quick")):
      pass


def test_default_workdirs_of_one_second_do_not_collide(tmp_path, monkeypatch):
  one_second = datetime.datetime(2026, 1, 2, 3, 4, 5)
  monkeypatch.setattr(workdir_lib, "datetime", types.SimpleNamespace(
      datetime=types.SimpleNamespace(now=lambda: one_second)))
  made = {workdir_lib.new_workdir("mcr2", root=str(tmp_path))
          for _ in range(20)}
  assert len(made) == 20
  assert all(os.path.basename(p).startswith("mcr2-20260102-030405-")
             and os.path.isdir(p) for p in made)


def test_a_run_that_fails_before_writing_leaves_no_trace(tmp_path):
  config = mcr2.get_config("quick")
  new = tmp_path / "new"
  with pytest.raises(ValueError, match="bad data"):
    with workdir_lib.Workdir(str(new), config):
      raise ValueError("bad data")  # what set-up raises for a bad file
  assert not new.exists()
  existing = tmp_path / "existing"
  existing.mkdir()
  with pytest.raises(ValueError):
    with workdir_lib.Workdir(str(existing), config):
      raise ValueError("bad data")
  assert sorted(p.name for p in existing.iterdir()) == [".lock"]
  # Once the run has written something, a failure keeps everything.
  with pytest.raises(ValueError):
    with workdir_lib.Workdir(str(new), config):
      (new / "metrics.jsonl").write_text("{}\n")
      raise ValueError("diverged")
  assert sorted(p.name for p in new.iterdir()) == [
      ".lock", "config.json", "metrics.jsonl"]
