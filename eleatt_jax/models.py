"""Stacked recurrent classifiers used by the paper's experiments."""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Array, Dtype

from eleatt_jax.cells import EleAttGRUCell, EleAttLSTMCell, EleAttSimpleCell
from eleatt_jax.layers import RNN

# cell name -> (fused cell class, whether its layers may carry a gate)
CELL_TYPES = {
    'eleatt_gru': (EleAttGRUCell, True),
    'gru': (EleAttGRUCell, False),
    'eleatt_lstm': (EleAttLSTMCell, True),
    'lstm': (EleAttLSTMCell, False),
    'eleatt_rnn': (EleAttSimpleCell, True),
    'rnn': (EleAttSimpleCell, False),
}
READOUTS = ('mean', 'last')


def gated_layers(gate_layers: str | int, num_layers: int) -> tuple[bool, ...]:
  """Which of ``num_layers`` layers carry a gate: 'all', 'none' or the first k."""
  if gate_layers == 'all':
    k = num_layers
  elif gate_layers == 'none':
    k = 0
  elif (isinstance(gate_layers, int) and not isinstance(gate_layers, bool) and
        0 <= gate_layers <= num_layers):
    k = gate_layers
  else:
    raise ValueError(f"gate_layers must be 'all', 'none' or an int in "
                     f'[0, {num_layers}], got {gate_layers!r}.')
  return tuple(i < k for i in range(num_layers))


class StackedRNNClassifier(nn.Module):
  """A stack of (EleAtt-)RNN layers and a linear classifier.

  ``inputs [B, T, D] -> logits [B, num_classes]``. With ``readout='mean'`` the
  per-step logits are averaged over each sequence's valid steps (computed as the
  classifier of the mean output, which is the same since the classifier is
  linear); with ``'last'`` the output at the last valid step is classified (for
  a bidirectional stack: the forward half there and the backward half at t=0).

  Example usage::

    >>> import jax, jax.numpy as jnp
    >>> from eleatt_jax import StackedRNNClassifier
    >>> model = StackedRNNClassifier(num_classes=10, hidden_sizes=(16, 16),
    ...                              gate_layers=1)
    >>> x = jnp.ones((2, 5, 3))
    >>> variables = model.init(jax.random.key(0), x, jnp.array([5, 3]))
    >>> logits = model.apply(variables, x, jnp.array([5, 3]))
    >>> logits.shape
    (2, 10)
    >>> sorted(variables['params']['layer_0']['cell']), sorted(
    ...     variables['params']['layer_1']['cell'])[:2]
    (['bias', 'gate', 'input_kernel', 'recurrent_bias', 'recurrent_kernel'], ['bias', 'input_kernel'])

  Attributes:
    num_classes: number of output classes C.
    cell: one of ``eleatt_gru``, ``gru``, ``eleatt_lstm``, ``lstm``,
      ``eleatt_rnn``, ``rnn``; the plain names never carry a gate.
    hidden_sizes: features of each recurrent layer (default 3 x 100, the paper's).
    gate_layers: for ``eleatt_*`` cells, which layers carry a gate: ``'all'``,
      ``'none'``, or an int k for the first k layers (the paper's ablation).
    dropout_rate: dropout on each layer's outputs, in training only.
    readout: ``'mean'`` or ``'last'``.
    bidirectional: run each layer both ways and concatenate.
    unroll: scan unroll of each layer.
    check_seq_lengths: how each layer checks that lengths lie in [1, T]
      (:class:`eleatt_jax.RNN`): ``True`` checks concrete lengths at trace
      time and adds nothing to a traced graph (it exports); ``'checkify'`` or
      ``'callback'`` check traced lengths too; ``False`` does not check.
    dtype: computation dtype (e.g. ``jnp.bfloat16``); parameters stay
      ``param_dtype``; logits are float32.
    param_dtype: parameter dtype (float32).
  """

  num_classes: int
  cell: str = 'eleatt_gru'
  hidden_sizes: Sequence[int] = (100, 100, 100)
  gate_layers: str | int = 'all'
  dropout_rate: float = 0.5
  readout: str = 'mean'
  bidirectional: bool = False
  unroll: int = 1
  check_seq_lengths: bool | str = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs: Array, seq_lengths: Array | None = None, *,
               train: bool = False) -> Array:
    """Classifies each sequence.

    Args:
      inputs: ``<float>[batch, time, features]``, right-padded.
      seq_lengths: ``<int>[batch]`` valid steps per sequence (default: all T).
      train: enables dropout (needs a ``'dropout'`` rng).

    Returns:
      ``<float32>[batch, num_classes]`` logits.
    """
    if self.cell not in CELL_TYPES:
      raise ValueError(f'cell must be one of {sorted(CELL_TYPES)}, got '
                       f'{self.cell!r}.')
    if self.readout not in READOUTS:
      raise ValueError(f'readout must be one of {READOUTS}, got {self.readout!r}.')
    if jnp.ndim(inputs) != 3:
      raise ValueError('StackedRNNClassifier expects inputs [batch, time, '
                       f'features], got shape {jnp.shape(inputs)}.')
    cell_cls, gateable = CELL_TYPES[self.cell]
    gates = gated_layers(self.gate_layers, len(self.hidden_sizes))  # validates
    if not gateable:
      gates = (False,) * len(gates)

    x = inputs
    for i, (features, use_gate) in enumerate(zip(self.hidden_sizes, gates)):
      make_rnn = lambda **kw: RNN(
          cell_cls(features, use_gate=use_gate, dtype=self.dtype,
                   param_dtype=self.param_dtype, parent=None),
          unroll=self.unroll, check_seq_lengths=self.check_seq_lengths, **kw)
      if self.bidirectional:
        layer = nn.Bidirectional(make_rnn(parent=None), make_rnn(parent=None),
                                 name=f'layer_{i}')
      else:
        layer = make_rnn(name=f'layer_{i}')
      x = layer(x, seq_lengths=seq_lengths)
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)

    num_steps = x.shape[1]
    lengths = (jnp.full(x.shape[:1], num_steps) if seq_lengths is None
               else jnp.asarray(seq_lengths))
    x = x.astype(jnp.float32)
    if self.readout == 'mean':
      # Steps past the end are zero, so the sum over time is the sum over valid steps.
      features = x.sum(axis=1) / lengths[:, None].astype(jnp.float32)
    else:
      last = jnp.take_along_axis(x, (lengths - 1)[:, None, None], axis=1)[:, 0]
      if self.bidirectional:
        half = self.hidden_sizes[-1]
        features = jnp.concatenate([last[:, :half], x[:, 0, half:]], axis=-1)
      else:
        features = last
    return nn.Dense(self.num_classes, dtype=jnp.float32,
                    param_dtype=self.param_dtype, name='classifier')(features)
