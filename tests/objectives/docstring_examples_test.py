"""Every public objective's docstring has a runnable ``Examples:`` section,
and each example prints what the docstring says it prints."""

import doctest
import inspect

import pytest

import objectives

PUBLIC = sorted(name for name, value in vars(objectives).items()
                if not name.startswith("_") and inspect.isfunction(value))


def test_every_public_function_is_listed():
  assert len(PUBLIC) >= 30 and "sinkhorn" in PUBLIC and "checked" in PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_docstring_examples_run(name):
  fn = getattr(objectives, name)
  doc = inspect.getdoc(fn)
  assert "Examples:" in doc and ">>>" in doc, f"{name} has no examples"
  test = doctest.DocTestParser().get_doctest(
      doc, {}, f"objectives.{name}", inspect.getsourcefile(fn), 0)
  runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
  failures = []
  runner.run(test, out=failures.append)
  assert not failures, "".join(failures)
