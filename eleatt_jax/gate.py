r"""The Element-wise-Attention Gate (EleAttG): one pure function and its module.

.. math::

    a_t = \sigma(W_{xa} x_t + b_a + W_{ha} h_{t-1}), \qquad
    \tilde{x}_t = a_t \odot x_t

:func:`attend` is the gate's step, written once: :class:`EleAttG`, the fused
cells' step and its custom backward all call it. ``W_xa x_t + b_a`` depends on
the input alone, so a loop can compute it for all steps before it starts.

Example usage::

  >>> import jax.numpy as jnp
  >>> from eleatt_jax.gate import attend
  >>> x = jnp.array([[2.0, -4.0]])
  >>> gated, a = attend(x, jnp.zeros((1, 2)), jnp.zeros((1, 2)))
  >>> a, gated
  (Array([[0.5, 0.5]], dtype=float32), Array([[ 1., -2.]], dtype=float32))
"""

from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp
from flax import linen as nn
from flax.linen import initializers
from flax.linen.dtypes import promote_dtype
from flax.typing import Array, Dtype, Initializer

from eleatt_jax.ops import dense

__all__ = ['EleAttG', 'attend', 'attend_with_kernels', 'check_param_shape']

default_kernel_init = nn.linear.default_kernel_init


def check_param_shape(
    module: nn.Module, name: str, expected: tuple[int, ...], what: str
) -> None:
  """Raises a ValueError naming the mismatch if an existing param's shape differs.

  Flax would raise its own ScopeParamShapeError; a ValueError that says which
  input dimension was expected is easier to act on.
  """
  if module.has_variable('params', name):
    # A boxed parameter (nn.with_partitioning) is checked by its value's shape.
    shape = tuple(jnp.shape(nn.meta.unbox(module.get_variable('params', name))))
    if shape != tuple(expected):
      raise ValueError(
          f'{type(module).__name__} {module.name!r}: parameter {name!r} has'
          f' shape {shape}, so {what}; the call implies {tuple(expected)}.'
      )


def attend(
    inputs: Array,
    input_part: Array,
    recurrent_part: Array,
    gate_fn: Callable[..., Any] = nn.sigmoid,
) -> tuple[Array, Array]:
  """The gate's step: ``(a * x, a)`` with ``a = gate_fn(input_part + h W_ha)``.

  Args:
    inputs: ``x_t [..., D]``, the input the gate modulates.
    input_part: ``x_t W_xa + b_a [..., D]``.
    recurrent_part: ``h_{t-1} W_ha [..., D]``.
    gate_fn: the gate's squashing function.

  Returns:
    The gated input ``a * x`` (in the wider of the two dtypes) and ``a``.
  """
  attention = gate_fn(input_part + recurrent_part)
  return attention * inputs, attention


def _promoted(
    inputs: Array, hidden: Array, kernels: dict[str, Array], dtype: Dtype | None
) -> list[Array]:
  """``inputs, hidden, W_xa, W_ha, b_a`` in the compute dtype.

  Flax's policy: ``dtype`` if set, else the promotion of all of them.
  """
  return promote_dtype(
      inputs,
      hidden,
      kernels['input_kernel'],
      kernels['recurrent_kernel'],
      kernels['bias'],
      dtype=dtype,
  )


def attend_with_kernels(
    inputs: Array,
    hidden: Array,
    kernels: dict[str, Array],
    *,
    gate_fn: Callable[..., Any] = nn.sigmoid,
    dtype: Dtype | None = None,
    input_projection: Array | None = None,
) -> tuple[Array, Array]:
  """``(a * inputs, a)`` from the gate's parameters: the linen and NNX gate.

  Args:
    inputs: ``x_t [..., D]``.
    hidden: ``h_{t-1} [..., H]``.
    kernels: ``{'input_kernel': W_xa [D, D], 'recurrent_kernel': W_ha [H, D],
      'bias': b_a [D]}``.
    gate_fn: the gate's squashing function.
    dtype: the compute dtype (None: Flax's promotion of all of them).
    input_projection: ``x_t W_xa + b_a`` if a loop computed it before it
      started, else None.
  """
  x, h, w_x, w_h, b = _promoted(inputs, hidden, kernels, dtype)
  if input_projection is None:
    input_projection = dense(x, w_x, b)
  return attend(inputs, input_projection, h @ w_h, gate_fn)


