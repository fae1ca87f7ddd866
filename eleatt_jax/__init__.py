"""eleatt_jax: Element-wise-Attention Gates for recurrent networks in JAX/Flax."""

from eleatt_jax.cells import EleAtt
from eleatt_jax.cells import EleAttGRUCell
from eleatt_jax.cells import EleAttLSTMCell
from eleatt_jax.cells import EleAttSimpleCell
from eleatt_jax.gate import EleAttG
from eleatt_jax.layers import RNN
from eleatt_jax.layout import Layout
from eleatt_jax.models import StackedRNNClassifier

__version__ = '0.1.0'

__all__ = [
    'EleAtt',
    'EleAttG',
    'EleAttGRUCell',
    'EleAttLSTMCell',
    'EleAttSimpleCell',
    'Layout',
    'RNN',
    'StackedRNNClassifier',
]


def __getattr__(name):
  # eleatt_jax.nnx loads flax.nnx: imported on first use, not with the package.
  if name == 'nnx':
    import importlib  # pylint: disable=g-import-not-at-top

    return importlib.import_module('eleatt_jax.nnx')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
