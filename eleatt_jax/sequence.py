"""Running a cell over a batch of sequences: what the linen and NNX ``RNN`` share.

Both module APIs' ``RNN`` are thin faces over this module; what differs
between them (parameters, how a module cell is scanned, where the attention
is kept) stays in :mod:`eleatt_jax.layers` and :mod:`eleatt_jax.nnx.layers`.

* the checks of a call's inputs, ``seq_lengths`` and initial carry, with the
  same errors in both APIs;
* :class:`FlatBatch`: the batch dims flattened (``[T, B, D]``), ``reverse``
  applied and the padding zeroed on the way in; outputs and carries back in
  the caller's layout on the way out;
* :func:`run`: a whole call (or a streaming chunk) of either ``RNN``;
* :func:`run_fused` and :func:`step_fused`: a fused cell's loop and its lone
  step, from its equations and weights (:mod:`eleatt_jax.equations`);
* :func:`cell_step`: a step of any other cell, padding applied.

Padding, everywhere: inputs past a sequence's end are zeroed by a select
(:func:`zero_padding`), and there the carry is kept and the output is 0
(:func:`eleatt_jax.equations.mask_padding`, which the fused step runs too).

Example usage::

  >>> import jax, jax.numpy as jnp
  >>> from eleatt_jax import EleAttGRUCell, sequence
  >>> from eleatt_jax.layout import Layout
  >>> cell, x = EleAttGRUCell(4), jnp.ones((2, 5, 3))   # x [B, T, D]
  >>> carry = cell.initialize_carry(jax.random.key(0), (2, 3))
  >>> params = cell.init(jax.random.key(1), carry, x[:, 0])
  >>> seqs = sequence.FlatBatch(x, jnp.array([5, 2]), True,
  ...                           time_major=False, reverse=False,
  ...                           keep_order=False)
  >>> seqs.x_TBD.shape, seqs.mask_TB1.shape
  ((5, 2, 3), (5, 2, 1))
  >>> carry, y_TBH, a_TBD = cell.apply(
  ...     params, seqs.x_TBD, carry, seqs.mask_TB1, Layout.choose(),
  ...     method=lambda c, *a: sequence.run_fused(c, *a))
  >>> seqs.to_output(y_TBH).shape, float(seqs.to_output(y_TBH)[1, 3, 0])
  ((2, 5, 4), 0.0)
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.recurrent import flip_sequences
from flax.typing import Array
from jax.experimental import checkify

from eleatt_jax import fused_scan
from eleatt_jax.equations import Carry, CellEquations, FusedCell, StepWeights
from eleatt_jax.equations import mask_padding, step, step_weights
from eleatt_jax.layout import Layout
from eleatt_jax.ops import check_float_inputs

__all__ = [
    'SEQ_LENGTH_CHECKS',
    'FlatBatch',
    'cell_step',
    'check_carry',
    'check_seq_lengths',
    'checked_inputs',
    'run',
    'run_fused',
    'step_fused',
    'zero_padding',
]

# The values of RNN's `check_seq_lengths` (see check_seq_lengths).
SEQ_LENGTH_CHECKS = (True, False, 'checkify', 'callback')


def check_seq_lengths(
    seq_lengths: Array | None,
    batch_shape: tuple[int, ...],
    num_steps: int,
    check_values: bool | str,
) -> Array | None:
  """Validates ``seq_lengths`` (shape, dtype, values in [1, T]).

  Shape and dtype are checked always, concrete values always unless
  ``check_values`` is False. Traced values (under ``jit``): ``True`` leaves
  them unchecked (the default graph holds no host callback, so it exports);
  ``'checkify'`` adds a ``checkify.check`` (run the caller under
  ``jax.experimental.checkify.checkify``); ``'callback'`` adds the host
  callback of earlier versions (not exportable).
  """
  if seq_lengths is None:
    return None
  if check_values not in SEQ_LENGTH_CHECKS:
    raise ValueError(
        'RNN: check_seq_lengths must be one of '
        f'{SEQ_LENGTH_CHECKS}, got {check_values!r}.'
    )
  shape = tuple(np.shape(seq_lengths))
  if shape != tuple(batch_shape):
    raise ValueError(
        f'RNN: seq_lengths must have the batch shape {tuple(batch_shape)} of'
        f' the inputs, got shape {shape}.'
    )
  dtype = (
      jnp.asarray(seq_lengths).dtype
      if not isinstance(seq_lengths, jax.core.Tracer)
      else seq_lengths.dtype
  )
  if not jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(f'RNN: seq_lengths must be integers, got dtype {dtype}.')
  if check_values is False:
    return jnp.asarray(seq_lengths)
  message = (
      'RNN: every seq_length must be in [1, {T}] (the time axis); got '
      '{bad} at batch index {index}.'
  )

  def _raise_if_out_of_range(values):
    values = np.asarray(values).reshape(-1)
    bad = np.flatnonzero((values < 1) | (values > num_steps))
    if bad.size:
      raise ValueError(
          message.format(
              T=num_steps,
              bad=values[bad[0]],
              index=np.unravel_index(bad[0], shape),
          )
      )

  if not isinstance(seq_lengths, jax.core.Tracer):
    _raise_if_out_of_range(seq_lengths)
    return jnp.asarray(seq_lengths)
  if check_values == 'checkify':
    flat = seq_lengths.reshape(-1)
    bad = (flat < 1) | (flat > num_steps)
    first = jnp.argmax(bad)
    checkify.check(
        ~jnp.any(bad),
        message.format(T=num_steps, bad='{bad}', index='{index} (flattened)'),
        bad=flat[first],
        index=first,
    )
  elif check_values == 'callback':
    jax.debug.callback(_raise_if_out_of_range, seq_lengths)
  return seq_lengths


def check_carry(
    cell: Any,
    carry: Carry,
    input_shape: tuple[int, ...],
    initialize_carry: Callable[[tuple[int, ...]], Carry],
) -> None:
  """Raises a ValueError if ``carry`` is not shaped as the cell's carry.

  Args:
    cell: the layer's cell (its name goes into the message).
    carry: the carry a caller passed (an initial carry, or a streaming one).
    input_shape: ``(*batch, D)``.
    initialize_carry: ``input_shape -> carry``, whose structure and shapes
      (abstractly evaluated) are the expected ones.
  """
  try:
    expected = jax.eval_shape(lambda: initialize_carry(tuple(input_shape)))
  except Exception:  # pylint: disable=broad-except
    return  # A cell whose carry cannot be made abstractly: nothing to compare.
  shapes = lambda tree: jax.tree_util.tree_map(
      lambda a: tuple(np.shape(a)), tree
  )
  leaves, treedef = jax.tree_util.tree_flatten(expected)
  given_leaves, given_treedef = jax.tree_util.tree_flatten(carry)
  if treedef != given_treedef or any(
      tuple(np.shape(g)) != tuple(e.shape) for g, e in zip(given_leaves, leaves)
  ):
    raise ValueError(
        f'RNN: initial_carry of {type(cell).__name__} for inputs (*batch, D) = '
        f'{tuple(input_shape)} must have the shapes {shapes(expected)}, got '
        f'{shapes(carry)}.'
    )


def checked_inputs(inputs, time_major: bool, cell: Any) -> Array:
  """``inputs`` as an array, after checking it (float, rank >= 2) and the cell.

  The linen and the NNX ``RNN`` both call it, so both give the same errors.
  """
  num_feature_axes = getattr(cell, 'num_feature_axes', 1)
  if num_feature_axes != 1:
    raise ValueError(
        'RNN supports cells with one feature axis; '
        f'{type(cell).__name__} has {num_feature_axes}.'
    )
  inputs = jnp.asarray(inputs)
  check_float_inputs(inputs, 'RNN')
  if inputs.ndim < 2:
    layout = (
        '[time, *batch, features]' if time_major else '[*batch, time, features]'
    )
    raise ValueError(
        f'RNN expects inputs of rank >= 2, {layout}; got shape {inputs.shape}.'
    )
  return inputs


def zero_padding(x: Array, mask: Array | None) -> Array:
  """``x`` with the steps where ``mask`` is False set to 0.

  A select, so that NaN or Inf in the padding reaches neither the outputs nor
  (as 0 * NaN) the gradients.
  """
  return x if mask is None else jnp.where(mask, x, 0)


class FlatBatch:
  """A batch of sequences as ``[T, B, D]`` (batch dims flattened), and back.

  The part of a ``RNN`` call (or chunk) around the loop: the inputs in the
  loop's layout with ``seq_lengths`` checked (or a chunk's ``valid`` mask),
  padding zeroed and ``reverse`` applied; outputs and carries back in the
  caller's.

  Attributes:
    x_TBD: the inputs, ready for the loop.
    mask_TB1: ``<bool>[T, B, 1]``, True at valid steps (None: no lengths).
    num_steps, batch_shape: T and the caller's ``*batch``.
    input_shape: ``(*batch, D)``, as ``initialize_carry`` takes it.
  """

  def __init__(
      self,
      inputs: Array,
      seq_lengths: Array | None,
      check_lengths: bool | str,
      *,
      time_major: bool,
      reverse: bool,
      keep_order: bool,
      valid: Array | None = None,
  ):
    self.time_major, self.reverse, self.keep_order = (
        time_major,
        reverse,
        keep_order,
    )
    x_TBD = inputs if time_major else jnp.moveaxis(inputs, -2, 0)
    self.num_steps, self.batch_shape = x_TBD.shape[0], tuple(x_TBD.shape[1:-1])
    self.input_shape = self.batch_shape + x_TBD.shape[-1:]
    self._batch = batch = math.prod(self.batch_shape)
    x_TBD = x_TBD.reshape(self.num_steps, batch, x_TBD.shape[-1])
    lengths = check_seq_lengths(
        seq_lengths, self.batch_shape, self.num_steps, check_lengths
    )
    self._lengths_B = None if lengths is None else lengths.reshape(batch)
    if reverse:
      x_TBD = self._flip(x_TBD)
    self.mask_TB1 = None
    if self._lengths_B is not None:
      self.mask_TB1 = (
          jnp.arange(self.num_steps)[:, None] < self._lengths_B[None, :]
      )[..., None]
    elif valid is not None:  # A chunk: [*batch, c] (time_major: [c, *batch]).
      valid = jnp.asarray(valid, bool)
      if valid.shape != inputs.shape[:-1]:
        raise ValueError(
            f'RNN.chunk: valid must have the shape {inputs.shape[:-1]} of '
            f'the inputs without D, got {valid.shape}.'
        )
      valid_TB = valid if time_major else jnp.moveaxis(valid, -1, 0)
      self.mask_TB1 = valid_TB.reshape(self.num_steps, batch, 1)
    self.x_TBD = zero_padding(x_TBD, self.mask_TB1)

  def _flip(self, a_TB: Array) -> Array:
    return flip_sequences(
        a_TB, self._lengths_B, num_batch_dims=1, time_major=True
    )

  def flatten_carry(self, carry: Carry) -> Carry:
    """``carry`` (leaves ``[*batch, ...]``) with leaves ``[B, ...]``."""
    return jax.tree_util.tree_map(
        lambda c: jnp.reshape(
            c, (self._batch,) + c.shape[len(self.batch_shape) :]
        ),
        carry,
    )

  def unflatten_carry(self, carry: Carry) -> Carry:
    """The loop's carry (leaves ``[B, ...]``) with leaves ``[*batch, ...]``."""
    return jax.tree_util.tree_map(
        lambda c: c.reshape(self.batch_shape + c.shape[1:]), carry
    )

  def to_output(self, a_TB: Array | None) -> Array | None:
    """A loop output ``[T, B, ...]`` in the caller's layout and order."""
    if a_TB is None:
      return None
    if self.reverse and self.keep_order:
      a_TB = self._flip(a_TB)
    a = a_TB.reshape((self.num_steps,) + self.batch_shape + a_TB.shape[2:])
    return a if self.time_major else jnp.moveaxis(a, 0, -2)


