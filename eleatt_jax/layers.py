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
projection hoisted if the layout says so; any other cell, and a cell whose
class a lifted transform (``nn.remat``, ``nn.jit``, ...) made, is scanned
through its ``__call__`` as ``nn.RNN`` would.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import flax
from flax import linen as nn
from flax.typing import Array, PRNGKey

from eleatt_jax import sequence
from eleatt_jax import streaming
from eleatt_jax.cells import EleAtt, FusedCellBase
from eleatt_jax.equations import Carry, FusedCell
from eleatt_jax.layout import Layout

__all__ = ['RNN']

# The values of `RNN.check_seq_lengths` (kept here for earlier imports).
SEQ_LENGTH_CHECKS = sequence.SEQ_LENGTH_CHECKS


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
      carry of every step. A lifted cell (``RNN(nn.remat(EleAttGRUCell)(H))``,
      or ``nn.jit`` etc.) is scanned through its own transformed ``__call__``,
      as ``nn.RNN`` scans it: Flax applies the transform (remat with its
      policy), and the fused loop and layout choices are not used.
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
    make_carry = functools.partial(self.initialize_carry, init_key)
    carry, outputs, attention = sequence.run(
        self._scan,
        self.cell,
        sequence.checked_inputs(inputs, time_major, self.cell),
        initial_carry=initial_carry,
        initialize_carry=make_carry,
        seq_lengths=seq_lengths,
        check_lengths=self.check_seq_lengths,
        time_major=time_major,
        reverse=reverse,
        keep_order=keep_order,
    )
    if attention is not None:
      axis = _intermediates_axis(self.variable_axes)
      if axis is not None:  # As nn.RNN(..., variable_axes) stacks them.
        time_axis = attention.ndim - 2 if not time_major else 0
        attention = jnp.moveaxis(attention, time_axis, axis)
      self.cell.sow('intermediates', 'attention', attention)
    return (carry, outputs) if return_carry else outputs

  @property
  def layout(self) -> Layout:
    """This backend's default layout with the attributes that are set."""
    return Layout.choose(
        split_gates=self.split_gates,
        hoist_input_projection=self.hoist_input_projection,
        fused_backward=self.fused_backward,
    )

  @property
  def step_layout(self) -> Layout:
    """The layout of :meth:`step`: :attr:`layout`, with the backend's
    ``step_split_gates`` unless ``split_gates`` is set."""
    return Layout.choose(
        split_gates=self.split_gates,
        hoist_input_projection=self.hoist_input_projection,
        fused_backward=self.fused_backward,
        step=True,
    )

  @nn.nowrap
  def _loop(self) -> tuple[bool, bool]:
    """``(fused, wrapped)``: whether the cell runs our fused loop or our scan
    of ``EleAtt.step``.

    Both call the cell's methods, not its ``__call__``. A cell whose class
    replaced that ``__call__`` (a lifted transform of the class, such as
    ``nn.remat(EleAttGRUCell)`` or ``nn.jit``, or a subclass's own) is
    scanned through its ``__call__`` instead, as ``nn.RNN`` scans it, so that
    Flax applies the transform.
    """
    call = type(self.cell).__call__
    fused = isinstance(self.cell, FusedCell) and (
        not isinstance(self.cell, FusedCellBase)
        or call is FusedCellBase.__call__
    )
    wrapped = isinstance(self.cell, EleAtt) and call is EleAtt.__call__
    return fused, wrapped

  def _scan(self, x_TBD, carry, mask_TB1, batch_shape: tuple[int, ...]):
    """Picks the loop: ``(carry, y [T, B, H], attention [T, B, D] or None)``."""
    layout = self.layout
    fused, wrapped = self._loop()
    if fused and _names_params(self.variable_axes):
      raise ValueError(
          f'RNN: variable_axes={dict(self.variable_axes)} scans the '
          f'parameters of {type(self.cell).__name__} over time; fused cells '
          'share one set of parameters across steps (broadcast).'
      )
    remat, policy = self.remat, self.remat_policy
    if fused:
      return sequence.run_fused(
          self.cell,
          x_TBD,
          carry,
          mask_TB1,
          layout,
          unroll=self.unroll,
          remat=remat,
          remat_policy=policy,
      )
    projection_TBD = None
    if wrapped and layout.hoist_input_projection:
      projection_TBD = self.cell.input_projection(x_TBD, carry)
    # Any other cell sees its true batch shape, so what it sows is stacked as
    # under nn.RNN; nn.remat(cell) wraps its __call__ and is honoured as is.
    step = functools.partial(
        _module_step,
        wrapped=wrapped,
        batch_shape=None if wrapped else batch_shape,
    )
    carry, (y_TBH, attention_TBD) = self._scan_module(
        step, carry, (x_TBD, projection_TBD, mask_TB1), remat, policy
    )
    return carry, y_TBH, attention_TBD

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
  # (eleatt_jax.streaming, which the NNX RNN runs too).

  @nn.nowrap
  def initialize_carry(
      self, rng: PRNGKey | None, input_shape: tuple[int, ...]
  ) -> Carry:
    """The carry at t=0 for steps ``x_t [*batch, D]``: ``input_shape = (*batch, D)``.

    Flax's argument order (``RNNCellBase.initialize_carry(rng,
    input_shape)``). The same carry ``__call__`` starts from:
    ``cell.initialize_carry(rng, input_shape)``, with ``key(0)`` for an
    ``rng`` of None (a zero carry draws nothing).
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
    loop, carry_like = self._loop(), self._carry_like
    return streaming.rnn_step(self, loop, carry_like, carry, x_t, valid)

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
    scan, carry_like = self._scan, self._carry_like
    return streaming.rnn_chunk(self, scan, carry_like, carry, inputs, valid)

  @nn.nowrap
  def _carry_like(self, input_shape: tuple[int, ...]) -> Carry:
    """The carry a given one is checked against (its shapes and structure)."""
    return self.initialize_carry(None, input_shape)


def _module_step(
    cell: nn.RNNCellBase,
    carry: Carry,
    xs,
    *,
    wrapped: bool,
    batch_shape: tuple[int, ...] | None,
):
  """The body of ``nn.scan``: one step of a cell the fused loop does not run.

  ``xs``: ``(x [B, D], the hoisted gate projection [B, D] or None, mask
  [B, 1] or None)``; returns ``(carry, (y, attention or None))``. Any cell
  other than ``EleAtt`` gets the caller's ``batch_shape`` back, so that what
  it sows has the shapes it has under ``nn.RNN``.
  """
  x_BD, projection_BD, mask_B1 = xs
  new_carry, y_BH, attention_BD = sequence.cell_step(
      cell,
      carry,
      x_BD,
      mask_B1,
      wrapped=wrapped,
      input_projection=projection_BD,
      batch_shape=batch_shape,
  )
  return new_carry, (y_BH, attention_BD)


def _intermediates_axis(variable_axes) -> int | None:
  """The axis ``variable_axes`` gives the ``intermediates`` collection, if any."""
  for key in ('intermediates', True):
    if key in variable_axes:
      return variable_axes[key]
  return None


def _names_params(variable_axes) -> bool:
  return any(key in ('params', True) for key in variable_axes)
