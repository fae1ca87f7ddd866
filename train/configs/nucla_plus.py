"""N-UCLA "plus" recipe, beyond the paper: views 1+2 train, view 3 tests.

The paper's network and training (nucla.py) with `_skeleton.apply_plus_recipe`:
what won on the two-way development protocol (docs/RESULTS.md, "Recipe
candidates"). Not the paper's method: compare it with nucla.py, not with the
paper's 90.7%. ``python -m train.main --config=train/configs/nucla_plus.py
--workdir=runs/nucla_plus --config.data.data_dir=DATA``.
"""

from train.configs import _skeleton
from train.configs import nucla


def get_config():
  """nucla_plus settings: nucla.py with the plus recipe."""
  return _skeleton.apply_plus_recipe(nucla.get_config())
