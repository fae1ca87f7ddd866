"""Stacked recurrent classifiers used by the paper's experiments."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
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
  elif (
      isinstance(gate_layers, int)
      and not isinstance(gate_layers, bool)
      and 0 <= gate_layers <= num_layers
  ):
    k = gate_layers
  else:
    raise ValueError(
        "gate_layers must be 'all', 'none' or an int in "
        f'[0, {num_layers}], got {gate_layers!r}.'
    )
  return tuple(i < k for i in range(num_layers))


def readout_features(
    x, seq_lengths, readout: str, backward_from: int | None = None
):
  """The classifier's input from the last layer's outputs.

  Args:
    x: <float>[B, T, F], zero past each sequence's end.
    seq_lengths: <int>[B] valid steps, or None (all T).
    readout: 'mean' (average over valid steps) or 'last' (last valid step).
    backward_from: for 'last' of a bidirectional layer, the feature index
      where the backward half starts (its last step is t=0); None otherwise.

  Returns:
    <float32>[B, F].
  """
  lengths = (
      jnp.full(x.shape[:1], x.shape[1])
      if seq_lengths is None
      else jnp.asarray(seq_lengths)
  )
  x = x.astype(jnp.float32)
  if readout == 'mean':
    # Steps past the end are zero, so the sum over time is over valid steps.
    return x.sum(axis=1) / lengths[:, None].astype(jnp.float32)
  last = jnp.take_along_axis(x, (lengths - 1)[:, None, None], axis=1)[:, 0]
  if backward_from is None:
    return last
  return jnp.concatenate(
      [last[:, :backward_from], x[:, 0, backward_from:]], axis=-1
  )


# Streaming, shared by the linen and the NNX classifier. The carry:
# {'layers': (each layer's carry, ...), 'count': <int32>[B] valid frames so
# far, and the readout's state: 'sum' [B, H_L] (mean) or 'logits' [B, C]
# (last)}.


def check_streamable(bidirectional: bool, where: str) -> None:
  """Raises a ValueError for a bidirectional classifier's streaming call."""
  if bidirectional:
    raise ValueError(
        f'StackedRNNClassifier.{where}: a bidirectional model reads each '
        'sequence from its end too and cannot stream; run the whole '
        'sequence with __call__, or train a unidirectional model.'
    )


def initial_stream_carry(
    batch_shape: int | Sequence[int],
    layer_carries: Callable[[tuple[int]], tuple[Any, ...]],
    *,
    readout: str,
    features: int,
    num_classes: int,
) -> dict[str, Any]:
  """The streaming carry before the first frame (``initialize_carry``).

  Args:
    batch_shape: ``B`` or ``(B,)``.
    layer_carries: ``(B,) -> (carry of layer 0, ...)``.
    readout: ``'mean'`` or ``'last'``.
    features: ``H_L``, the last layer's features (the mean readout's sum).
    num_classes: ``C`` (the last readout's logits).

  Returns:
    ``{'layers', 'count': <int32>[B] zeros}`` and ``'sum' <float32>[B, H_L]``
    or ``'logits' <float32>[B, C]`` zeros.
  """
  batch = (
      tuple(batch_shape)
      if isinstance(batch_shape, (tuple, list))
      else (batch_shape,)
  )
  if len(batch) != 1:
    raise ValueError(
        'StackedRNNClassifier.initialize_carry expects a batch '
        f'shape (B,), got {batch}.'
    )
  if readout not in READOUTS:
    raise ValueError(f'readout must be one of {READOUTS}, got {readout!r}.')
  carry = {
      'layers': tuple(layer_carries(batch)),
      'count': jnp.zeros(batch, jnp.int32),
  }
  if readout == 'mean':
    carry['sum'] = jnp.zeros(batch + (features,), jnp.float32)
  else:
    carry['logits'] = jnp.zeros(batch + (num_classes,), jnp.float32)
  return carry