# The loop of a layer: `(x [T, B, D], carry [B, ...], mask [T, B, 1] or None,
# batch_shape) -> (carry, y [T, B, H], attention [T, B, D] or None)`.
Scan = Callable[..., tuple[Carry, Array, Array | None]]


def run(
    scan: Scan,
    cell: Any,
    inputs: Array,
    *,
    initial_carry: Carry | None,
    initialize_carry: Callable[[tuple[int, ...]], Carry],
    expected_carry: Callable[[tuple[int, ...]], Carry] | None = None,
    seq_lengths: Array | None = None,
    check_lengths: bool | str = True,
    valid: Array | None = None,
    time_major: bool,
    reverse: bool = False,
    keep_order: bool = False,
) -> tuple[Carry, Array, Array | None]:
  """One call of a ``RNN`` (or one streaming chunk): ``(carry, y, attention)``.

  Args:
    scan: the layer's loop (its fused loop or its scan of a module cell).
    cell: the layer's cell, for the carry check's message.
    inputs: ``<float>[*batch, T, D]`` (``[T, *batch, D]`` if ``time_major``),
      checked (:func:`checked_inputs`).
    initial_carry: the carry at t=0, leaves ``[*batch, ...]`` (None: made by
      ``initialize_carry``; else checked against ``expected_carry``).
    initialize_carry: ``input_shape -> carry``, the default carry.
    expected_carry: ``input_shape -> carry`` whose shapes the check expects
      (default: ``initialize_carry``; an NNX layer passes one that draws
      from no ``Rngs`` of its own).
    seq_lengths: ``<int>[*batch]``, checked as ``check_lengths`` says.
    check_lengths: see :func:`check_seq_lengths`.
    valid: a chunk's ``<bool>[*batch, T]`` mask (``[T, *batch]``), when
      there are no ``seq_lengths``.
    time_major, reverse, keep_order: as ``RNN``'s.

  Returns:
    The final carry, the outputs ``[*batch, T, H]`` and the attention
    ``[*batch, T, D]`` (None for a cell without a gate), in the caller's
    layout.
  """
  seqs = FlatBatch(
      inputs,
      seq_lengths,
      check_lengths,
      time_major=time_major,
      reverse=reverse,
      keep_order=keep_order,
      valid=valid,
  )
  if initial_carry is None:
    initial_carry = initialize_carry(seqs.input_shape)
  else:
    check_carry(
        cell,
        initial_carry,
        seqs.input_shape,
        expected_carry or initialize_carry,
    )
  carry, y_TBH, attention_TBD = scan(
      seqs.x_TBD,
      seqs.flatten_carry(initial_carry),
      seqs.mask_TB1,
      seqs.batch_shape,
  )
  return (
      seqs.unflatten_carry(carry),
      seqs.to_output(y_TBH),
      seqs.to_output(attention_TBD),
  )


