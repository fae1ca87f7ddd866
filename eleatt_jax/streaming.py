"""Streaming: the carry in, the carry out, one frame or one chunk at a time.

What the linen and the NNX faces share when they stream; each face's
``step``, ``chunk`` and ``initialize_carry`` is one call into here.

* a layer (``RNN``): :func:`rnn_step` runs the step of ``__call__`` at one
  time step (:func:`eleatt_jax.sequence.step_fused` for a fused cell), and
  :func:`rnn_chunk` the loop of ``__call__`` from a given carry, so that a
  sequence streamed in steps or chunks gives ``__call__``'s outputs and final
  carry;
* a classifier (``StackedRNNClassifier``): :func:`initial_stream_carry`,
  :func:`stream_step` and :func:`stream_chunk` run the layers' steps or chunks
  and the streaming readout (:func:`stream_readout`), whose logits at frame
  ``t`` are those of ``__call__`` on the sequence cut after ``t``.

The classifier's carry: ``{'layers': (each layer's carry, ...), 'count':
<int32>[B] valid frames so far}`` and the readout's state, ``'sum' [B, H_L]``
(mean) or ``'logits' [B, C]`` (last); a plain pytree of arrays that passes
through ``jax.jit`` and ``jax.export`` as it is.

Example usage::

  >>> import jax.numpy as jnp
  >>> from eleatt_jax import streaming
  >>> carry = {'count': jnp.zeros(1, jnp.int32), 'sum': jnp.zeros((1, 2))}
  >>> y = jnp.array([[[1.0, 2.0], [3.0, 4.0]]])          # [B, c, H]
  >>> new, logits = streaming.stream_readout(
  ...     carry, y, jnp.array([[True, True]]), 'mean', lambda h: h)
  >>> logits                                             # running means
  Array([[[1., 2.],
          [2., 3.]]], dtype=float32)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax.typing import Array

from eleatt_jax import sequence
from eleatt_jax.classifier import check_readout
from eleatt_jax.equations import Carry
from eleatt_jax.ops import check_float_inputs

__all__ = [
    'check_stream_carry',
    'initial_stream_carry',
    'rnn_chunk',
    'rnn_step',
    'stream_chunk',
    'stream_readout',
    'stream_step',
]


def _check_not_reverse(reverse: bool, where: str) -> None:
  """Raises a ValueError for a ``reverse`` layer's ``step`` or ``chunk``."""
  if reverse:
    raise ValueError(
        f'RNN.{where}: a reverse=True layer reads the sequence '
        'from its end and cannot stream; run the whole sequence '
        'with __call__.'
    )


def rnn_step(
    layer: Any,
    loop: tuple[bool, bool],
    initialize_carry: Callable[[tuple[int, ...]], Carry],
    carry: Carry,
    x_t: Array,
    valid: Array | None = None,
) -> tuple[Carry, Array, Array | None]:
  """One step of a ``RNN``'s cell, padding masked: ``(carry, y_t, a_t)``.

  The step of the linen and the NNX ``RNN``: a cell that runs the fused loop
  runs :func:`eleatt_jax.sequence.step_fused` in the layer's
  ``step_layout``; an ``EleAtt`` wrapper that the layer scans its ``step``;
  any other cell its ``__call__``.

  Args:
    layer: the ``RNN`` (linen, bound; or NNX): its ``cell``, ``reverse``
      (True: a ValueError, it cannot stream) and ``step_layout``.
    loop: ``(fused, wrapped)``: the cell is a
      :class:`eleatt_jax.equations.FusedCell` that the layer runs in its fused
      loop; the cell is an ``EleAtt`` wrapper whose ``step`` (which returns
      the attention) the layer scans.
    initialize_carry: ``input_shape -> carry``, for the carry check.
    carry: the carry after the previous step, checked against
      ``initialize_carry((*batch, D))``.
    x_t: ``<float>[*batch, D]``.
    valid: ``<bool>[*batch]``, False past a sequence's end: the carry stays
      and ``y_t`` is 0 there (default: all valid).

  Returns:
    The new carry, ``y_t [*batch, H]`` and ``a_t [*batch, D]`` (None for a
    cell without a gate).
  """
  cell, (fused, wrapped) = layer.cell, loop
  _check_not_reverse(layer.reverse, 'step')
  x_t = jnp.asarray(x_t)
  check_float_inputs(x_t, 'RNN.step')
  if x_t.ndim < 1:
    raise ValueError('RNN.step expects x_t [*batch, D], got a scalar.')
  sequence.check_carry(cell, carry, x_t.shape, initialize_carry)
  mask = None if valid is None else jnp.asarray(valid, bool)[..., None]
  x_t = sequence.zero_padding(x_t, mask)
  if fused:
    return sequence.step_fused(cell, carry, x_t, layer.step_layout, mask)
  return sequence.cell_step(cell, carry, x_t, mask, wrapped=wrapped)


def rnn_chunk(
    layer: Any,
    scan: sequence.Scan,
    initialize_carry: Callable[[tuple[int, ...]], Carry],
    carry: Carry,
    inputs: Array,
    valid: Array | None = None,
) -> tuple[Carry, Array, Array | None]:
  """The loop of a ``RNN`` from a given carry: ``(carry, outputs, attention)``.

  Args:
    layer: the ``RNN`` (linen, bound; or NNX): its ``cell``, ``reverse``
      (True: a ValueError, it cannot stream) and ``time_major`` (the layout
      of ``inputs`` and ``valid``).
    scan: the layer's loop (see :func:`eleatt_jax.sequence.run`).
    initialize_carry: ``input_shape -> carry``, for the carry check.
    carry: the carry after the previous chunk, leaves ``[*batch, ...]``.
    inputs: ``<float>[*batch, c, D]`` (``[c, *batch, D]`` if ``time_major``).
    valid: ``<bool>[*batch, c]`` (``[c, *batch]``), False past a sequence's
      end (default: all valid).

  Returns:
    The carry after the chunk, the outputs ``[*batch, c, H]`` and the attention
    ``[*batch, c, D]`` (None for a cell without a gate).
  """
  _check_not_reverse(layer.reverse, 'chunk')
  return sequence.run(
      scan,
      layer.cell,
      sequence.checked_inputs(inputs, layer.time_major, layer.cell),
      initial_carry=carry,
      initialize_carry=initialize_carry,
      check_lengths=False,
      valid=valid,
      time_major=layer.time_major,
  )


