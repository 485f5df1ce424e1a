"""Which methods train on neighbour pairs, and the checks on asking for them."""

import pytest

from clustering.methods import clam
from clustering.methods import dkm
from clustering.methods import icon
from clustering.methods import mcr2
from clustering.methods import swav
from configs import clam as clam_config
from configs import cpp as cpp_config
from configs import icon as icon_config
from configs import mcr2 as mcr2_config
from configs import soft_kmeans as dkm_config
from configs import swav as swav_config

CASES = [(swav.SwAV, swav_config, ""), (icon.ICon, icon_config, ""),
         (mcr2.MCR2, cpp_config, ""), (dkm.DKM, dkm_config, "mnist"),
         (clam.ClAM, clam_config, "mnist")]


@pytest.mark.parametrize("cls,module,arg", CASES)
def test_the_loop_mines_num_neighbors_only_when_asked(cls, module, arg):
  config = module.get_config(arg)
  config.objective.update(neighbors="input", num_neighbors=7)
  assert cls.from_config(config).num_neighbors == 7
  config.objective.neighbors = "batch" if cls is icon.ICon else "none"
  assert cls.from_config(config).num_neighbors == 0


def test_the_recipes_that_pair_neighbours_by_default():
  """Every recipe on every data set; not DKM's and ClAM's reference
  settings (an autoencoder, the inputs), which have no views to pair."""
  for cls, module in ((swav.SwAV, swav_config), (icon.ICon, icon_config),
                      (mcr2.MCR2, mcr2_config), (mcr2.MCR2, cpp_config),
                      (dkm.DKM, dkm_config), (clam.ClAM, clam_config)):
    for arg in ("", "mnist"):
      assert cls.from_config(module.get_config(arg)).num_neighbors == 5
  for arg in ("autoencoder", "autoencoder,mnist"):
    assert dkm.DKM.from_config(dkm_config.get_config(arg)).num_neighbors == 0
  assert clam.ClAM.from_config(
      clam_config.get_config("pixels")).num_neighbors == 0


@pytest.mark.parametrize("cls,module,arg", [
    (dkm.DKM, dkm_config, "autoencoder"), (clam.ClAM, clam_config, "pixels")])
def test_neighbours_need_a_space_learned_on_views(cls, module, arg):
  config = module.get_config(arg)  # autoencoder (DKM) / the inputs (ClAM)
  config.objective.neighbors = "input"
  config.model.encoder = "mlp"
  with pytest.raises(ValueError, match="objective.representation='tcr'"):
    cls.from_config(config)
  config = module.get_config("mnist")
  config.objective.update(neighbors="input", num_neighbors=0)
  with pytest.raises(ValueError, match="num_neighbors >= 1"):
    cls.from_config(config)
  config.objective.update(neighbors="knn", num_neighbors=5)
  with pytest.raises(ValueError, match="objective.neighbors must be one of"):
    cls.from_config(config)
