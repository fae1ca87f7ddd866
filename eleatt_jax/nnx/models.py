"""The stacked (EleAtt-)RNN classifier as an NNX module.

The attribute names are the linen :class:`eleatt_jax.StackedRNNClassifier`'s
parameter paths (``layer_0/cell/...``, ``layer_0/forward_rnn/cell/...`` when
bidirectional, ``classifier/kernel``), so converting between the two is a copy.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
from flax import nnx
from flax.typing import Array, Dtype

from eleatt_jax.models import CELL_TYPES, READOUTS, gated_layers
from eleatt_jax.models import readout_features
from eleatt_jax.nnx import cells
from eleatt_jax.nnx.layers import RNN

# cell name -> NNX fused cell class (gateable as in eleatt_jax.models).
NNX_CELLS = {
    cells.EleAttGRUCell.__name__: cells.EleAttGRUCell,
    cells.EleAttLSTMCell.__name__: cells.EleAttLSTMCell,
    cells.EleAttSimpleCell.__name__: cells.EleAttSimpleCell,
}


class StackedRNNClassifier(nnx.Module):
  """A stack of (EleAtt-)RNN layers and a linear classifier, NNX.

  ``inputs [B, T, D] -> logits [B, num_classes]``, as the linen
  :class:`eleatt_jax.StackedRNNClassifier` (same arguments, same parameter
  tree); dropout follows NNX's ``model.train()`` / ``model.eval()``.

  Example usage::

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from eleatt_jax.nnx import StackedRNNClassifier
    >>> model = StackedRNNClassifier(3, 10, hidden_sizes=(16, 16),
    ...                              gate_layers=1, rngs=nnx.Rngs(0))
    >>> model.eval()
    >>> model(jnp.ones((2, 5, 3)), jnp.array([5, 3])).shape
    (2, 10)

  Args:
    in_features: D.
    num_classes: C.
    cell, hidden_sizes, gate_layers, dropout_rate, readout, bidirectional,
      unroll, check_seq_lengths, dtype, param_dtype: as the linen classifier.
    rngs: ``nnx.Rngs`` with ``params`` (and ``dropout`` for training).
  """

  def __init__(
      self,
      in_features: int,
      num_classes: int,
      *,
      cell: str = 'eleatt_gru',
      hidden_sizes: Sequence[int] = (100, 100, 100),
      gate_layers: str | int = 'all',
      dropout_rate: float = 0.5,
      readout: str = 'mean',
      bidirectional: bool = False,
      unroll: int = 1,
      check_seq_lengths: bool = True,
      dtype: Dtype | None = None,
      param_dtype: Dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    if cell not in CELL_TYPES:
      raise ValueError(
          f'cell must be one of {sorted(CELL_TYPES)}, got {cell!r}.'
      )
    if readout not in READOUTS:
      raise ValueError(f'readout must be one of {READOUTS}, got {readout!r}.')
    linen_cls, gateable = CELL_TYPES[cell]
    cell_cls = NNX_CELLS[linen_cls.__name__]
    gates = gated_layers(gate_layers, len(hidden_sizes))
    if not gateable:
      gates = (False,) * len(gates)
    self.hidden_sizes = tuple(hidden_sizes)
    self.num_layers = len(self.hidden_sizes)
    self.readout, self.bidirectional = readout, bidirectional
    features_in = in_features
    for i, (features, use_gate) in enumerate(zip(self.hidden_sizes, gates)):
      make_rnn = lambda: RNN(
          cell_cls(
              features_in,
              features,
              use_gate=use_gate,
              dtype=dtype,
              param_dtype=param_dtype,
              rngs=rngs,
          ),
          unroll=unroll,
          check_seq_lengths=check_seq_lengths,
      )
      if bidirectional:
        layer = nnx.Bidirectional(make_rnn(), make_rnn(), rngs=False)
      else:
        layer = make_rnn()
      setattr(self, f'layer_{i}', layer)
      features_in = features * (2 if bidirectional else 1)
    self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
    self.classifier = nnx.Linear(
        features_in,
        num_classes,
        dtype=jnp.float32,
        param_dtype=param_dtype,
        rngs=rngs,
    )

  def __call__(self, inputs: Array, seq_lengths: Array | None = None) -> Array:
    """``<float32>[batch, num_classes]`` logits of ``inputs [B, T, D]``."""
    if jnp.ndim(inputs) != 3:
      raise ValueError(
          'StackedRNNClassifier expects inputs [batch, time, '
          f'features], got shape {jnp.shape(inputs)}.'
      )
    x = inputs
    for i in range(self.num_layers):
      x = getattr(self, f'layer_{i}')(x, seq_lengths=seq_lengths)
      x = self.dropout(x)
    return self.classifier(
        readout_features(
            x,
            seq_lengths,
            self.readout,
            self.hidden_sizes[-1] if self.bidirectional else None,
        )
    )
