"""The stacked (EleAtt-)RNN classifier as an NNX module.

The attribute names are the linen :class:`eleatt_jax.StackedRNNClassifier`'s
parameter paths (``layer_0/cell/...``, ``layer_0/forward_rnn/cell/...`` when
bidirectional, ``classifier/kernel``), so converting between the two is a copy.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
from flax import nnx
from flax.typing import Array, Dtype

from eleatt_jax import streaming
from eleatt_jax.classifier import check_readout, layer_cells, readout_features
from eleatt_jax.nnx import cells
from eleatt_jax.nnx.layers import RNN

__all__ = ['StackedRNNClassifier']

# The NNX cell of each of eleatt_jax.classifier.CELLS' equations.
_CELLS_BY_EQUATIONS = {
    'gru': cells.EleAttGRUCell,
    'lstm': cells.EleAttLSTMCell,
    'simple': cells.EleAttSimpleCell,
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
    >>> x, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 3])
    >>> logits = model(x, lengths)
    >>> logits.shape
    (2, 10)
    >>> step = nnx.jit(lambda m, c, x_t, v: m.step(c, x_t, v))  # streaming
    >>> carry = model.initialize_carry(2)
    >>> for t in range(5):                     # frame by frame, t < lengths
    ...   carry, logits_t, a_t = step(model, carry, x[:, t], t < lengths)
    >>> bool(jnp.allclose(logits_t, logits, atol=1e-5))
    True
    >>> [None if a is None else a.shape for a in a_t]  # attention per layer
    [(2, 3), None]

  Streaming (unidirectional models): :meth:`initialize_carry`, :meth:`step`
  and :meth:`chunk`, the linen classifier's, with the same carry.

  Args:
    in_features: D.
    num_classes: C.
    cell: as the linen classifier's; so are ``hidden_sizes``,
      ``gate_layers``, ``gate_bias_init``, ``dropout_rate``, ``readout``, ``bidirectional``,
      ``unroll``, ``check_seq_lengths``, ``dtype`` and ``param_dtype``.
    split_gates: each layer's :class:`eleatt_jax.nnx.RNN` ``split_gates``
      (default None: per backend, for the loop and for :meth:`step`
      separately; see :class:`eleatt_jax.layout.Layout`). It changes the
      speed, not the numbers.
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
      gate_bias_init: float = 0.0,
      dropout_rate: float = 0.5,
      readout: str = 'mean',
      bidirectional: bool = False,
      unroll: int = 1,
      check_seq_lengths: bool | str = True,
      dtype: Dtype | None = None,
      param_dtype: Dtype = jnp.float32,
      split_gates: bool | None = None,
      rngs: nnx.Rngs,
  ):
    specs = layer_cells(cell, gate_layers, len(hidden_sizes))
    check_readout(readout)
    self.hidden_sizes = tuple(hidden_sizes)
    self.num_layers = len(self.hidden_sizes)
    self.readout, self.bidirectional = readout, bidirectional
    self.num_classes = num_classes
    features_in = in_features
    for i, (features, (kind, use_gate)) in enumerate(
        zip(self.hidden_sizes, specs)
    ):
      make_rnn = lambda: RNN(
          _CELLS_BY_EQUATIONS[kind](
              features_in,
              features,
              use_gate=use_gate,
              gate_bias_init=nnx.initializers.constant(gate_bias_init),
              dtype=dtype,
              param_dtype=param_dtype,
              rngs=rngs,
          ),
          unroll=unroll,
          check_seq_lengths=check_seq_lengths,
          split_gates=split_gates,
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
    for layer in self._layers():
      x = layer(x, seq_lengths=seq_lengths)
      x = self.dropout(x)
    return self.classifier(
        readout_features(
            x,
            seq_lengths,
            self.readout,
            self.hidden_sizes[-1] if self.bidirectional else None,
        )
    )

  # Streaming: the linen classifier's (eleatt_jax.streaming), on these layers.

  def _layers(self) -> list[RNN]:
    return [getattr(self, f'layer_{i}') for i in range(self.num_layers)]

  def initialize_carry(
      self, batch_shape: int | Sequence[int]
  ) -> dict[str, Any]:
    """The streaming carry before the first frame, for ``x_t [B, D]``.

    The carry of :meth:`eleatt_jax.StackedRNNClassifier.initialize_carry`
    (``batch_shape``: ``B`` or ``(B,)``), a plain pytree of arrays.
    """
    return streaming.initial_stream_carry(
        self,
        batch_shape,
        lambda batch: tuple(
            layer.initialize_carry(batch + (layer.cell.in_features,))
            for layer in self._layers()
        ),
    )

  def step(
      self, carry: dict[str, Any], x_t: Array, valid: Array | None = None
  ) -> tuple[dict[str, Any], Array, tuple[Array | None, ...]]:
    """One frame: ``(carry, x_t [B, D]) -> (carry, logits_t [B, C], attention_t)``.

    :meth:`eleatt_jax.StackedRNNClassifier.step`, the same carry and numbers:
    ``logits_t`` are the logits of the prefix ``0..t`` (``__call__`` of the
    sequence cut after frame t). Dropout is off, whatever ``model.train()``
    says. Example: the class docstring's.

    Args:
      carry: :meth:`initialize_carry`, or the carry of the previous frame.
      x_t: ``<float>[B, D]``.
      valid: ``<bool>[B]``, False for a sequence that has ended: its carry and
        logits stay (default: all True).

    Returns:
      The carry, ``<float32>[B, C]`` logits and each layer's attention
      ``[B, D_l]`` (None without a gate).
    """
    return streaming.stream_step(self, self._layers(), carry, x_t, valid)

  def chunk(
      self, carry: dict[str, Any], inputs: Array, valid: Array | None = None
  ) -> tuple[dict[str, Any], Array, tuple[Array | None, ...]]:
    """A chunk of frames: ``(carry, x [B, c, D]) -> (carry, logits [B, c, C], attention)``.

    :meth:`eleatt_jax.StackedRNNClassifier.chunk`: ``c`` calls of
    :meth:`step` as one loop per layer; ``logits[:, i]`` are those of the
    prefix that ends at frame ``i`` of the chunk. ``valid``: ``<bool>[B, c]``
    (default: all True). Attention: ``[B, c, D_l]`` per layer (None without a
    gate).
    """
    return streaming.stream_chunk(self, self._layers(), carry, inputs, valid)
