"""NTU RGB+D 60 and 120 "plus" recipe, beyond the paper.

The paper's network and training (``ntu.py``) with
`_skeleton.apply_plus_recipe` (what won on the two-way N-UCLA development
protocol, docs/RESULTS.md): ``--config=train/configs/ntu_plus.py:BENCHMARK``
with ``BENCHMARK`` one of ``ntu.BENCHMARKS`` (``xsub60``, ``xview60``,
``xsub120``, ``xset120``). Not the paper's method: compare it with ntu.py,
not with the paper's numbers. Not measured here (the NTU data are not in this
project's data).
"""

from train.configs import _skeleton
from train.configs import ntu

# The arguments get_config takes (the tests run each).
ARGS = ntu.ARGS


def get_config(benchmark: str | None = None):
  """ntu_plus settings: ntu.py's benchmark with the plus recipe."""
  return _skeleton.apply_plus_recipe(ntu.get_config(benchmark))
