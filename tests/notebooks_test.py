"""Every notebook executes top to bottom and shows its key figures."""

import json
import os

import pytest

from experiments import notebooks

pytestmark = pytest.mark.slow  # minutes: the fast tier is -m 'not slow'

PATHS = notebooks.notebook_paths()


def test_there_are_three_notebooks_with_colab_install_cells():
  names = [os.path.basename(p) for p in PATHS]
  assert names == ["01_objectives_tour.ipynb",
                   "02_cluster_your_embeddings.ipynb", "03_train_mcr2.ipynb"]
  for path in PATHS:
    with open(path) as f:
      nb = json.load(f)
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    source = "".join(first_code["source"])
    assert '"google.colab" in sys.modules' in source
    assert "pip install" in source
    # Committed without outputs: the test suite is what runs them.
    assert all(not c.get("outputs") for c in nb["cells"]
               if c["cell_type"] == "code")


@pytest.mark.parametrize("path", PATHS, ids=os.path.basename)
def test_notebook_executes_and_draws_its_figures(path, tmp_path):
  nb = notebooks.execute(path, quick=True, workdir=str(tmp_path / "run"))
  figures = notebooks.tagged_figures(nb)
  assert figures, "every notebook shows at least one key figure"
  for name, png in figures.items():
    assert png.startswith(b"\x89PNG"), name
  errors = [o for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]
  assert not errors
  if "train" in path:  # trained in the test's folder, not the repo's runs/
    assert (tmp_path / "run" / "results.json").exists()
