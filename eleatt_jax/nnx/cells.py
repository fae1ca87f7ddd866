r"""EleAtt gate and cells as ``flax.nnx`` modules, on the linen cells' equations.

The parameters have the linen modules' names and shapes (``gate`` with
``input_kernel [D, D]``, ``recurrent_kernel [H, D]``, ``bias [D]``; then
``input_kernel [D, G*H]``, ``recurrent_kernel [H, G*H]``, ``bias [G*H]`` and the
GRU's ``recurrent_bias [H]``), so :func:`eleatt_jax.nnx.from_linen` /
:func:`~eleatt_jax.nnx.to_linen` are renamings of nothing. A step is
:func:`eleatt_jax.equations.step`, the function the linen cells and the fused
loop (:func:`eleatt_jax.fused_scan.run`) run: the equations are written once.

A cell's ``__call__`` does not sow (a sow per step would change the state that
``nnx.RNN`` carries through its scan); :meth:`FusedCellBase.step` returns the
attention, and :class:`eleatt_jax.nnx.RNN` keeps it for the whole sequence as
the cell's ``nnx.Intermediate`` ``attention``.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import initializers
from flax.typing import Array, Dtype, Initializer

from eleatt_jax import equations as eqs
from eleatt_jax.equations import Carry, CellEquations, default_hidden
from eleatt_jax.gate import attend_with_kernels, default_kernel_init
from eleatt_jax.ops import check_float_inputs, stacked_init
from eleatt_jax.sequence import step_fused

__all__ = [
    'EleAtt',
    'EleAttG',
    'EleAttGRUCell',
    'EleAttLSTMCell',
    'EleAttSimpleCell',
    'FusedCellBase',
    'set_value',
    'value_of',
]


def value_of(variable: nnx.Variable) -> Any:
  """A variable's value (``get_value`` where Flax has it, else ``.value``)."""
  get = getattr(variable, 'get_value', None)
  return get() if get is not None else variable.value


def set_value(variable: nnx.Variable, value: Any) -> None:
  """Sets a variable's value (``set_value`` where Flax has it)."""
  if hasattr(variable, 'set_value'):
    variable.set_value(value)
  else:
    variable.value = value


def _check_features(
    module, what: str, expected: int, got: int, shape: tuple[int, ...]
) -> None:
  if got != expected:
    raise ValueError(
        f'{type(module).__name__}: {what} has {got} features (shape {shape}), '
        f'but the module was made with {expected}.'
    )