def check_stream_carry(
    carry: Any, batch: int, readout: str, num_layers: int
) -> None:
  """Raises a ValueError if ``carry`` is not a streaming carry for ``batch``."""
  keys = {'layers', 'count', 'sum' if readout == 'mean' else 'logits'}
  if (
      not isinstance(carry, dict)
      or set(carry) != keys
      or len(carry['layers']) != num_layers
  ):
    got = sorted(carry) if isinstance(carry, dict) else type(carry).__name__
    raise ValueError(
        'StackedRNNClassifier: the streaming carry must be a dict with the '
        f'keys {sorted(keys)} and {num_layers} layer carries '
        f'(initialize_carry); got {got}.'
    )
  if tuple(jnp.shape(carry['count'])) != (batch,):
    raise ValueError(
        'StackedRNNClassifier: the carry is for batch '
        f'{tuple(jnp.shape(carry["count"]))}, the inputs for ({batch},).'
    )


def stream_readout(
    carry: dict[str, Any],
    y_BcH: Array,
    valid_Bc: Array,
    readout: str,
    classifier: Callable[[Array], Array],
) -> tuple[dict[str, Any], Array]:
  """Logits of every prefix ending in a chunk, and the readout carry.

  Args:
    carry: the streaming carry before the chunk (its ``layers`` are not read).
    y_BcH: ``<float32>[B, c, H_L]``, the last layer's outputs (0 where not
      valid).
    valid_Bc: ``<bool>[B, c]``.
    readout: ``'mean'`` or ``'last'``.
    classifier: the linear classifier, ``[..., H_L] -> [..., C]``.

  Returns:
    ``({'count', 'sum' or 'logits'}, <float32>[B, c, C])``.
  """
  count_Bc = carry['count'][:, None] + jnp.cumsum(
      valid_Bc, axis=1, dtype=jnp.int32
  )
  new = {'count': count_Bc[:, -1]}
  if readout == 'mean':
    # y is 0 on invalid frames (the layers mask them).
    sum_BcH = carry['sum'][:, None] + jnp.cumsum(y_BcH, axis=1)
    count = jnp.maximum(count_Bc, 1)[..., None].astype(jnp.float32)
    logits = classifier(sum_BcH / count)
    new['sum'] = sum_BcH[:, -1]
  else:
    per_frame = classifier(y_BcH)
    index = jnp.arange(y_BcH.shape[1])[None, :]
    last_valid = jax.lax.cummax(jnp.where(valid_Bc, index, -1), axis=1)
    taken = jnp.take_along_axis(
        per_frame, jnp.maximum(last_valid, 0)[..., None], axis=1
    )
    logits = jnp.where(
        (last_valid >= 0)[..., None], taken, carry['logits'][:, None]
    )
    new['logits'] = logits[:, -1]
  return new, logits


def stream_step(
    layer_steps: Sequence[Callable[..., tuple[Any, Array, Array | None]]],
    classifier: Callable[[Array], Array],
    readout: str,
    carry: dict[str, Any],
    x_t: Array,
    valid: Array | None = None,
) -> tuple[dict[str, Any], Array, tuple[Array | None, ...]]:
  """The classifier's streaming step, given each layer's ``step``.

  ``layer_steps``: ``(carry, x_t, valid) -> (carry, y_t, a_t)`` per layer;
  the other arguments and the result are ``StackedRNNClassifier.step``'s.
  """
  if jnp.ndim(x_t) != 2:
    raise ValueError(
        'StackedRNNClassifier.step expects x_t [batch, '
        f'features], got shape {jnp.shape(x_t)}.'
    )
  batch = jnp.shape(x_t)[0]
  valid = (
      jnp.ones((batch,), bool) if valid is None else jnp.asarray(valid, bool)
  )
  check_stream_carry(carry, batch, readout, len(layer_steps))
  x, layer_carries, attention = x_t, [], []
  for step, layer_carry in zip(layer_steps, carry['layers']):
    layer_carry, x, a = step(layer_carry, x, valid)
    layer_carries.append(layer_carry)
    attention.append(a)
  carry, logits = stream_readout(
      carry, x[:, None].astype(jnp.float32), valid[:, None], readout, classifier
  )
  carry['layers'] = tuple(layer_carries)
  return carry, logits[:, 0], tuple(attention)


