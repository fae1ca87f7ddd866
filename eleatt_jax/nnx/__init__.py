"""eleatt_jax for Flax NNX: the gate, the cells, RNN and the classifier.

``import eleatt_jax.nnx`` (or ``eleatt_jax.nnx`` after ``import eleatt_jax``,
loaded on first use). The modules follow NNX conventions (``in_features``,
``hidden_features``, ``rngs``, ``initialize_carry(input_shape, rngs)``), run
under ``nnx.RNN`` and ``nnx.Bidirectional``, and step with the same pure
equations (:mod:`eleatt_jax.equations`) and fused loop
(:mod:`eleatt_jax.fused_scan`) as the linen modules, whose parameter trees they
share (:func:`from_linen`, :func:`to_linen`).
"""

from eleatt_jax import _versions

# Before flax.nnx is touched: an old Flax fails there with a bare
# ModuleNotFoundError (flax.nnx.nn) that names no version.
_versions.require('flax', _versions.NNX_MIN_FLAX, 'eleatt_jax.nnx', extra='nnx')

from eleatt_jax.nnx.cells import EleAtt
from eleatt_jax.nnx.cells import EleAttG
from eleatt_jax.nnx.cells import EleAttGRUCell
from eleatt_jax.nnx.cells import EleAttLSTMCell
from eleatt_jax.nnx.cells import EleAttSimpleCell
from eleatt_jax.nnx.cells import FusedCellBase
from eleatt_jax.nnx.convert import from_linen
from eleatt_jax.nnx.convert import to_linen
from eleatt_jax.nnx.layers import RNN
from eleatt_jax.nnx.models import StackedRNNClassifier

__all__ = [
    'EleAtt',
    'EleAttG',
    'EleAttGRUCell',
    'EleAttLSTMCell',
    'EleAttSimpleCell',
    'FusedCellBase',
    'RNN',
    'StackedRNNClassifier',
    'from_linen',
    'to_linen',
]