def _fused_weights(
    cell: FusedCell, inputs: Array, carry: Carry, layout: Layout
) -> tuple[CellEquations, StepWeights]:
  """A fused cell's equations and its weights arranged for ``layout``."""
  equations = cell.equations()
  weights = step_weights(
      equations, cell.kernels(inputs.shape[-1]), inputs, carry, layout
  )
  return equations, weights


def run_fused(
    cell: FusedCell,
    x_TBD: Array,
    carry: Carry,
    mask_TB1: Array | None,
    layout: Layout,
    *,
    unroll: int = 1,
    remat: bool = False,
    remat_policy: Callable[..., bool] | None = None,
) -> tuple[Carry, Array, Array | None]:
  """A fused cell (linen or NNX) over ``x [T, B, D]``: :func:`fused_scan.run`.

  Returns:
    ``(carry, y [T, B, H], attention [T, B, D] or None)``.
  """
  equations, weights = _fused_weights(cell, x_TBD, carry, layout)
  return fused_scan.run(
      equations,
      weights,
      x_TBD,
      carry,
      mask_TB1,
      unroll=unroll,
      remat=remat,
      remat_policy=remat_policy,
  )


def step_fused(
    cell: FusedCell,
    carry: Carry,
    inputs: Array,
    layout: Layout | None = None,
    mask_B1: Array | None = None,
) -> tuple[Carry, Array, Array | None]:
  """One step of a fused cell (linen or NNX): :func:`equations.step`.

  Args:
    cell: a :class:`eleatt_jax.equations.FusedCell`.
    carry: its carry.
    inputs: ``<float>[..., D]``.
    layout: the step's layout (default: :meth:`Layout.choose`, as a cell's
      ``__call__`` runs it).
    mask_B1: ``<bool>[..., 1]``, False past a sequence's end, or None.

  Returns:
    ``(new_carry, y [..., H], attention [..., D] or None)``.
  """
  check_float_inputs(inputs, type(cell).__name__)
  if inputs.ndim < 1:
    raise ValueError(
        f'{type(cell).__name__} expects inputs [..., D], got a scalar.'
    )
  layout = Layout.choose() if layout is None else layout
  equations, weights = _fused_weights(cell, inputs, carry, layout)
  carry, y, attention, _ = step(
      equations, weights, carry, inputs, mask_B1=mask_B1
  )
  return carry, y, attention