def stream_chunk(
    layer_chunks: Sequence[Callable[..., tuple[Any, Array, Array | None]]],
    classifier: Callable[[Array], Array],
    readout: str,
    carry: dict[str, Any],
    inputs: Array,
    valid: Array | None = None,
) -> tuple[dict[str, Any], Array, tuple[Array | None, ...]]:
  """The classifier's streaming chunk, given each layer's ``chunk``.

  ``layer_chunks``: ``(carry, x [B, c, D_l], valid [B, c]) -> (carry, y,
  a)`` per layer; the other arguments and the result are
  ``StackedRNNClassifier.chunk``'s.
  """
  if jnp.ndim(inputs) != 3:
    raise ValueError(
        'StackedRNNClassifier.chunk expects inputs [batch, '
        f'chunk, features], got shape {jnp.shape(inputs)}.'
    )
  batch, size = jnp.shape(inputs)[:2]
  valid = (
      jnp.ones((batch, size), bool)
      if valid is None
      else jnp.asarray(valid, bool)
  )
  if valid.shape != (batch, size):
    raise ValueError(
        'StackedRNNClassifier.chunk: valid must have the shape '
        f'{(batch, size)} of inputs [B, c], got {valid.shape}.'
    )
  check_stream_carry(carry, batch, readout, len(layer_chunks))
  x, layer_carries, attention = inputs, [], []
  for chunk, layer_carry in zip(layer_chunks, carry['layers']):
    layer_carry, x, a = chunk(layer_carry, x, valid)
    layer_carries.append(layer_carry)
    attention.append(a)
  carry, logits = stream_readout(
      carry, x.astype(jnp.float32), valid, readout, classifier
  )
  carry['layers'] = tuple(layer_carries)
  return carry, logits, tuple(attention)


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
    split_gates: each layer's :class:`eleatt_jax.RNN` ``split_gates`` (default
      None: per backend, for the loop and for :meth:`step` separately; see
      :class:`eleatt_jax.layout.Layout`). It changes the speed, not the numbers.
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
  split_gates: bool | None = None

  def setup(self):
    if self.cell not in CELL_TYPES:
      raise ValueError(
          f'cell must be one of {sorted(CELL_TYPES)}, got {self.cell!r}.'
      )
    if self.readout not in READOUTS:
      raise ValueError(
          f'readout must be one of {READOUTS}, got {self.readout!r}.'
      )
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
    if self.cell not in CELL_TYPES:
      raise ValueError(
          f'cell must be one of {sorted(CELL_TYPES)}, got {self.cell!r}.'
      )
    cell_cls, gateable = CELL_TYPES[self.cell]
    gates = gated_layers(self.gate_layers, len(self.hidden_sizes))  # validates
    if not gateable:
      gates = (False,) * len(gates)
    return [
        lambda f=features, g=use_gate: cell_cls(
            f,
            use_gate=g,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            parent=None,
        )
        for features, use_gate in zip(self.hidden_sizes, gates)
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

  # Streaming (the functions above, which the NNX classifier runs too).

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
    check_streamable(self.bidirectional, 'initialize_carry')
    return initial_stream_carry(
        batch_shape,
        lambda batch: tuple(
            make().initialize_carry(jax.random.key(0), batch + (1,))
            for make in self._cell_makers()
        ),
        readout=self.readout,
        features=self.hidden_sizes[-1],
        num_classes=self.num_classes,
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
    check_streamable(self.bidirectional, 'step')
    return stream_step(
        [layer.step for layer in self._layers()],
        self.classifier,
        self.readout,
        carry,
        x_t,
        valid,
    )

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
    check_streamable(self.bidirectional, 'chunk')
    return stream_chunk(
        [layer.chunk for layer in self._layers()],
        self.classifier,
        self.readout,
        carry,
        inputs,
        valid,
    )