class EleAttG(nnx.Module):
  r"""Element-wise-Attention Gate, NNX: ``a = gate_fn(x W_xa + h W_ha + b_a)``.

  .. math::

      a_t = \sigma(W_{xa} x_t + W_{ha} h_{t-1} + b_a), \qquad
      \tilde{x}_t = a_t \odot x_t

  Example usage::

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from eleatt_jax.nnx import EleAttG
    >>> gate = EleAttG(3, 4, rngs=nnx.Rngs(0))   # D=3, H=4
    >>> gate(jnp.ones((2, 3)), jnp.zeros((2, 4))).shape
    (2, 3)
    >>> gate.recurrent_kernel[...].shape          # W_ha [H, D]
    (4, 3)

  Args:
    in_features: D, the features of the input the gate modulates.
    hidden_features: H, the features of the hidden state it reads.
    gate_fn: squashing function (sigmoid).
    kernel_init, recurrent_kernel_init, bias_init: initializers of ``W_xa``
      (lecun_normal), ``W_ha`` (orthogonal), ``b_a`` (zeros).
    dtype: compute dtype (default: inferred); param_dtype: float32.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  def __init__(
      self,
      in_features: int,
      hidden_features: int,
      *,
      gate_fn: Callable[..., Any] = jax.nn.sigmoid,
      kernel_init: Initializer = default_kernel_init,
      recurrent_kernel_init: Initializer = initializers.orthogonal(),
      bias_init: Initializer = initializers.zeros_init(),
      dtype: Dtype | None = None,
      param_dtype: Dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    d, h = in_features, hidden_features
    self.in_features, self.hidden_features = d, h
    self.gate_fn, self.dtype, self.param_dtype = gate_fn, dtype, param_dtype
    self.input_kernel = nnx.Param(
        kernel_init(rngs.params(), (d, d), param_dtype)
    )
    self.recurrent_kernel = nnx.Param(
        recurrent_kernel_init(rngs.params(), (h, d), param_dtype)
    )
    self.bias = nnx.Param(bias_init(rngs.params(), (d,), param_dtype))

  def kernels(self) -> dict[str, Array]:
    """``{'input_kernel', 'recurrent_kernel', 'bias'}``, the values."""
    return {
        'input_kernel': value_of(self.input_kernel),
        'recurrent_kernel': value_of(self.recurrent_kernel),
        'bias': value_of(self.bias),
    }

  def attend(
      self, inputs: Array, hidden: Array, input_projection: Array | None = None
  ) -> tuple[Array, Array]:
    """``(a * inputs, a)`` for ``inputs [..., D]``, ``hidden [..., H]``."""
    _check_features(
        self, 'inputs', self.in_features, inputs.shape[-1], inputs.shape
    )
    _check_features(
        self, 'hidden', self.hidden_features, hidden.shape[-1], hidden.shape
    )
    return attend_with_kernels(
        inputs,
        hidden,
        self.kernels(),
        gate_fn=self.gate_fn,
        dtype=self.dtype,
        input_projection=input_projection,
    )

  def __call__(self, inputs: Array, hidden: Array) -> Array:
    """The attention ``a [..., D]``."""
    return self.attend(inputs, hidden)[1]


class _SteppedCell(nnx.RNNCellBase):
  """A cell whose ``__call__`` is its ``step`` less the attention."""

  def step(
      self, carry: Carry, inputs: Array
  ) -> tuple[Carry, Array, Array | None]:
    """``(new_carry, y [..., H], attention [..., D] or None)``."""
    raise NotImplementedError

  def __call__(self, carry: Carry, inputs: Array) -> tuple[Carry, Array]:
    """One step: ``(carry, inputs [..., D]) -> (new_carry, h [..., H])``."""
    carry, y, _ = self.step(carry, inputs)
    return carry, y


class FusedCellBase(_SteppedCell):
  """The NNX fused cells: parameters and one step of their pure equations.

  Implements :class:`eleatt_jax.equations.FusedCell`, so
  :class:`eleatt_jax.nnx.RNN` runs it in :func:`eleatt_jax.fused_scan.run`.

  Args:
    in_features: D.
    hidden_features: H.
    use_gate: whether the EleAttG gate is present (True).
    gate_fn, activation_fn: sigmoid, tanh.
    kernel_init, recurrent_kernel_init, bias_init: per gate, as the linen cells.
    gate_bias_init: initializer of the gate's bias ``b_a`` (None:
      ``bias_init``), as the linen cells'.
    dtype: compute dtype (default: inferred); param_dtype: float32.
    carry_init: initializer of the carry (zeros).
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  num_blocks: ClassVar[int]
  has_recurrent_bias: ClassVar[bool] = False
  update_fn: ClassVar[Callable[..., tuple[Carry, Array]]]
  hidden_fn: ClassVar[Callable[[Carry], Array]] = staticmethod(
      eqs.hidden_is_carry
  )

  def __init__(
      self,
      in_features: int,
      hidden_features: int,
      *,
      use_gate: bool = True,
      gate_fn: Callable[..., Any] = jax.nn.sigmoid,
      activation_fn: Callable[..., Any] = jnp.tanh,
      kernel_init: Initializer = default_kernel_init,
      recurrent_kernel_init: Initializer = initializers.orthogonal(),
      bias_init: Initializer = initializers.zeros_init(),
      gate_bias_init: Initializer | None = None,
      dtype: Dtype | None = None,
      param_dtype: Dtype = jnp.float32,
      carry_init: Initializer = initializers.zeros_init(),
      rngs: nnx.Rngs,
  ):
    d, h, g = in_features, hidden_features, self.num_blocks
    self.in_features, self.hidden_features = d, h
    self.use_gate, self.gate_fn, self.activation_fn = (
        use_gate,
        gate_fn,
        activation_fn,
    )
    self.dtype, self.param_dtype, self.carry_init = (
        dtype,
        param_dtype,
        carry_init,
    )
    self.gate = (
        EleAttG(
            d,
            h,
            gate_fn=gate_fn,
            kernel_init=kernel_init,
            recurrent_kernel_init=recurrent_kernel_init,
            bias_init=bias_init if gate_bias_init is None else gate_bias_init,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        if use_gate
        else None
    )
    self.input_kernel = nnx.Param(
        stacked_init(kernel_init, g)(rngs.params(), (d, g * h), param_dtype)
    )
    self.recurrent_kernel = nnx.Param(
        stacked_init(recurrent_kernel_init, g)(
            rngs.params(), (h, g * h), param_dtype
        )
    )
    self.bias = nnx.Param(bias_init(rngs.params(), (g * h,), param_dtype))
    if self.has_recurrent_bias:
      self.recurrent_bias = nnx.Param(
          bias_init(rngs.params(), (h,), param_dtype)
      )

  def kernels(self, input_features: int) -> dict[str, Any]:
    """The parameters' values, as the linen cells' ``kernels`` returns them."""
    _check_features(
        self, 'inputs', self.in_features, input_features, (..., input_features)
    )
    params = {
        'input_kernel': value_of(self.input_kernel),
        'recurrent_kernel': value_of(self.recurrent_kernel),
        'bias': value_of(self.bias),
    }
    if self.use_gate:
      params['gate'] = self.gate.kernels()
    if self.has_recurrent_bias:
      params['recurrent_bias'] = value_of(self.recurrent_bias)
    return params

  def equations(self) -> CellEquations:
    """The cell's step as plain values, for :mod:`eleatt_jax.fused_scan`."""
    return CellEquations.of(self)

  def step(
      self, carry: Carry, inputs: Array
  ) -> tuple[Carry, Array, Array | None]:
    """``(new_carry, y [..., H], attention [..., D] or None)``."""
    return step_fused(self, carry, inputs)

  def initialize_carry(
      self, input_shape: tuple[int, ...], rngs: nnx.Rngs | None = None
  ) -> Carry:
    """``carry_init`` of shape ``input_shape[:-1] + (hidden_features,)``."""
    key = jax.random.key(0) if rngs is None else _carry_key(rngs)
    return self.carry_init(
        key, _carry_shape(self, input_shape), self.param_dtype
    )

  @property
  def num_feature_axes(self) -> int:
    return 1


def _carry_shape(cell, input_shape) -> tuple[int, ...]:
  return tuple(input_shape[:-1]) + (cell.hidden_features,)


def _carry_key(rngs):
  """A key from ``nnx.Rngs`` (its ``carry`` stream, else its default) or a stream."""
  if isinstance(rngs, nnx.Rngs):
    return rngs.carry() if 'carry' in rngs else rngs()
  return rngs()


class EleAttGRUCell(FusedCellBase):
  r"""GRU cell with an element-wise-attention gate, NNX.

  The equations of :class:`eleatt_jax.EleAttGRUCell` (Flax's ``GRUCell``
  convention), the same parameter names and shapes.

  Example usage::

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from eleatt_jax.nnx import EleAttGRUCell
    >>> cell = EleAttGRUCell(3, 4, rngs=nnx.Rngs(0))
    >>> y = nnx.RNN(cell)(jnp.ones((2, 5, 3)))        # [batch, time, H]
    >>> y.shape
    (2, 5, 4)
  """

  num_blocks: ClassVar[int] = 3
  has_recurrent_bias: ClassVar[bool] = True
  update_fn: ClassVar[Callable[..., tuple[Carry, Array]]] = staticmethod(
      eqs.gru
  )


class EleAttLSTMCell(FusedCellBase):
  r"""LSTM cell with an element-wise-attention gate, NNX; carry ``(c, h)``.

  Example usage::

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from eleatt_jax.nnx import EleAttLSTMCell
    >>> cell = EleAttLSTMCell(3, 4, rngs=nnx.Rngs(0))
    >>> (c, h), y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
    >>> c.shape, y.shape
    ((2, 4), (2, 4))
  """

  num_blocks: ClassVar[int] = 4
  update_fn: ClassVar[Callable[..., tuple[Carry, Array]]] = staticmethod(
      eqs.lstm
  )
  hidden_fn: ClassVar[Callable[[Carry], Array]] = staticmethod(
      eqs.hidden_of_c_h
  )

  def initialize_carry(
      self, input_shape: tuple[int, ...], rngs: nnx.Rngs | None = None
  ) -> Carry:
    """``(c, h)``, each ``carry_init`` of shape ``input_shape[:-1] + (H,)``."""
    key = jax.random.key(0) if rngs is None else _carry_key(rngs)
    key_c, key_h = jax.random.split(key)
    shape = _carry_shape(self, input_shape)
    return (
        self.carry_init(key_c, shape, self.param_dtype),
        self.carry_init(key_h, shape, self.param_dtype),
    )


class EleAttSimpleCell(FusedCellBase):
  r"""Standard RNN with an element-wise-attention gate, NNX.

  .. math::

      a = \sigma(W_{xa} x + W_{ha} h + b_a), \quad
      h' = \tanh(W_i (a \odot x) + b_i + W_h h)

  Example usage::

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from eleatt_jax.nnx import EleAttSimpleCell
    >>> cell = EleAttSimpleCell(3, 4, use_gate=False, rngs=nnx.Rngs(0))
    >>> cell.gate is None, cell.input_kernel[...].shape
    (True, (3, 4))
  """

  num_blocks: ClassVar[int] = 1
  update_fn: ClassVar[Callable[..., tuple[Carry, Array]]] = staticmethod(
      eqs.simple
  )


class EleAtt(_SteppedCell):
  r"""Adds an element-wise-attention gate in front of any NNX RNN cell.

  .. math::

      a_t = \sigma(W_{xa} x_t + W_{ha} h_{t-1} + b_a), \quad
      (\text{carry}_t, h_t) = \text{cell}(\text{carry}_{t-1}, a_t \odot x_t)

  ``h_{t-1}`` is read from the cell's carry as in :class:`eleatt_jax.EleAtt`
  (the array, or the last of ``(c, h)``; else ``hidden_fn(carry)``).

  Example usage::

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from eleatt_jax.nnx import EleAtt
    >>> rngs = nnx.Rngs(0)
    >>> cell = EleAtt(nnx.OptimizedLSTMCell(3, 4, rngs=rngs), rngs=rngs)
    >>> nnx.RNN(cell)(jnp.ones((2, 5, 3))).shape
    (2, 5, 4)

  Args:
    cell: the wrapped NNX cell (one feature axis).
    in_features, hidden_features: D and H (default: the cell's
      ``in_features`` / ``hidden_features``).
    hidden_fn: maps the cell's carry to ``h_{t-1}``.
    gate_fn: the gate's, as in :class:`EleAttG`; so are ``kernel_init``,
      ``recurrent_kernel_init``, ``bias_init``, ``dtype`` and
      ``param_dtype``.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  def __init__(
      self,
      cell: nnx.Module,
      *,
      in_features: int | None = None,
      hidden_features: int | None = None,
      hidden_fn: Callable[[Carry], Array] | None = None,
      gate_fn: Callable[..., Any] = jax.nn.sigmoid,
      kernel_init: Initializer = default_kernel_init,
      recurrent_kernel_init: Initializer = initializers.orthogonal(),
      bias_init: Initializer = initializers.zeros_init(),
      dtype: Dtype | None = None,
      param_dtype: Dtype = jnp.float32,
      rngs: nnx.Rngs,
  ):
    in_features = in_features or getattr(cell, 'in_features', None)
    hidden_features = hidden_features or getattr(cell, 'hidden_features', None)
    if in_features is None or hidden_features is None:
      raise ValueError(
          f'EleAtt: {type(cell).__name__} has no in_features/hidden_features; '
          'pass in_features=D and hidden_features=H.'
      )
    self.cell = cell
    self.hidden_fn = hidden_fn
    self.in_features, self.hidden_features = in_features, hidden_features
    self.gate = EleAttG(
        in_features,
        hidden_features,
        gate_fn=gate_fn,
        kernel_init=kernel_init,
        recurrent_kernel_init=recurrent_kernel_init,
        bias_init=bias_init,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )

  def hidden(self, carry: Carry) -> Array:
    return (self.hidden_fn or default_hidden)(carry)

  def step(
      self, carry: Carry, inputs: Array, input_projection: Array | None = None
  ) -> tuple[Carry, Array, Array]:
    """``(new_carry, y, attention)``: one step of the cell on ``a * inputs``.

    ``input_projection``: the gate's ``x W_xa + b_a`` if a loop computed it
    for all steps before it started, else None.
    """
    check_float_inputs(inputs, 'EleAtt')
    x_gated, attention = self.gate.attend(
        inputs, self.hidden(carry), input_projection
    )
    carry, y = self.cell(carry, x_gated)
    return carry, y, attention

  def initialize_carry(
      self, input_shape: tuple[int, ...], rngs: nnx.Rngs | None = None
  ) -> Carry:
    if rngs is None:
      rngs = nnx.Rngs(carry=0)
    return self.cell.initialize_carry(input_shape, rngs)

  @property
  def num_feature_axes(self) -> int:
    return getattr(self.cell, 'num_feature_axes', 1)
