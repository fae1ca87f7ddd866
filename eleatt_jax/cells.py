"""EleAtt recurrent cells following Flax's ``RNNCellBase`` contract.

Two ways to get a gated cell:

* the fused cells ``EleAttGRUCell``, ``EleAttLSTMCell`` and ``EleAttSimpleCell``,
  whose kernels are stored per kind (input, recurrent) with the gates side by
  side. A step can then multiply by the whole kernels (``h_{t-1} @ [W_ha | W_h]``
  and ``x~_t @ W_x``: two matmuls) or by per-gate blocks of them, split once
  outside the loop; which is faster depends on the backend
  (:meth:`eleatt_jax.layout.Layout.default`, chosen by measurement);
* ``EleAtt(cell)``, which puts a gate in front of any Flax cell.

Both run under ``nn.RNN`` and ``nn.Bidirectional``; :class:`eleatt_jax.RNN` is
a drop-in for ``nn.RNN`` with the same parameters, padding handled in the loop
and the attention returned in one piece. A fused cell's ``__call__`` is one
:func:`eleatt_jax.equations.step` of its pure equations
(:func:`~eleatt_jax.equations.gru` etc.), the step the loop runs;
``EleAtt`` computes its gate with the same :func:`eleatt_jax.gate.attend`.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.linen import initializers
from flax.typing import Array, Dtype, Initializer, PRNGKey

from eleatt_jax import equations as eqs
from eleatt_jax.equations import Carry, CellEquations, default_hidden
from eleatt_jax.gate import EleAttG, check_param_shape, default_kernel_init
from eleatt_jax.ops import check_float_inputs, stacked_init
from eleatt_jax.sequence import step_fused

__all__ = [
    'EleAtt',
    'EleAttGRUCell',
    'EleAttLSTMCell',
    'EleAttSimpleCell',
    'FusedCellBase',
]


class FusedCellBase(nn.RNNCellBase):
  """Parameters and step of the fused cells; subclasses name their equations.

  A subclass sets ``num_blocks`` and ``update_fn`` (one of
  :mod:`eleatt_jax.equations`' pure functions), and ``hidden_fn`` if its carry
  is not ``h``. It then implements :class:`eleatt_jax.equations.FusedCell`.

  Attributes:
    features: number of output features H.
    use_gate: whether the EleAttG gate is present (default: True).
    gate_fn: activation of the gates, the attention gate included (sigmoid).
    activation_fn: activation of the candidate state (tanh).
    kernel_init: initializer of kernels that multiply the input, per gate
      (lecun_normal).
    recurrent_kernel_init: initializer of kernels that multiply h, per gate
      (orthogonal).
    bias_init: initializer of the biases (zeros).
    gate_bias_init: initializer of the gate's bias ``b_a``; None: ``bias_init``.
      ``constant(b)`` with a large ``b`` (e.g. 3: ``a = sigmoid(3) = 0.95``)
      starts the gate near pass-through, so that the untrained cell is
      almost the plain one.
    dtype: the dtype of the computation (default: infer from inputs and params).
    param_dtype: the dtype passed to parameter initializers (float32).
    carry_init: initializer of the carry (zeros).
  """

  features: int
  use_gate: bool = True
  gate_fn: Callable[..., Any] = nn.sigmoid
  activation_fn: Callable[..., Any] = nn.tanh
  kernel_init: Initializer = default_kernel_init
  recurrent_kernel_init: Initializer = initializers.orthogonal()
  bias_init: Initializer = initializers.zeros_init()
  gate_bias_init: Initializer | None = None
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  carry_init: Initializer = initializers.zeros_init()

  num_blocks: ClassVar[int]  # G: gate pre-activations per hidden unit.
  has_recurrent_bias: ClassVar[bool] = False  # GRU's b_hn.
  update_fn: ClassVar[Callable[..., tuple[Carry, Array]]]
  hidden_fn: ClassVar[Callable[[Carry], Array]] = staticmethod(
      eqs.hidden_is_carry
  )

  @nn.compact
  def kernels(self, input_features: int) -> dict[str, Any]:
    """Creates (at init) or fetches the parameters as ``{name: array}``.

    Shapes, with ``D = input_features``, ``H = features``, ``G = num_blocks``:
    ``gate`` (if ``use_gate``): the :class:`EleAttG` parameters;
    ``input_kernel [D, G*H]``, ``recurrent_kernel [H, G*H]``, ``bias [G*H]``,
    and for the GRU ``recurrent_bias [H]``.
    """
    d, h, g = input_features, self.features, self.num_blocks
    stored_d = (
        jnp.shape(nn.meta.unbox(self.get_variable('params', 'input_kernel')))[0]
        if self.has_variable('params', 'input_kernel')
        else d
    )
    check_param_shape(
        self,
        'input_kernel',
        (d, g * h),
        f'{type(self).__name__} expects inputs of size D={stored_d}, got D={d}',
    )
    params = {}
    if self.use_gate:
      params['gate'] = EleAttG(
          name='gate',
          gate_fn=self.gate_fn,
          kernel_init=self.kernel_init,
          recurrent_kernel_init=self.recurrent_kernel_init,
          bias_init=(
              self.bias_init
              if self.gate_bias_init is None
              else self.gate_bias_init
          ),
          dtype=self.dtype,
          param_dtype=self.param_dtype,
      ).kernels(d, h)
    params['input_kernel'] = self.param(
        'input_kernel',
        stacked_init(self.kernel_init, g),
        (d, g * h),
        self.param_dtype,
    )
    params['recurrent_kernel'] = self.param(
        'recurrent_kernel',
        stacked_init(self.recurrent_kernel_init, g),
        (h, g * h),
        self.param_dtype,
    )
    params['bias'] = self.param(
        'bias', self.bias_init, (g * h,), self.param_dtype
    )
    if self.has_recurrent_bias:
      params['recurrent_bias'] = self.param(
          'recurrent_bias', self.bias_init, (h,), self.param_dtype
      )
    return params

  @nn.nowrap
  def equations(self) -> CellEquations:
    """The cell's step as plain values, for :mod:`eleatt_jax.fused_scan`."""
    return CellEquations.of(self)

  def __call__(self, carry: Carry, inputs: Array) -> tuple[Carry, Array]:
    """One step: ``(carry, inputs [..., D]) -> (new_carry, h [..., H])``.

    Sows the gate's attention ``[..., D]`` as ``intermediates/attention``.
    """
    carry, y, attention = step_fused(self, carry, inputs)
    if attention is not None:
      self.sow('intermediates', 'attention', attention)
    return carry, y

  @nn.nowrap
  def initialize_carry(
      self, rng: PRNGKey, input_shape: tuple[int, ...]
  ) -> Carry:
    """Zeros (``carry_init``) of shape ``input_shape[:-1] + (features,)``."""
    return self.carry_init(
        rng, tuple(input_shape[:-1]) + (self.features,), self.param_dtype
    )

  @property
  def num_feature_axes(self) -> int:
    return 1


class EleAttGRUCell(FusedCellBase):
  r"""GRU cell with an element-wise-attention gate on its input.

  With Flax's ``GRUCell`` convention (reset applied to ``W_hn h + b_hn``):

  .. math::

      \begin{array}{ll}
      a = \sigma(W_{xa} x + W_{ha} h + b_a), \quad \tilde{x} = a \odot x \\
      r = \sigma(W_{ir} \tilde{x} + b_{ir} + W_{hr} h) \\
      z = \sigma(W_{iz} \tilde{x} + b_{iz} + W_{hz} h) \\
      n = \tanh(W_{in} \tilde{x} + b_{in} + r \odot (W_{hn} h + b_{hn})) \\
      h' = (1 - z) \odot n + z \odot h
      \end{array}

  Parameters: ``gate`` (``W_xa``, ``W_ha``, ``b_a``), ``input_kernel [D, 3H]`` =
  ``[W_ir | W_iz | W_in]``, ``bias [3H]`` = ``[b_ir | b_iz | b_in]``,
  ``recurrent_kernel [H, 3H]`` = ``[W_hr | W_hz | W_hn]``, ``recurrent_bias [H]``
  = ``b_hn``. ``use_gate=False`` drops the gate: a plain GRU in the same layout.

  Example usage::

    >>> import jax, jax.numpy as jnp
    >>> import flax.linen as nn
    >>> from eleatt_jax import EleAttGRUCell
    >>> x = jax.random.normal(jax.random.key(0), (2, 3))
    >>> cell = EleAttGRUCell(features=4)
    >>> carry = cell.initialize_carry(jax.random.key(1), x.shape)
    >>> variables = cell.init(jax.random.key(2), carry, x)
    >>> new_carry, out = cell.apply(variables, carry, x)
    >>> out.shape
    (2, 4)
    >>> y = nn.RNN(EleAttGRUCell(4)).init_with_output(
    ...     jax.random.key(0), jnp.ones((2, 5, 3)))[0]
    >>> y.shape
    (2, 5, 4)

  Attributes:
    features: number of output features H.
    use_gate: whether the EleAttG gate is present (default: True).
    gate_fn: activation of the gates, the attention gate included (sigmoid).
    activation_fn: activation of the candidate state ``n`` (tanh).
    kernel_init, recurrent_kernel_init, bias_init, gate_bias_init, carry_init,
      dtype, param_dtype: as in :class:`FusedCellBase`.
  """

  num_blocks: ClassVar[int] = 3
  has_recurrent_bias: ClassVar[bool] = True
  update_fn: ClassVar[Callable[..., tuple[Carry, Array]]] = staticmethod(
      eqs.gru
  )


class EleAttLSTMCell(FusedCellBase):
  r"""LSTM cell with an element-wise-attention gate on its input.

  With Flax's ``LSTMCell`` convention (gates i, f, g, o; carry ``(c, h)``; the
  attention gate sees ``h``, not ``c``):

  .. math::

      \begin{array}{ll}
      a = \sigma(W_{xa} x + W_{ha} h + b_a), \quad \tilde{x} = a \odot x \\
      i = \sigma(W_{ii} \tilde{x} + W_{hi} h + b_i) \\
      f = \sigma(W_{if} \tilde{x} + W_{hf} h + b_f) \\
      g = \tanh(W_{ig} \tilde{x} + W_{hg} h + b_g) \\
      o = \sigma(W_{io} \tilde{x} + W_{ho} h + b_o) \\
      c' = f \odot c + i \odot g, \quad h' = o \odot \tanh(c')
      \end{array}

  Parameters: ``gate``, ``input_kernel [D, 4H]``, ``recurrent_kernel [H, 4H]``
  and ``bias [4H]``, each ``[i | f | g | o]``.

  Example usage::

    >>> import jax, jax.numpy as jnp
    >>> from eleatt_jax import EleAttLSTMCell
    >>> x = jax.random.normal(jax.random.key(0), (2, 3))
    >>> cell = EleAttLSTMCell(features=4)
    >>> carry = cell.initialize_carry(jax.random.key(1), x.shape)
    >>> variables = cell.init(jax.random.key(2), carry, x)
    >>> (c, h), out = cell.apply(variables, carry, x)
    >>> c.shape, out.shape
    ((2, 4), (2, 4))

  Attributes:
    features: number of output features H.
    use_gate: whether the EleAttG gate is present (default: True).
    gate_fn: activation of the gates, the attention gate included (sigmoid).
    activation_fn: activation of the candidate and the output (tanh).
    kernel_init, recurrent_kernel_init, bias_init, gate_bias_init, carry_init,
      dtype, param_dtype: as in :class:`FusedCellBase`.
  """

  num_blocks: ClassVar[int] = 4
  update_fn: ClassVar[Callable[..., tuple[Carry, Array]]] = staticmethod(
      eqs.lstm
  )
  hidden_fn: ClassVar[Callable[[Carry], Array]] = staticmethod(
      eqs.hidden_of_c_h
  )

  @nn.nowrap
  def initialize_carry(
      self, rng: PRNGKey, input_shape: tuple[int, ...]
  ) -> Carry:
    """``(c, h)``, each ``carry_init`` of shape ``input_shape[:-1] + (features,)``."""
    key_c, key_h = jax.random.split(rng)
    shape = tuple(input_shape[:-1]) + (self.features,)
    return (
        self.carry_init(key_c, shape, self.param_dtype),
        self.carry_init(key_h, shape, self.param_dtype),
    )


class EleAttSimpleCell(FusedCellBase):
  r"""Standard RNN (the paper's sRNN) with an element-wise-attention gate.

  .. math::

      a = \sigma(W_{xa} x + W_{ha} h + b_a), \quad
      h' = \tanh(W_i (a \odot x) + b_i + W_h h)

  Parameters: ``gate``, ``input_kernel [D, H]``, ``recurrent_kernel [H, H]``,
  ``bias [H]`` (Flax ``SimpleCell``'s ``i.kernel``, ``h.kernel``, ``i.bias``).

  Example usage::

    >>> import jax, jax.numpy as jnp
    >>> from eleatt_jax import EleAttSimpleCell
    >>> x = jnp.ones((2, 3))                       # [batch, features]
    >>> h = jnp.zeros((2, 4))                      # the carry is h
    >>> plain = EleAttSimpleCell(4, use_gate=False)  # the paper's sRNN baseline
    >>> sorted(plain.init(jax.random.key(0), h, x)['params'])
    ['bias', 'input_kernel', 'recurrent_kernel']
    >>> params = EleAttSimpleCell(4).init(jax.random.key(0), h, x)['params']
    >>> params['gate']['input_kernel'].shape      # W_xa [D, D]
    (3, 3)

  Attributes:
    features: number of output features H.
    use_gate: whether the EleAttG gate is present (default: True).
    gate_fn: activation of the attention gate (sigmoid).
    activation_fn: activation of the state (tanh).
    kernel_init, recurrent_kernel_init, bias_init, gate_bias_init, carry_init,
      dtype, param_dtype: as in :class:`FusedCellBase`.
  """

  num_blocks: ClassVar[int] = 1
  update_fn: ClassVar[Callable[..., tuple[Carry, Array]]] = staticmethod(
      eqs.simple
  )


class EleAtt(nn.RNNCellBase):
  r"""Adds an element-wise-attention gate in front of any Flax RNN cell.

  .. math::

      a_t = \sigma(W_{xa} x_t + W_{ha} h_{t-1} + b_a), \quad
      (\text{carry}_t, h_t) = \text{cell}(\text{carry}_{t-1}, a_t \odot x_t)

  ``h_{t-1}`` is read from the wrapped cell's carry: the carry itself for
  ``GRUCell``, ``SimpleCell``, ``MGUCell``; the second element of ``(c, h)`` for
  ``LSTMCell`` and ``OptimizedLSTMCell``; ``hidden_fn(carry)`` for anything
  else. The gate's parameters live under ``gate``, the cell's under ``cell``.

  Example usage::

    >>> import jax, jax.numpy as jnp
    >>> import flax.linen as nn
    >>> from eleatt_jax import EleAtt
    >>> x = jnp.ones((2, 5, 3))  # [batch, time, features]
    >>> rnn = nn.RNN(EleAtt(nn.OptimizedLSTMCell(4)))
    >>> y, variables = rnn.init_with_output(jax.random.key(0), x)
    >>> y.shape
    (2, 5, 4)
    >>> sorted(variables['params']['cell'])
    ['cell', 'gate']

  Attributes:
    cell: the wrapped Flax cell (any ``nn.RNNCellBase`` with one feature axis).
    hidden_fn: maps the cell's carry to ``h_{t-1} [..., H]`` (default:
      :func:`eleatt_jax.equations.default_hidden`).
    gate_fn: the gate's squashing function (sigmoid).
    kernel_init: initializer of ``W_xa`` (lecun_normal).
    recurrent_kernel_init: initializer of ``W_ha`` (orthogonal).
    bias_init: initializer of ``b_a`` (zeros).
    dtype: the dtype of the gate's computation (default: inferred).
    param_dtype: the dtype of the gate's parameters (float32).
  """

  cell: nn.RNNCellBase
  hidden_fn: Callable[[Carry], Array] | None = None
  gate_fn: Callable[..., Any] = nn.sigmoid
  kernel_init: Initializer = default_kernel_init
  recurrent_kernel_init: Initializer = initializers.orthogonal()
  bias_init: Initializer = initializers.zeros_init()
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  def setup(self):
    self.gate = EleAttG(
        gate_fn=self.gate_fn,
        kernel_init=self.kernel_init,
        recurrent_kernel_init=self.recurrent_kernel_init,
        bias_init=self.bias_init,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
    )

  def __call__(self, carry: Carry, inputs: Array) -> tuple[Carry, Array]:
    """One step of the wrapped cell on the gated input ``a * inputs``.

    Sows the attention ``[..., D]`` as ``intermediates/attention``.
    """
    carry, y, attention = self.step(carry, inputs)
    self.sow('intermediates', 'attention', attention)
    return carry, y

  def step(
      self, carry: Carry, inputs: Array, input_projection: Array | None = None
  ) -> tuple[Carry, Array, Array]:
    """``(new_carry, y, attention)``: one step, without sowing.

    Args:
      carry: the wrapped cell's carry.
      inputs: ``x_t [..., D]``.
      input_projection: the gate's :meth:`input_projection` of ``inputs`` if
        a loop computed it for all steps before it started, else None.
    """
    check_float_inputs(inputs, 'EleAtt')
    if self.cell.num_feature_axes != 1:
      raise ValueError(
          'EleAtt supports cells with one feature axis;'
          f' {type(self.cell).__name__} has {self.cell.num_feature_axes}.'
      )
    x_gated, attention = self.gate.attend(
        inputs, self.hidden(carry), input_projection
    )
    carry, y = self.cell(carry, x_gated)
    return carry, y, attention

  def input_projection(self, inputs: Array, carry: Carry) -> Array:
    """The gate's ``x W_xa + b_a`` for ``inputs [..., D]``, any leading dims."""
    return self.gate.input_projection(inputs, self.hidden(carry))

  @nn.nowrap
  def hidden(self, carry: Carry) -> Array:
    return (self.hidden_fn or default_hidden)(carry)

  @nn.nowrap
  def initialize_carry(
      self, rng: PRNGKey, input_shape: tuple[int, ...]
  ) -> Carry:
    return self.cell.initialize_carry(rng, input_shape)

  @property
  def num_feature_axes(self) -> int:
    return self.cell.num_feature_axes
