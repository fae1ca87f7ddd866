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