def cell_step(
    cell: Any,
    carry: Carry,
    x_BD: Array,
    mask_B1: Array | None = None,
    *,
    wrapped: bool,
    input_projection: Array | None = None,
    batch_shape: tuple[int, ...] | None = None,
) -> tuple[Carry, Array, Array | None]:
  """One step of a cell the fused loop does not run, then padding.

  Args:
    cell: an ``EleAtt`` wrapper (``wrapped``), whose ``step`` returns the
      attention, or any other cell, whose ``__call__`` runs.
    carry: the carry, leaves ``[B, ...]``.
    x_BD: the inputs ``[B, D]``.
    mask_B1: ``<bool>[B, 1]``, False past a sequence's end, or None.
    wrapped: whether ``cell`` is an ``EleAtt`` wrapper.
    input_projection: the wrapper's gate input projection, if hoisted.
    batch_shape: the caller's batch dims, if the cell should see them
      instead of ``B`` (so that what it sows has ``nn.RNN``'s shapes).

  Returns:
    ``(new_carry, y [B, H], attention [B, D] or None)``.
  """
  flat = unflat = lambda a: a
  if batch_shape is not None:
    unflat = lambda a: a.reshape(batch_shape + a.shape[1:])
    flat = lambda a: a.reshape((-1,) + a.shape[len(batch_shape) :])
  cell_carry = jax.tree_util.tree_map(unflat, carry)
  if wrapped:
    if input_projection is not None:
      input_projection = unflat(input_projection)
    new_carry, y, attention = cell.step(
        cell_carry, unflat(x_BD), input_projection
    )
    attention = flat(attention)
  else:
    (new_carry, y), attention = cell(cell_carry, unflat(x_BD)), None
  new_carry, y = mask_padding(
      mask_B1, jax.tree_util.tree_map(flat, new_carry), carry, flat(y)
  )
  return new_carry, y, attention
