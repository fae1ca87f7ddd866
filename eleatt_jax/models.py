"""Stacked recurrent classifiers used by the paper's experiments."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Array, Dtype

from eleatt_jax import streaming
from eleatt_jax.cells import EleAttGRUCell, EleAttLSTMCell, EleAttSimpleCell
from eleatt_jax.classifier import CELLS, READOUTS, check_cell, check_readout
from eleatt_jax.classifier import gated_layers
from eleatt_jax.classifier import layer_cells, readout_features
from eleatt_jax.layers import RNN

__all__ = [
    'CELL_TYPES',
    'READOUTS',
    'StackedRNNClassifier',
    'gated_layers',
    'readout_features',
]

# The linen cell of each of eleatt_jax.classifier.CELLS' equations.
_CELLS_BY_EQUATIONS = {
    'gru': EleAttGRUCell,
    'lstm': EleAttLSTMCell,
    'simple': EleAttSimpleCell,
}

# cell name -> (fused cell class, whether its layers may carry a gate); the
# names are eleatt_jax.classifier.CELLS'.
CELL_TYPES = {
    name: (_CELLS_BY_EQUATIONS[equations], gateable)
    for name, (equations, gateable) in CELLS.items()
}


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
    gate_bias_init: the value every gate's bias ``b_a`` starts at (0: the
      gate starts at ``sigmoid(0) = 0.5``; 3: at about 0.95, near
      pass-through, so that the untrained network is almost the plain one).
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
    split_gates: each layer's :class:`eleatt_jax.RNN` ``split_gates`` (default
      None: per backend, for the loop and for :meth:`step` separately; see
      :class:`eleatt_jax.layout.Layout`). It changes the speed, not the numbers.
  """

  num_classes: int
  cell: str = 'eleatt_gru'
  hidden_sizes: Sequence[int] = (100, 100, 100)
  gate_layers: str | int = 'all'
  gate_bias_init: float = 0.0
  dropout_rate: float = 0.5
  readout: str = 'mean'
  bidirectional: bool = False
  unroll: int = 1
  check_seq_lengths: bool | str = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  split_gates: bool | None = None

  def setup(self):
    check_cell(self.cell)
    check_readout(self.readout)
    # The same names as the compact version of this module had (checkpoints
    # and dropout rngs are unchanged): layer_i, Dropout_i, classifier.
    for i, make_cell in enumerate(self._cell_makers()):
      make_rnn = lambda **kw: RNN(
          make_cell(),
          unroll=self.unroll,
          check_seq_lengths=self.check_seq_lengths,
          split_gates=self.split_gates,
          **kw,
      )
      if self.bidirectional:
        layer = nn.Bidirectional(make_rnn(parent=None), make_rnn(parent=None))
      else:
        layer = make_rnn()
      setattr(self, f'layer_{i}', layer)
      setattr(self, f'Dropout_{i}', nn.Dropout(self.dropout_rate))
    self.classifier = nn.Dense(
        self.num_classes, dtype=jnp.float32, param_dtype=self.param_dtype
    )

  @nn.nowrap
  def _cell_makers(self):
    """One ``() -> cell`` per layer (validates ``cell`` and ``gate_layers``)."""
    return [
        lambda f=features, c=_CELLS_BY_EQUATIONS[kind], g=use_gate: c(
            f,
            use_gate=g,
            gate_bias_init=nn.initializers.constant(self.gate_bias_init),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            parent=None,
        )
        for features, (kind, use_gate) in zip(
            self.hidden_sizes,
            layer_cells(self.cell, self.gate_layers, len(self.hidden_sizes)),
        )
    ]

  def _layers(self) -> list[nn.Module]:
    return [getattr(self, f'layer_{i}') for i in range(len(self.hidden_sizes))]

  def __call__(
      self,
      inputs: Array,
      seq_lengths: Array | None = None,
      *,
      train: bool = False,
  ) -> Array:
    """Classifies each sequence.

    Args:
      inputs: ``<float>[batch, time, features]``, right-padded.
      seq_lengths: ``<int>[batch]`` valid steps per sequence (default: all T).
      train: enables dropout (needs a ``'dropout'`` rng).

    Returns:
      ``<float32>[batch, num_classes]`` logits.
    """
    if jnp.ndim(inputs) != 3:
      raise ValueError(
          'StackedRNNClassifier expects inputs [batch, time, '
          f'features], got shape {jnp.shape(inputs)}.'
      )
    x = inputs
    for i, layer in enumerate(self._layers()):
      x = layer(x, seq_lengths=seq_lengths)
      x = getattr(self, f'Dropout_{i}')(x, deterministic=not train)

    return self.classifier(
        readout_features(
            x,
            seq_lengths,
            self.readout,
            self.hidden_sizes[-1] if self.bidirectional else None,
        )
    )

  # Streaming (eleatt_jax.streaming, which the NNX classifier runs too).

  @nn.nowrap
  def initialize_carry(
      self, batch_shape: int | Sequence[int]
  ) -> dict[str, Any]:
    """The streaming carry before the first frame, for ``x_t [B, D]``.

    ``{'layers': (carry of layer 0, ...), 'count': <int32>[B] zeros}`` and
    ``'sum': <float32>[B, H_L]`` zeros (``readout='mean'``) or ``'logits':
    <float32>[B, C]`` zeros (``'last'``). A plain pytree of arrays: it
    passes through ``jax.jit`` and ``jax.export`` as it is.

    Args:
      batch_shape: ``B`` or ``(B,)``.
    """
    return streaming.initial_stream_carry(
        self,
        batch_shape,
        lambda batch: tuple(
            make().initialize_carry(jax.random.key(0), batch + (1,))
            for make in self._cell_makers()
        ),
    )

  def step(
      self, carry: dict[str, Any], x_t: Array, valid: Array | None = None
  ) -> tuple[dict[str, Any], Array, tuple[Array | None, ...]]:
    r"""One frame: ``(carry, x_t [B, D]) -> (carry, logits_t [B, C], attention_t)``.

    ``logits_t`` are the logits of the prefix ``0..t``: what ``__call__``
    returns for the sequence cut after frame t. Mean readout, with ``y_s`` the
    last layer's output and ``n`` the valid frames so far:

    .. math::  \text{logits}_t = W \big(\tfrac{1}{n} \sum_{s \le t} y_s\big) + b

    (the running sum and ``n`` travel in the carry); last readout:
    ``W y_t + b``. Dropout is off (inference).

    Example usage::

      >>> import jax, jax.numpy as jnp
      >>> from eleatt_jax import StackedRNNClassifier
      >>> model = StackedRNNClassifier(num_classes=4, hidden_sizes=(8, 8))
      >>> x = jax.random.normal(jax.random.key(1), (2, 5, 3))  # [B, T, D]
      >>> variables = model.init(jax.random.key(0), x)
      >>> carry = model.initialize_carry(2)
      >>> for t in range(5):
      ...   carry, logits_t, attention_t = model.apply(
      ...       variables, carry, x[:, t], method='step')
      >>> bool(jnp.allclose(logits_t, model.apply(variables, x), atol=1e-5))
      True
      >>> [None if a is None else a.shape for a in attention_t]  # per layer
      [(2, 3), (2, 8)]

    Args:
      carry: :meth:`initialize_carry`, or the carry of the previous frame.
      x_t: ``<float>[B, D]``, this frame.
      valid: ``<bool>[B]``: False for a sequence that has ended (its carry
        and logits stay as they were); default all True.

    Returns:
      The new carry, ``<float32>[B, C]`` logits and the attention of each
      layer, ``[B, D_l]`` (None for a layer without a gate).
    """
    return streaming.stream_step(self, self._layers(), carry, x_t, valid)

  def chunk(
      self, carry: dict[str, Any], inputs: Array, valid: Array | None = None
  ) -> tuple[dict[str, Any], Array, tuple[Array | None, ...]]:
    """A chunk of frames: ``(carry, x [B, c, D]) -> (carry, logits [B, c, C], attention)``.

    The same as ``c`` calls of :meth:`step`, run as one loop per layer (the
    loop of ``__call__``); ``logits[:, i]`` are the logits of the prefix that
    ends at frame ``i`` of the chunk.

    Args:
      carry: :meth:`initialize_carry`, or the carry after the previous chunk.
      inputs: ``<float>[B, c, D]``.
      valid: ``<bool>[B, c]``, False past a sequence's end (default: all).

    Returns:
      The carry after the chunk, ``<float32>[B, c, C]`` logits, and the
      attention of each layer ``[B, c, D_l]`` (None without a gate).
    """
    return streaming.stream_chunk(self, self._layers(), carry, inputs, valid)
