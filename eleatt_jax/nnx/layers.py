"""``RNN`` for NNX: the fused loop of :mod:`eleatt_jax.fused_scan`, as an nnx.Module.

The NNX counterpart of :class:`eleatt_jax.RNN`, with ``nnx.RNN``'s signature:
fused cells run :func:`eleatt_jax.fused_scan.run` (the loop the linen layer
runs), any other NNX cell a ``lax.scan`` of its ``__call__``; padding is masked
in the loop (outputs past a sequence's end are 0, the final carry is the carry
at the last valid step). The gate values of the latest call are the cell's
``nnx.Intermediate`` ``attention``, ``[*batch, time, D]``, in one piece.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from flax import nnx
from flax.typing import Array

from eleatt_jax import sequence
from eleatt_jax import streaming
from eleatt_jax.equations import Carry, FusedCell
from eleatt_jax.layout import Layout
from eleatt_jax.nnx.cells import EleAtt

__all__ = ['RNN']


class RNN(nnx.Module):
  """Runs an NNX cell over a sequence; fused cells in the fused loop.

  Example usage::

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from eleatt_jax.nnx import RNN, EleAttGRUCell
    >>> x, lengths = jnp.ones((4, 10, 3)), jnp.array([10, 7, 3, 1])
    >>> layer = RNN(EleAttGRUCell(3, 8, rngs=nnx.Rngs(0)))
    >>> y = layer(x, seq_lengths=lengths)
    >>> y.shape
    (4, 10, 8)
    >>> layer.cell.attention[...].shape        # a_t: [batch, time, D]
    (4, 10, 3)
    >>> sorted(nnx.state(layer, nnx.Intermediate)['cell'])
    ['attention']
    >>> step = nnx.jit(lambda m, c, x_t, v: m.step(c, x_t, v))  # streaming
    >>> carry, ys = layer.initialize_carry((4, 3)), []   # x_t: [batch, D]
    >>> for t in range(10):
    ...   carry, y_t, a_t = step(layer, carry, x[:, t], t < lengths)
    ...   ys.append(y_t)
    >>> bool(jnp.allclose(jnp.stack(ys, axis=1), y, atol=1e-5))
    True

  Args:
    cell: an NNX cell (``in_features``-style, one feature axis).
    time_major, return_carry, reverse, keep_order, unroll: as ``nnx.RNN``.
    remat: ``jax.checkpoint`` each step; the backward keeps only the carries.
    remat_policy: its policy (default None: save nothing inside a step).
    hoist_input_projection, split_gates, fused_backward: the fused loop's
      :class:`~eleatt_jax.layout.Layout` choices (default: per backend;
      :meth:`step` runs ``step_layout``, the backend's ``step_split_gates``
      unless ``split_gates`` is set).
    check_seq_lengths: check that lengths lie in ``[1, T]``, as
      :class:`eleatt_jax.RNN`'s: ``True`` (concrete lengths), ``'checkify'``
      or ``'callback'`` (traced lengths too) or ``False``.
    rngs: for ``initialize_carry`` of cells that draw their carry (as
      ``nnx.RNN``: True gives a ``carry`` stream seeded 0).
  """

  def __init__(
      self,
      cell: nnx.Module,
      *,
      time_major: bool = False,
      return_carry: bool = False,
      reverse: bool = False,
      keep_order: bool = False,
      unroll: int = 1,
      remat: bool = False,
      remat_policy: Callable[..., bool] | None = None,
      hoist_input_projection: bool | None = None,
      split_gates: bool | None = None,
      fused_backward: bool | None = None,
      check_seq_lengths: bool | str = True,
      rngs: nnx.Rngs | bool = True,
  ):
    self.cell = cell
    self.time_major, self.return_carry = time_major, return_carry
    self.reverse, self.keep_order, self.unroll = reverse, keep_order, unroll
    self.remat, self.remat_policy = remat, remat_policy
    choices = dict(
        split_gates=split_gates,
        hoist_input_projection=hoist_input_projection,
        fused_backward=fused_backward,
    )
    self.layout = Layout.choose(**choices)
    self.step_layout = Layout.choose(**choices, step=True)
    self.check_seq_lengths = check_seq_lengths
    if rngs is True:
      rngs = nnx.Rngs(carry=0)
    self.rngs = rngs if isinstance(rngs, nnx.Rngs) else None

  def __call__(
      self,
      inputs: Array,
      *,
      initial_carry: Carry | None = None,
      seq_lengths: Array | None = None,
      return_carry: bool | None = None,
      time_major: bool | None = None,
      reverse: bool | None = None,
      keep_order: bool | None = None,
      rngs: Any = None,
  ):
    """``outputs [*batch, time, H]``, or ``(final_carry, outputs)``.

    Same arguments as ``nnx.RNN.__call__`` (so ``nnx.Bidirectional`` takes
    it); ``seq_lengths <int>[*batch]`` in ``[1, T]``.
    """
    return_carry = self.return_carry if return_carry is None else return_carry
    time_major = self.time_major if time_major is None else time_major
    reverse = self.reverse if reverse is None else reverse
    keep_order = self.keep_order if keep_order is None else keep_order
    rngs = rngs if rngs is not None else self.rngs
    carry, outputs, attention = sequence.run(
        self._scan,
        self.cell,
        sequence.checked_inputs(inputs, time_major, self.cell),
        initial_carry=initial_carry,
        initialize_carry=lambda shape: self.cell.initialize_carry(shape, rngs),
        expected_carry=self.initialize_carry,
        seq_lengths=seq_lengths,
        check_lengths=self.check_seq_lengths,
        time_major=time_major,
        reverse=reverse,
        keep_order=keep_order,
    )
    if attention is not None:
      # The latest call's gate values, as state (an attribute, not Module.sow:
      # sow appends, and outside nnx.capture newer Flax deprecates it).
      self.cell.attention = nnx.Intermediate(attention)
    return (carry, outputs) if return_carry else outputs

  def _loop(self) -> tuple[bool, bool]:
    """``(fused, wrapped)``: the cell runs the fused loop; the cell is an
    ``EleAtt`` wrapper (whose ``step`` returns the attention)."""
    return isinstance(self.cell, FusedCell), isinstance(self.cell, EleAtt)

  def _scan(self, x_TBD, carry, mask_TB1, batch_shape):
    """``(carry, y [T, B, H], attention [T, B, D] or None)``."""
    fused, wrapped = self._loop()
    if fused:
      return sequence.run_fused(
          self.cell,
          x_TBD,
          carry,
          mask_TB1,
          self.layout,
          unroll=self.unroll,
          remat=self.remat,
          remat_policy=self.remat_policy,
      )
    return self._scan_module(x_TBD, carry, mask_TB1, batch_shape, wrapped)

  def _scan_module(self, x_TBD, carry, mask_TB1, batch_shape, wrapped: bool):
    """``lax.scan`` of any cell: its parameters broadcast, its other state
    (e.g. an rng stream's count) carried from step to step."""
    graphdef, params, rest = nnx.split(self.cell, nnx.Param, ...)

    def body(state_carry, xs):
      rest, carry = state_carry
      x, mask = xs
      cell = nnx.merge(graphdef, params, rest)
      new_carry, y, attention = sequence.cell_step(
          cell, carry, x, mask, wrapped=wrapped, batch_shape=batch_shape
      )
      return (nnx.state(cell, nnx.Not(nnx.Param)), new_carry), (y, attention)

    if self.remat:
      body = jax.checkpoint(body, policy=self.remat_policy, prevent_cse=False)
    (rest, carry), (y, attention) = jax.lax.scan(
        body, (rest, carry), (x_TBD, mask_TB1), unroll=self.unroll
    )
    nnx.update(self.cell, rest)
    return carry, y, attention

  # Streaming: the linen RNN's step and chunk (eleatt_jax.streaming), on this
  # layer's cell.

  def initialize_carry(
      self, input_shape: tuple[int, ...], rngs: nnx.Rngs | None = None
  ) -> Carry:
    """The carry at t=0 for steps ``x_t [*batch, D]``: ``input_shape = (*batch, D)``.

    ``cell.initialize_carry(input_shape, rngs)``; default ``rngs``: a fresh
    ``nnx.Rngs(carry=0)``, so the carry does not depend on (nor advance) the
    layer's own ``rngs`` (for zero-initialised carries, the carry ``__call__``
    starts from).
    """
    return self.cell.initialize_carry(
        tuple(input_shape), nnx.Rngs(carry=0) if rngs is None else rngs
    )

  def step(
      self, carry: Carry, x_t: Array, valid: Array | None = None
  ) -> tuple[Carry, Array, Array | None]:
    """One time step: ``(carry, x_t [*batch, D]) -> (carry, y_t [*batch, H], a_t)``.

    The step of :meth:`__call__` (:meth:`eleatt_jax.RNN.step`, in
    :attr:`step_layout`): stepping through a sequence from
    :meth:`initialize_carry` gives ``__call__``'s outputs and final carry.
    ``valid <bool>[*batch]`` is False past a sequence's end, where the carry
    stays and ``y_t`` is 0 (default: all valid). ``a_t [*batch, D]`` is
    returned, not kept as state (None for a cell without a gate).
    """
    loop, carry_like = self._loop(), self.initialize_carry
    return streaming.rnn_step(self, loop, carry_like, carry, x_t, valid)

  def chunk(
      self, carry: Carry, inputs: Array, valid: Array | None = None
  ) -> tuple[Carry, Array, Array | None]:
    """A chunk of steps: ``(carry, x [*batch, c, D]) -> (carry, y [*batch, c, H], a)``.

    The loop of :meth:`__call__` from a given carry
    (:meth:`eleatt_jax.RNN.chunk`): chunks of a sequence, the carry passed on,
    give one ``__call__``'s outputs and final carry. ``valid <bool>[*batch,
    c]`` (``[c, *batch]`` if ``time_major``) is False past a sequence's end
    (default: all valid); ``a [*batch, c, D]`` (None without a gate).
    """
    scan, carry_like = self._scan, self.initialize_carry
    return streaming.rnn_chunk(self, scan, carry_like, carry, inputs, valid)
