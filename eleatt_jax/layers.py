"""Sequence layers: a drop-in ``nn.RNN`` that runs EleAtt cells fast.

:class:`RNN` takes the same arguments as ``flax.linen.RNN`` and gives the same
numbers with the same parameter tree, so a checkpoint trained with one loads into
the other. What it adds:

* a choice of loop layouts for the fused cells, made per backend by measurement
  (:meth:`eleatt_jax.layout.Layout.default`): per-gate or fused matmuls (``split_gates``), the
  input-only part of each step (``W_xa x_t + b_a``, or an ungated cell's input
  projection) as one matmul over all steps before the ``lax.scan``
  (``hoist_input_projection``), and a cuDNN-style backward (``fused_backward``);
* ``seq_lengths`` masks inside the loop: outputs past a sequence's end are zero
  and the final carry is the carry at each sequence's last valid step;
* the gate values are returned through ``intermediates`` at the same path as
  under ``nn.RNN(..., variable_axes={'intermediates': 1})``, in one piece.

Bidirectional: ``nn.Bidirectional(RNN(cell_f), RNN(cell_b))``; :class:`RNN`
follows Flax's ``RNNBase`` protocol.

Which loop runs: a cell that implements
:class:`eleatt_jax.equations.FusedCell` runs in :func:`eleatt_jax.fused_scan.run`;
:class:`~eleatt_jax.EleAtt` is scanned itself (``nn.scan``), its gate's input
projection hoisted if the layout says so; any other cell is scanned as
``nn.RNN`` would.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import flax
import numpy as np
from flax import linen as nn
from flax.linen.recurrent import flip_sequences
from flax.typing import Array, PRNGKey
from jax.experimental import checkify

from eleatt_jax import fused_scan
from eleatt_jax.cells import EleAtt, check_float_inputs
from eleatt_jax.equations import Carry, FusedCell, mask_padding, step_weights
from eleatt_jax.equations import step as eqs_step
from eleatt_jax.layout import Layout

SEQ_LENGTH_CHECKS = (True, False, 'checkify', 'callback')


def _check_seq_lengths(
    seq_lengths,
    batch_shape: tuple[int, ...],
    num_steps: int,
    check_values: bool | str,
) -> Array:
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


def _check_initial_carry(
    cell: Any,
    initial_carry: Carry,
    input_shape: tuple[int, ...],
    initialize_carry: Callable[[tuple[int, ...]], Carry] | None = None,
) -> None:
  """Raises a ValueError if ``initial_carry`` is not shaped as the cell's carry.

  ``input_shape``: ``(*batch, D)``; the expected carry is
  ``initialize_carry(input_shape)``'s structure and shapes (default: the linen
  cell's ``initialize_carry(key, input_shape)``; an NNX layer passes its own).
  """
  if initialize_carry is None:
    initialize_carry = lambda shape: cell.initialize_carry(
        jax.random.key(0), shape
    )
  try:
    expected = jax.eval_shape(lambda: initialize_carry(tuple(input_shape)))
  except Exception:  # pylint: disable=broad-except
    return  # A cell whose carry cannot be made abstractly: nothing to compare.
  shapes = lambda tree: jax.tree_util.tree_map(
      lambda a: tuple(np.shape(a)), tree
  )
  leaves, treedef = jax.tree_util.tree_flatten(expected)
  given_leaves, given_treedef = jax.tree_util.tree_flatten(initial_carry)
  if treedef != given_treedef or any(
      tuple(np.shape(g)) != tuple(e.shape) for g, e in zip(given_leaves, leaves)
  ):
    raise ValueError(
        f'RNN: initial_carry of {type(cell).__name__} for inputs (*batch, D) = '
        f'{tuple(input_shape)} must have the shapes {shapes(expected)}, got '
        f'{shapes(initial_carry)}.'
    )


def checked_sequence_inputs(inputs, time_major: bool) -> Array:
  """``inputs`` as an array, after checking that it is float and of rank >= 2.

  The linen and the NNX ``RNN`` both call it, so both give the same errors.
  """
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


class _FlatBatch:
  """A batch of sequences as ``[T, B, D]`` (batch dims flattened), and back.

  The part of a ``RNN`` call (or chunk) around the loop, shared by the linen
  and the NNX layer: the inputs in the loop's layout with ``seq_lengths``
  checked (or a chunk's ``valid`` mask), padding masked and ``reverse``
  applied; outputs and carries back in the caller's.

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
      check_seq_lengths: bool | str,
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
    lengths = _check_seq_lengths(
        seq_lengths, self.batch_shape, self.num_steps, check_seq_lengths
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
    if self.mask_TB1 is not None:
      # A select, so that NaN or Inf in the padding reaches neither the
      # outputs nor (as 0 * NaN) the gradients.
      x_TBD = jnp.where(self.mask_TB1, x_TBD, 0)
    self.x_TBD = x_TBD

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

  def to_output(self, a_TB: Array) -> Array:
    """A loop output ``[T, B, ...]`` in the caller's layout and order."""
    if self.reverse and self.keep_order:
      a_TB = self._flip(a_TB)
    a = a_TB.reshape((self.num_steps,) + self.batch_shape + a_TB.shape[2:])
    return a if self.time_major else jnp.moveaxis(a, 0, -2)


# Streaming, shared by the linen and the NNX RNN: the carry in, the carry out,
# one step or one chunk at a time.


def check_streamable(reverse: bool, where: str) -> None:
  """Raises a ValueError for a ``reverse`` layer's ``step`` or ``chunk``."""
  if reverse:
    raise ValueError(
        f'RNN.{where}: a reverse=True layer reads the sequence '
        'from its end and cannot stream; run the whole sequence '
        'with __call__.'
    )


def rnn_step(
    cell: Any,
    carry: Carry,
    x_t: Array,
    valid: Array | None = None,
    *,
    layout: Layout,
    wrapped: bool,
    initialize_carry: Callable[[tuple[int, ...]], Carry] | None = None,
) -> tuple[Carry, Array, Array | None]:
  """One step of ``cell``, padding masked: ``(carry, y_t, attention_t)``.

  The step of the linen and the NNX ``RNN``: a fused cell (one that implements
  :class:`eleatt_jax.equations.FusedCell`) runs
  :func:`eleatt_jax.equations.step` in ``layout``; an ``EleAtt`` wrapper
  (``wrapped``) its ``step``; any other cell its ``__call__``.

  Args:
    cell: the layer's cell (linen, bound; or NNX).
    carry: the carry after the previous step, checked against
      ``initialize_carry((*batch, D))`` (default: the linen cell's).
    x_t: ``<float>[*batch, D]``.
    valid: ``<bool>[*batch]``, False past a sequence's end: the carry stays
      and ``y_t`` is 0 there (default: all valid).
    layout: the step's :class:`~eleatt_jax.layout.Layout`.
    wrapped: ``cell`` is an ``EleAtt`` wrapper, whose ``step`` returns the
      attention.
    initialize_carry: ``input_shape -> carry``, for the carry check.

  Returns:
    The new carry, ``y_t [*batch, H]`` and ``a_t [*batch, D]`` (None for a
    cell without a gate).
  """
  x_t = jnp.asarray(x_t)
  check_float_inputs(x_t, 'RNN.step')
  if x_t.ndim < 1:
    raise ValueError('RNN.step expects x_t [*batch, D], got a scalar.')
  _check_initial_carry(cell, carry, x_t.shape, initialize_carry)
  mask = None if valid is None else jnp.asarray(valid, bool)[..., None]
  if mask is not None:
    x_t = jnp.where(mask, x_t, 0)
  if isinstance(cell, FusedCell):
    equations = cell.equations()
    weights = step_weights(
        equations, cell.kernels(x_t.shape[-1]), x_t, carry, layout
    )
    new_carry, y, attention, _ = eqs_step(
        equations, weights, carry, x_t, mask_B1=mask
    )
    return new_carry, y, attention
  if wrapped:
    new_carry, y, attention = cell.step(carry, x_t)
  else:
    (new_carry, y), attention = cell(carry, x_t), None
  new_carry, y = mask_padding(mask, new_carry, carry, y)
  return new_carry, y, attention


def rnn_chunk(
    scan: Callable[..., tuple[Carry, Array, Array | None]],
    cell: Any,
    carry: Carry,
    inputs: Array,
    valid: Array | None = None,
    *,
    time_major: bool,
    initialize_carry: Callable[[tuple[int, ...]], Carry] | None = None,
) -> tuple[Carry, Array, Array | None]:
  """The loop of a ``RNN`` from a given carry: ``(carry, outputs, attention)``.

  The chunk of the linen and the NNX ``RNN``.

  Args:
    scan: the layer's loop, ``(x [T, B, D], carry, mask [T, B, 1] or None,
      batch_shape) -> (carry, y [T, B, H], attention [T, B, D] or None)``.
    cell: the layer's cell, for the carry check.
    carry: the carry after the previous chunk, leaves ``[*batch, ...]``.
    inputs: ``<float>[*batch, c, D]`` (``[c, *batch, D]`` if ``time_major``),
      already checked (:func:`checked_sequence_inputs`).
    valid: ``<bool>[*batch, c]`` (``[c, *batch]``), False past a sequence's
      end (default: all valid).
    time_major: the layout of ``inputs`` and ``valid``.
    initialize_carry: ``input_shape -> carry``, for the carry check (default:
      the linen cell's).

  Returns:
    The carry after the chunk, the outputs ``[*batch, c, H]`` and the attention
    ``[*batch, c, D]`` (None for a cell without a gate).
  """
  batch_shape = inputs.shape[1:-1] if time_major else inputs.shape[:-2]
  _check_initial_carry(
      cell, carry, tuple(batch_shape) + inputs.shape[-1:], initialize_carry
  )
  seqs = _FlatBatch(
      inputs,
      None,
      False,
      time_major=time_major,
      reverse=False,
      keep_order=False,
      valid=valid,
  )
  carry, y_TBH, attention_TBD = scan(
      seqs.x_TBD, seqs.flatten_carry(carry), seqs.mask_TB1, seqs.batch_shape
  )
  attention = None if attention_TBD is None else seqs.to_output(attention_TBD)
  return seqs.unflatten_carry(carry), seqs.to_output(y_TBH), attention


class RNN(nn.Module):
  """Runs a recurrent cell over a sequence; a faster ``flax.linen.RNN``.

  Any Flax cell runs (through ``nn.scan``, with ``seq_lengths`` masking); the
  fused cells (:class:`~eleatt_jax.EleAttGRUCell`, ``EleAttLSTMCell``,
  ``EleAttSimpleCell``) run as a plain ``lax.scan`` of their pure equations
  (:func:`eleatt_jax.fused_scan.run`) in the backend's
  :class:`~eleatt_jax.Layout`, and :class:`~eleatt_jax.EleAtt` around any cell
  is scanned itself, its gate's input projection hoisted if the layout says so.

  Example usage::

    >>> import jax, jax.numpy as jnp
    >>> import flax.linen as nn
    >>> from eleatt_jax import RNN, EleAttGRUCell
    >>> x = jnp.ones((4, 10, 3))              # [batch, time, features]
    >>> lengths = jnp.array([10, 7, 3, 1])    # right padding
    >>> layer = RNN(EleAttGRUCell(8), return_carry=True)
    >>> variables = layer.init(jax.random.key(0), x, seq_lengths=lengths)
    >>> (h, y), state = layer.apply(variables, x, seq_lengths=lengths,
    ...                             mutable='intermediates')
    >>> y.shape, h.shape                      # outputs past the end are 0
    ((4, 10, 8), (4, 8))
    >>> state['intermediates']['cell']['attention'][0].shape  # a_t
    (4, 10, 3)
    >>> # The same parameters run under flax's own nn.RNN:
    >>> y_flax = nn.RNN(EleAttGRUCell(8)).apply(variables, x)
    >>> bool(jnp.allclose(y_flax[0], y[0], atol=1e-6))
    True

  Attributes:
    cell: the recurrent cell (any ``nn.RNNCellBase`` with one feature axis).
    time_major: inputs are ``[time, *batch, features]`` (default: False,
      ``[*batch, time, features]``).
    return_carry: also return the final carry, ``(carry, outputs)``.
    reverse: process the sequence from its last valid step to its first; with
      ``seq_lengths`` padding stays at the end.
    keep_order: with ``reverse``, return outputs in input order.
    unroll: time steps per loop iteration of the scan.
    hoist_input_projection: compute the input-only part of each step (the
      gate's ``x W_xa + b_a``; for ungated fused cells ``x W_x + b``) for all
      steps in one matmul before the loop. Default None: per backend, from
      :meth:`Layout.default <eleatt_jax.layout.Layout.default>` (measured
      with ``benchmarks/speed.py --sweep``).
    split_gates: for fused cells, multiply by per-gate blocks of the kernels
      (split once, outside the loop) instead of the whole fused kernels.
      Default None: per backend, from ``Layout.default`` (for :meth:`step`,
      its ``step_split_gates``).
    fused_backward: for fused cells, differentiate with the cuDNN-style VJP of
      :func:`eleatt_jax.fused_scan.run` (weight gradients as one matmul
      after the backward loop) instead of autodiff of ``lax.scan``. Default
      None: per backend, from ``Layout.default``.
    check_seq_lengths: check that lengths lie in ``[1, T]``. ``True``
      (default): concrete lengths at trace time, a ValueError; traced lengths
      (under ``jit``) are not checked, so the traced graph has no host
      callback and exports (check them at the data boundary, or with the
      eager call). ``'checkify'``: traced lengths too, through
      ``checkify.check`` (wrap the caller in
      ``jax.experimental.checkify.checkify`` and ``err.throw()``).
      ``'callback'``: a ``jax.debug.callback`` (not exportable). ``False``:
      no value check.
    remat: rematerialise each step in the backward pass (``jax.checkpoint`` of
      the step, as ``nn.RNN(nn.remat(cell))``): the backward keeps only the
      carry of every step. ``RNN(nn.remat(cell))`` turns this on with the
      remat's policy.
    remat_policy: the ``jax.checkpoint_policies`` policy of ``remat`` (default
      None: nothing inside the step is saved, only the carry between steps).
    variable_axes, variable_broadcast, variable_carry, split_rngs: as in
      ``nn.RNN``, forwarded to ``nn.scan`` for cells that are scanned as
      modules (e.g. a cell that sows, ``{'intermediates': 1}``, or uses
      dropout, ``split_rngs={'params': False, 'dropout': True}``). The fused
      cells have only broadcast ``params``; their attention is sown in one
      piece, at the time axis ``variable_axes['intermediates']`` if given.
  """

  cell: nn.RNNCellBase
  time_major: bool = False
  return_carry: bool = False
  reverse: bool = False
  keep_order: bool = False
  unroll: int = 1
  hoist_input_projection: bool | None = None
  split_gates: bool | None = None
  fused_backward: bool | None = None
  check_seq_lengths: bool | str = True
  remat: bool = False
  remat_policy: Callable[..., bool] | None = None
  variable_axes: Mapping[Any, Any] = flax.core.FrozenDict()
  variable_broadcast: Any = 'params'
  variable_carry: Any = False
  split_rngs: Mapping[Any, bool] = flax.core.FrozenDict({'params': False})

  @nn.compact
  def __call__(
      self,
      inputs: Array,
      *,
      initial_carry: Carry | None = None,
      init_key: PRNGKey | None = None,
      seq_lengths: Array | None = None,
      return_carry: bool | None = None,
      time_major: bool | None = None,
      reverse: bool | None = None,
      keep_order: bool | None = None,
  ) -> Array | tuple[Carry, Array]:
    """Runs the cell over ``inputs``.

    Args:
      inputs: ``<float>[*batch, time, D]`` (or ``[time, *batch, D]`` if
        ``time_major``).
      initial_carry: the carry at t=0 (default: ``cell.initialize_carry``).
      init_key: PRNG key for ``initialize_carry`` (default: ``key(0)``).
      seq_lengths: ``<int>[*batch]``, valid steps of each sequence, in [1, T].
      return_carry, time_major, reverse, keep_order: override the attributes.

    Returns:
      ``outputs <dtype>[*batch, time, H]``, or ``(final_carry, outputs)``.
    """
    return_carry = self.return_carry if return_carry is None else return_carry
    time_major = self.time_major if time_major is None else time_major
    reverse = self.reverse if reverse is None else reverse
    keep_order = self.keep_order if keep_order is None else keep_order
    inputs = self._checked(inputs, time_major)
    seqs = _FlatBatch(
        inputs,
        seq_lengths,
        self.check_seq_lengths,
        time_major=time_major,
        reverse=reverse,
        keep_order=keep_order,
    )
    if initial_carry is None:
      initial_carry = self.cell.initialize_carry(
          jax.random.key(0) if init_key is None else init_key, seqs.input_shape
      )
    else:
      _check_initial_carry(self.cell, initial_carry, seqs.input_shape)
    carry, y_TBH, attention_TBD = self._scan(
        seqs.x_TBD,
        seqs.flatten_carry(initial_carry),
        seqs.mask_TB1,
        seqs.batch_shape,
    )
    if attention_TBD is not None:
      attention = seqs.to_output(attention_TBD)
      axis = _intermediates_axis(self.variable_axes)
      if axis is not None:  # As nn.RNN(..., variable_axes) stacks them.
        time_axis = len(seqs.batch_shape) if not time_major else 0
        attention = jnp.moveaxis(attention, time_axis, axis)
      self.cell.sow('intermediates', 'attention', attention)
    outputs = seqs.to_output(y_TBH)
    carry = seqs.unflatten_carry(carry)
    return (carry, outputs) if return_carry else outputs

  def _checked(self, inputs, time_major: bool) -> Array:
    """``inputs`` as an array, after checking its dtype, rank and the cell."""
    if self.cell.num_feature_axes != 1:
      raise ValueError(
          'RNN supports cells with one feature axis; '
          f'{type(self.cell).__name__} has '
          f'{self.cell.num_feature_axes}.'
      )
    return checked_sequence_inputs(inputs, time_major)

  @property
  def layout(self) -> Layout:
    """This backend's default layout with the attributes that are set."""
    return Layout.default().with_choices(
        split_gates=self.split_gates,
        hoist_input_projection=self.hoist_input_projection,
        fused_backward=self.fused_backward,
    )

  @property
  def step_layout(self) -> Layout:
    """The layout of :meth:`step`: :attr:`layout`, with the backend's
    ``step_split_gates`` unless ``split_gates`` is set."""
    return self.layout.for_step(self.split_gates)

  def _scan(self, x_TBD, carry, mask_TB1, batch_shape: tuple[int, ...]):
    """Picks the loop: ``(carry, y [T, B, H], attention [T, B, D] or None)``."""
    layout = self.layout
    fused, wrapped = isinstance(self.cell, FusedCell), isinstance(
        self.cell, EleAtt
    )
    remat, policy = self.remat, self.remat_policy
    if fused or wrapped:
      # Our loops call the cell's methods, not its __call__: a lifted
      # transform of the cell's class would be bypassed. Honour nn.remat,
      # refuse the others.
      lifted, lifted_policy = _lifted_remat(self.cell)
      if lifted:
        remat, policy = True, lifted_policy if policy is None else policy
      if fused and _names_params(self.variable_axes):
        raise ValueError(
            f'RNN: variable_axes={dict(self.variable_axes)} scans the '
            f'parameters of {type(self.cell).__name__} over time; fused cells '
            'share one set of parameters across steps (broadcast).'
        )
    if fused:
      equations = self.cell.equations()
      weights = step_weights(
          equations, self.cell.kernels(x_TBD.shape[-1]), x_TBD, carry, layout
      )
      return fused_scan.run(
          equations,
          weights,
          x_TBD,
          carry,
          mask_TB1,
          unroll=self.unroll,
          remat=remat,
          remat_policy=policy,
      )
    if wrapped:
      projection_TBD = (
          self.cell.input_projection(x_TBD, carry)
          if layout.hoist_input_projection
          else None
      )
      carry, (y_TBH, attention_TBD) = self._scan_module(
          _wrapped_step, carry, (x_TBD, projection_TBD, mask_TB1), remat, policy
      )
      return carry, y_TBH, attention_TBD
    # Any other cell sees its true batch shape, so what it sows is stacked as
    # under nn.RNN; nn.remat(cell) wraps its __call__ and is honoured as is.
    carry, y_TBH = self._scan_module(
        functools.partial(_any_step, batch_shape=batch_shape),
        carry,
        (x_TBD, mask_TB1),
        self.remat,
        self.remat_policy,
    )
    return carry, y_TBH, None

  def _scan_module(self, step, carry, xs, remat: bool = False, policy=None):
    """``nn.scan`` of ``step(cell, carry, xs_t)`` over the leading axis of xs."""
    if remat:
      step = nn.remat(step, policy=policy, prevent_cse=False)
    scan = nn.scan(
        step,
        variable_axes=self.variable_axes,
        variable_broadcast=self.variable_broadcast,
        variable_carry=self.variable_carry,
        split_rngs=self.split_rngs,
        in_axes=0,
        out_axes=0,
        unroll=self.unroll,
    )
    try:
      return scan(self.cell, carry, xs)
    except flax.errors.ScopeParamShapeError as e:
      raise ValueError(
          f'RNN: the parameters of {type(self.cell).__name__} do not fit '
          f'inputs with {xs[0].shape[-1]} features (inputs [T, B, D] = '
          f'{xs[0].shape}): {e}'
      ) from e

  # Streaming: the carry in, the carry out, one step or one chunk at a time
  # (rnn_step and rnn_chunk, which the NNX RNN runs too).

  @nn.nowrap
  def initialize_carry(
      self, input_shape: tuple[int, ...], rng: PRNGKey | None = None
  ) -> Carry:
    """The carry at t=0 for steps ``x_t [*batch, D]``: ``input_shape = (*batch, D)``.

    The same carry ``__call__`` starts from: ``cell.initialize_carry(rng or
    key(0), input_shape)``.
    """
    return self.cell.initialize_carry(
        jax.random.key(0) if rng is None else rng, tuple(input_shape)
    )

  def step(
      self, carry: Carry, x_t: Array, valid: Array | None = None
  ) -> tuple[Carry, Array, Array | None]:
    """One time step: ``(carry, x_t [*batch, D]) -> (carry, y_t [*batch, H], a_t)``.

    The step :meth:`__call__` runs at each t (the cell's own step; for fused
    cells :func:`eleatt_jax.equations.step`, in :attr:`step_layout`), so
    stepping through a sequence from :meth:`initialize_carry` gives
    ``__call__``'s outputs and final carry.

    Args:
      carry: the carry after the previous step.
      x_t: ``<float>[*batch, D]``, this step's inputs.
      valid: ``<bool>[*batch]``, False past a sequence's end: the carry stays
        and ``y_t`` is 0 there (default: all valid).

    Returns:
      The new carry, ``y_t`` and the attention ``a_t [*batch, D]`` (None for a
      cell without a gate).
    """
    check_streamable(self.reverse, 'step')
    return rnn_step(
        self.cell,
        carry,
        x_t,
        valid,
        layout=self.step_layout,
        wrapped=isinstance(self.cell, EleAtt),
    )

  def chunk(
      self, carry: Carry, inputs: Array, valid: Array | None = None
  ) -> tuple[Carry, Array, Array | None]:
    """A chunk of steps: ``(carry, x [*batch, c, D]) -> (carry, y [*batch, c, H], a)``.

    The loop of :meth:`__call__` from a given carry (``[c, *batch, D]`` if
    ``time_major``): splitting a sequence into chunks and passing the carry on
    gives the outputs and final carry of one ``__call__`` on the whole.

    Args:
      carry: the carry after the previous chunk (:meth:`initialize_carry`).
      inputs: ``<float>[*batch, c, D]``.
      valid: ``<bool>[*batch, c]`` (``[c, *batch]`` if ``time_major``), False
        past a sequence's end (default: all valid).

    Returns:
      The carry after the chunk, the outputs and the attention
      ``[*batch, c, D]`` (None for a cell without a gate).
    """
    check_streamable(self.reverse, 'chunk')
    inputs = self._checked(inputs, self.time_major)
    return rnn_chunk(
        self._scan, self.cell, carry, inputs, valid, time_major=self.time_major
    )


def _wrapped_step(cell: EleAtt, carry: Carry, xs):
  """One step of ``EleAtt(cell)``, then padding: ``(carry, (y, attention))``."""
  x_BD, projection_BD, mask_B1 = xs
  new_carry, y_BH, attention_BD = cell.step(carry, x_BD, projection_BD)
  new_carry, y_BH = mask_padding(mask_B1, new_carry, carry, y_BH)
  return new_carry, (y_BH, attention_BD)


def _any_step(
    cell: nn.RNNCellBase, carry: Carry, xs, *, batch_shape: tuple[int, ...]
):
  """One step of any cell at its batch shape, then padding: ``(carry, y)``.

  The loop flattens the batch dims (``B = prod(batch_shape)``); the cell gets
  them back, so that what it sows has the shapes it has under ``nn.RNN``.
  """
  x_BD, mask_B1 = xs
  unflat = lambda a: a.reshape(batch_shape + a.shape[1:])
  flat = lambda a: a.reshape((-1,) + a.shape[len(batch_shape) :])
  new_carry, y = cell(jax.tree_util.tree_map(unflat, carry), unflat(x_BD))
  new_carry = jax.tree_util.tree_map(flat, new_carry)
  return mask_padding(mask_B1, new_carry, carry, flat(y))


def _intermediates_axis(variable_axes) -> int | None:
  """The axis ``variable_axes`` gives the ``intermediates`` collection, if any."""
  for key in ('intermediates', True):
    if key in variable_axes:
      return variable_axes[key]
  return None


def _names_params(variable_axes) -> bool:
  return any(key in ('params', True) for key in variable_axes)


def _lifted_remat(cell: nn.Module) -> tuple[bool, Callable[..., bool] | None]:
  """``(True, policy)`` for a cell made by ``nn.remat(CellClass)(...)``.

  ``(False, None)`` for a cell whose ``__call__`` is not lifted. Raises a ValueError for
  another lifted transform (``nn.vmap``, ``nn.jit``, ...) of a cell whose
  loop :class:`RNN` runs itself, which would otherwise be silently dropped.
  """
  for cls in type(cell).__mro__:
    call = cls.__dict__.get('__call__')
    if call is None or not hasattr(call, '__wrapped__'):
      continue
    cells = [c.cell_contents for c in call.__closure__ or ()]
    transform = next(
        (
            c
            for c in cells
            if callable(c) and getattr(c, '__module__', '') == 'flax.core.lift'
        ),
        None,
    )
    if transform is None:
      continue
    if transform.__name__ != 'checkpoint':
      raise ValueError(
          f'RNN: {type(cell).__name__} is nn.{transform.__name__}'
          f"({cls.__mro__[1].__name__}); RNN runs this cell's step itself "
          'and would drop that transform. Use nn.RNN, or the plain cell '
          '(for nn.remat: RNN(cell, remat=True)).'
      )
    kwargs = next(
        (c for c in cells if isinstance(c, dict) and 'policy' in c), {}
    )
    return True, kwargs.get('policy')
  return False, None
