"""Every Python snippet in the README runs."""

import pathlib
import re
import shlex

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_snippets_execute():
  snippets = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  assert snippets
  for code in snippets:
    exec(compile(code, str(README), "exec"), {})


def test_readme_first_lines_are_the_two_commands():
  lines = [l.strip() for l in README.read_text().splitlines() if l.strip()]
  assert lines[1].endswith(
      "python -m experiments.main --config=configs/mcr2.py")
  assert lines[2] == "python -m pytest -q tests"
  ci = (README.parent / ".ci" / "run").read_text()
  assert lines[2] in ci


def _main_commands(text):
  """Every `python -m experiments.main ...` command line in `text`."""
  out = []
  for line in text.splitlines():
    # Command blocks are indented; inline mentions in prose are not.
    if not line.startswith("    ") or "python -m experiments.main" not in line:
      continue
    command = line[line.index("python -m experiments.main"):].strip("` ")
    command = command.split("`")[0]
    if "<" not in command and "[" not in command:  # placeholders
      out.append(shlex.split(command)[3:])
  return out


def test_readme_training_commands_parse_into_valid_configs(monkeypatch):
  """The commands are not trained here (minutes each), but each one's
  config file, arguments and overrides load and validate exactly as
  `experiments.main` would load them."""
  from absl import flags
  from ml_collections import config_flags
  from experiments import train

  monkeypatch.chdir(README.parent)
  commands = _main_commands(README.read_text())
  assert len(commands) >= 2
  for argv in commands:
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values,
                                    lock_config=True,
                                    sys_argv=["main"] + argv)
    flags.DEFINE_string("workdir", None, "", flag_values=values)
    values(["main"] + argv)
    train.validate_config(values.config, num_devices=1)