# The classifier.


def _check_not_bidirectional(model: Any, where: str) -> None:
  """Raises a ValueError for a bidirectional classifier's streaming call."""
  if model.bidirectional:
    raise ValueError(
        f'StackedRNNClassifier.{where}: a bidirectional model reads each '
        'sequence from its end too and cannot stream; run the whole '
        'sequence with __call__, or train a unidirectional model.'
    )


def initial_stream_carry(
    model: Any,
    batch_shape: int | Sequence[int],
    layer_carries: Callable[[tuple[int]], tuple[Any, ...]],
) -> dict[str, Any]:
  """The streaming carry before the first frame (``initialize_carry``).

  Args:
    model: the classifier (linen or NNX): its ``bidirectional``, ``readout``,
      ``hidden_sizes`` and ``num_classes``.
    batch_shape: ``B`` or ``(B,)``.
    layer_carries: ``(B,) -> (carry of layer 0, ...)``.

  Returns:
    ``{'layers', 'count': <int32>[B] zeros}`` and ``'sum' <float32>[B, H_L]``
    or ``'logits' <float32>[B, C]`` zeros.
  """
  _check_not_bidirectional(model, 'initialize_carry')
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
  check_readout(model.readout)
  carry = {
      'layers': tuple(layer_carries(batch)),
      'count': jnp.zeros(batch, jnp.int32),
  }
  if model.readout == 'mean':
    carry['sum'] = jnp.zeros(batch + (model.hidden_sizes[-1],), jnp.float32)
  else:
    carry['logits'] = jnp.zeros(batch + (model.num_classes,), jnp.float32)
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


def _run_layers(
    model: Any,
    layer_calls: Sequence[Callable[..., tuple[Any, Array, Array | None]]],
    carry: dict[str, Any],
    x: Array,
    valid: Array,
) -> tuple[dict[str, Any], Array, tuple[Array | None, ...]]:
  """Each layer's step or chunk, then the readout: ``(carry, logits, a)``.

  ``x``: ``[B, D]`` (a step) or ``[B, c, D]`` (a chunk), ``valid`` the same
  without ``D``; the logits have the same leading shape.
  """
  check_stream_carry(carry, x.shape[0], model.readout, len(layer_calls))
  step = valid.ndim == 1
  layer_carries, attention = [], []
  for call, layer_carry in zip(layer_calls, carry['layers']):
    layer_carry, x, a = call(layer_carry, x, valid)
    layer_carries.append(layer_carry)
    attention.append(a)
  y_BcH = x[:, None] if step else x
  carry, logits = stream_readout(
      carry,
      y_BcH.astype(jnp.float32),
      valid[:, None] if step else valid,
      model.readout,
      model.classifier,
  )
  carry['layers'] = tuple(layer_carries)
  return carry, logits[:, 0] if step else logits, tuple(attention)


def stream_step(
    model: Any,
    layers: Sequence[Any],
    carry: dict[str, Any],
    x_t: Array,
    valid: Array | None = None,
) -> tuple[dict[str, Any], Array, tuple[Array | None, ...]]:
  """The classifier's streaming step (``StackedRNNClassifier.step``).

  Args:
    model: the classifier (linen, bound; or NNX): its ``bidirectional``,
      ``readout`` and ``classifier``.
    layers: its layers, each with a ``step(carry, x_t, valid)``.
    carry, x_t, valid: as ``StackedRNNClassifier.step``.

  Returns:
    ``StackedRNNClassifier.step``'s ``(carry, logits_t [B, C], attention)``.
  """
  _check_not_bidirectional(model, 'step')
  if jnp.ndim(x_t) != 2:
    raise ValueError(
        'StackedRNNClassifier.step expects x_t [batch, '
        f'features], got shape {jnp.shape(x_t)}.'
    )
  batch = jnp.shape(x_t)[0]
  valid = (
      jnp.ones((batch,), bool) if valid is None else jnp.asarray(valid, bool)
  )
  return _run_layers(
      model, [layer.step for layer in layers], carry, jnp.asarray(x_t), valid
  )


def stream_chunk(
    model: Any,
    layers: Sequence[Any],
    carry: dict[str, Any],
    inputs: Array,
    valid: Array | None = None,
) -> tuple[dict[str, Any], Array, tuple[Array | None, ...]]:
  """The classifier's streaming chunk (``StackedRNNClassifier.chunk``).

  Args:
    model: the classifier, as in :func:`stream_step`.
    layers: its layers, each with a ``chunk(carry, x [B, c, D], valid)``.
    carry, inputs, valid: as ``StackedRNNClassifier.chunk``.

  Returns:
    ``StackedRNNClassifier.chunk``'s ``(carry, logits [B, c, C],
    attention)``.
  """
  _check_not_bidirectional(model, 'chunk')
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
  return _run_layers(
      model,
      [layer.chunk for layer in layers],
      carry,
      jnp.asarray(inputs),
      valid,
  )