class EleAttG(nn.Module):
  r"""Element-wise-Attention Gate (Zhang et al., EleAtt-RNN, TIP 2019).

  One attention value per input dimension, computed from the current input and
  the previous hidden state of the RNN block it belongs to:

  .. math::

      a_t = \sigma(W_{xa} x_t + W_{ha} h_{t-1} + b_a), \qquad
      \tilde{x}_t = a_t \odot x_t

  ``__call__`` returns ``a_t``; the caller modulates its input with it.

  Example usage::

    >>> import jax, jax.numpy as jnp
    >>> from eleatt_jax import EleAttG
    >>> x = jnp.ones((2, 3))   # <float32>[batch, input_features]
    >>> h = jnp.zeros((2, 4))  # <float32>[batch, hidden_features]
    >>> gate = EleAttG()
    >>> variables = gate.init(jax.random.key(0), x, h)
    >>> a = gate.apply(variables, x, h)
    >>> a.shape
    (2, 3)
    >>> jax.tree_util.tree_map(jnp.shape, variables['params'])
    {'bias': (3,), 'input_kernel': (3, 3), 'recurrent_kernel': (4, 3)}

  Attributes:
    gate_fn: squashing function of the gate (default: sigmoid).
    kernel_init: initializer for ``W_xa`` (default: lecun_normal).
    recurrent_kernel_init: initializer for ``W_ha`` (default: orthogonal).
    bias_init: initializer for ``b_a`` (default: zeros, so ``a`` starts near 0.5).
    dtype: the dtype of the computation (default: infer from inputs and params).
    param_dtype: the dtype passed to parameter initializers (default: float32).
  """

  gate_fn: Callable[..., Any] = nn.sigmoid
  kernel_init: Initializer = default_kernel_init
  recurrent_kernel_init: Initializer = initializers.orthogonal()
  bias_init: Initializer = initializers.zeros_init()
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def kernels(
      self, input_features: int, hidden_features: int
  ) -> dict[str, Array]:
    """Creates (at init) or fetches the gate's parameters.

    Returns:
      The parameters as a dict with ``input_kernel`` (W_xa, [D, D]),
      ``recurrent_kernel`` (W_ha, [H, D]) and ``bias`` (b_a, [D]), where
      ``D = input_features`` and ``H = hidden_features``.
    """
    d, h = input_features, hidden_features
    check_param_shape(
        self, 'input_kernel', (d, d), 'the gate expects inputs of size D'
    )
    check_param_shape(
        self,
        'recurrent_kernel',
        (h, d),
        'the gate expects hidden states of size H',
    )
    return {
        'input_kernel': self.param(
            'input_kernel', self.kernel_init, (d, d), self.param_dtype
        ),
        'recurrent_kernel': self.param(
            'recurrent_kernel',
            self.recurrent_kernel_init,
            (h, d),
            self.param_dtype,
        ),
        'bias': self.param('bias', self.bias_init, (d,), self.param_dtype),
    }

  def _check_ranks(self, inputs: Array, hidden: Array) -> None:
    if inputs.ndim < 1 or hidden.ndim < 1:
      raise ValueError(
          'EleAttG expects inputs [..., D] and hidden [..., H], got '
          f'shapes {inputs.shape} and {hidden.shape}.'
      )

  def input_projection(self, inputs: Array, hidden: Array) -> Array:
    """``x W_xa + b_a``: the part of the gate that depends on ``x`` alone.

    A loop computes it for all steps at once and passes it to :meth:`attend`.
    ``hidden`` (any step's, e.g. the initial one) gives ``H`` and takes part
    in the dtype promotion, as in :meth:`attend`.
    """
    self._check_ranks(inputs, hidden)
    kernels = self.kernels(inputs.shape[-1], hidden.shape[-1])
    inputs, _, w_x, _, b = _promoted(inputs, hidden, kernels, self.dtype)
    return dense(inputs, w_x, b)

  def attend(
      self, inputs: Array, hidden: Array, input_projection: Array | None = None
  ) -> tuple[Array, Array]:
    """``(a * inputs, a)``: the gated input and the attention.

    Args:
      inputs: ``<float>[..., D]``, the block's input ``x_t``.
      hidden: ``<float>[..., H]``, the block's previous output ``h_{t-1}``.
      input_projection: :meth:`input_projection` of ``inputs`` if computed
        before the loop, else None.

    Returns:
      ``a * inputs`` (in the wider of ``inputs``' and the compute dtype) and
      ``a``, ``<dtype>[..., D]``.
    """
    self._check_ranks(inputs, hidden)
    return attend_with_kernels(
        inputs,
        hidden,
        self.kernels(inputs.shape[-1], hidden.shape[-1]),
        gate_fn=self.gate_fn,
        dtype=self.dtype,
        input_projection=input_projection,
    )

  def __call__(self, inputs: Array, hidden: Array) -> Array:
    """Computes the attention ``a``.

    Args:
      inputs: ``<float>[..., D]``, the block's input ``x_t``.
      hidden: ``<float>[..., H]``, the block's previous output ``h_{t-1}``.

    Returns:
      ``<dtype>[..., D]``, the attention values in (0, 1) for sigmoid.
    """
    return self.attend(inputs, hidden)[1]
