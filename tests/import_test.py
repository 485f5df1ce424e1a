"""The layers import one way, and light entry points stay light."""

import subprocess
import sys

import pytest

HEAVY = ("flax", "grain", "tensorflow_datasets", "optax")


@pytest.mark.parametrize("statement", [
    "import objectives",
    "from clustering import kmeans",
    "from clustering import hungarian_accuracy",
    "from clustering.algorithms import spectral, neighbors, metrics",
])
def test_light_imports_do_not_pull_in_training_libraries(statement):
  code = (f"import sys; {statement}; "
          f"print([m for m in {HEAVY!r} if m in sys.modules])")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True)
  assert out.stdout.strip() == "[]", (statement, out.stdout)


def test_estimators_do_not_import_the_input_pipeline_or_tfds():
  code = ("import sys; import clustering; clustering.KMeans; "
          "clustering.MCR2Clustering; "
          "print([m for m in ('grain', 'tensorflow_datasets', 'experiments') "
          "if m in sys.modules])")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True)
  assert out.stdout.strip() == "[]", out.stdout


def test_nothing_outside_objectives_imports_its_private_modules():
  import pathlib  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(__file__).resolve().parents[1]
  offenders = [str(p.relative_to(root)) for folder in (
      "clustering", "experiments", "benchmarks", "configs")
               for p in (root / folder).rglob("*.py")
               if "objectives._" in p.read_text()
               or "from objectives import _" in p.read_text()]
  assert not offenders


def test_library_and_configs_name_no_path_outside_the_repository():
  import pathlib  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(__file__).resolve().parents[1]
  offenders = [str(p.relative_to(root)) for folder in (
      "clustering", "objectives", "experiments", "configs")
               for p in (root / folder).rglob("*.py")
               if "../shared" in p.read_text() or "shared/data" in
               p.read_text()]
  assert not offenders
