"""Every Python snippet in the README runs."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


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
