r"""The fused cells' equations as pure functions, and one step of a fused cell.

Each cell's equations are a function ``(carry, x_proj, h_proj, params) ->
(new_carry, y)`` of its input and recurrent pre-activations (tuples of G
``[B, H]`` blocks) and of its parameters other than the kernels (the GRU's
``b_hn``). One step, fused layout (``K = G*H``; gated cells)::

    hh  = h_{t-1} @ [W_ha | W_h]                  [B, D+K]   one matmul
    x~, a = attend(x, gx_t, hh[:, :D])            gx_t = x_t W_xa + b_a
    xp  = x~ @ W_x + b                            [B, K]     one matmul
    carry_t, y_t = equations(carry_{t-1}, xp, hh[:, D:], params)

The split layout multiplies by per-gate blocks of the same kernels instead
(:class:`~eleatt_jax.layout.Layout`). :func:`step` is what the cells'
``__call__`` and the loop of :mod:`eleatt_jax.fused_scan` both run; its
backward differentiates :func:`update` and :func:`~eleatt_jax.gate.attend`.

Example usage::

  >>> import jax.numpy as jnp
  >>> from eleatt_jax import equations
  >>> h = jnp.zeros((1, 2))
  >>> blocks = (jnp.zeros((1, 2)),) * 3
  >>> new_h, y = equations.gru(h, blocks, blocks,
  ...                          {'recurrent_bias': jnp.zeros(2)})
  >>> y                                # z = 0.5, n = 0: h' = 0.5 n + 0.5 h
  Array([[0., 0.]], dtype=float32)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import struct
from flax.linen.dtypes import canonicalize_dtype
from flax.typing import Array, Dtype

from eleatt_jax.gate import attend
from eleatt_jax.layout import Layout
from eleatt_jax.ops import add_bias, dense

__all__ = [
    'Blocks',
    'Carry',
    'CellEquations',
    'FusedCell',
    'StepWeights',
    'default_hidden',
    'gru',
    'hidden_is_carry',
    'hidden_of_c_h',
    'input_only',
    'input_projection',
    'lstm',
    'mask_padding',
    'recurrent_projection',
    'simple',
    'step',
    'step_weights',
    'update',
]

Carry = Any
Blocks = tuple[Array, ...]


def gru(
    carry: Array,
    x_proj: Blocks,
    h_proj: Blocks,
    params: dict[str, Array],
    *,
    gate_fn: Callable[..., Any] = nn.sigmoid,
    activation_fn: Callable[..., Any] = nn.tanh,
) -> tuple[Array, Array]:
  """GRU, Flax's convention: ``r`` multiplies ``W_hn h + b_hn``."""
  x_r, x_z, x_n = x_proj
  h_r, h_z, h_n = h_proj
  r = gate_fn(x_r + h_r)
  z = gate_fn(x_z + h_z)
  n = activation_fn(x_n + r * add_bias(h_n, params['recurrent_bias']))
  new_h = (1.0 - z) * n + z * carry.astype(n.dtype)
  return new_h, new_h


def lstm(
    carry: tuple[Array, Array],
    x_proj: Blocks,
    h_proj: Blocks,
    params: dict[str, Array],
    *,
    gate_fn: Callable[..., Any] = nn.sigmoid,
    activation_fn: Callable[..., Any] = nn.tanh,
):
  """LSTM, Flax's convention: gates ``i, f, g, o``, carry ``(c, h)``."""
  del params  # The LSTM has no parameters besides its kernels and bias.
  c, _ = carry
  i, f, g, o = (x + h for x, h in zip(x_proj, h_proj))
  new_c = gate_fn(f) * c.astype(i.dtype) + gate_fn(i) * activation_fn(g)
  new_h = gate_fn(o) * activation_fn(new_c)
  return (new_c, new_h), new_h


def simple(
    carry: Array,
    x_proj: Blocks,
    h_proj: Blocks,
    params: dict[str, Array],
    *,
    gate_fn: Callable[..., Any] = nn.sigmoid,
    activation_fn: Callable[..., Any] = nn.tanh,
) -> tuple[Array, Array]:
  """The standard RNN: ``h' = activation_fn(x_proj + h_proj)``."""
  del carry, params, gate_fn  # h enters through h_proj only; no gates.
  new_h = activation_fn(x_proj[0] + h_proj[0])
  return new_h, new_h


def hidden_is_carry(carry: Array) -> Array:
  """``h`` of a cell whose carry is ``h`` (GRU, sRNN)."""
  return carry


def hidden_of_c_h(carry: tuple[Array, Array]) -> Array:
  """``h`` of a cell whose carry is ``(c, h)`` (LSTM)."""
  return carry[1]


def default_hidden(carry: Carry) -> Array:
  """``h`` as Flax cells store it: the carry itself, or the last of ``(c, h)``."""
  if isinstance(carry, jax.Array) or hasattr(carry, 'shape'):
    return carry
  if (
      isinstance(carry, (tuple, list))
      and len(carry) == 2
      and hasattr(carry[-1], 'shape')
  ):
    return carry[-1]
  raise ValueError(
      'EleAtt: cannot find h_{t-1} in a carry of type '
      f'{type(carry).__name__}; expected an array (GRUCell, SimpleCell, '
      'MGUCell) or a tuple (c, h) (LSTMCell, OptimizedLSTMCell). Pass '
      'hidden_fn=lambda carry: ... to EleAtt.'
  )


@dataclasses.dataclass(frozen=True)
class CellEquations:
  """What the loop needs of a fused cell, as plain values (no module).

  Attributes:
    update: the cell's equations, ``(carry, x_proj, h_proj, params) ->
      (new_carry, y)`` with ``x_proj``, ``h_proj`` tuples of G ``[B, H]``.
    hidden: ``carry -> h [B, H]``, what the recurrent kernels multiply.
    num_blocks: G, the pre-activation blocks per hidden unit.
    gate_fn: the attention gate's squashing function; None: no gate.
    dtype: the compute dtype the cell asks for (None: inferred).
  """

  update: Callable[..., tuple[Carry, Array]]
  hidden: Callable[[Carry], Array]
  num_blocks: int
  gate_fn: Callable[..., Any] | None
  dtype: Dtype | None

  @classmethod
  def of(cls, cell: Any) -> CellEquations:
    """The equations of a fused cell, linen or NNX, from its attributes.

    ``cell`` names its equations (``update_fn``, ``hidden_fn``,
    ``num_blocks``) and its choices (``gate_fn``, ``activation_fn``,
    ``use_gate``, ``dtype``), as both APIs' ``FusedCellBase`` do.
    """
    return cls(
        update=functools.partial(
            type(cell).update_fn,
            gate_fn=cell.gate_fn,
            activation_fn=cell.activation_fn,
        ),
        hidden=type(cell).hidden_fn,
        num_blocks=cell.num_blocks,
        gate_fn=cell.gate_fn if cell.use_gate else None,
        dtype=cell.dtype,
    )


@runtime_checkable
class FusedCell(Protocol):
  """A cell that :func:`eleatt_jax.fused_scan.run` can run.

  ``kernels(input_features)`` creates or fetches its parameters
  (``input_kernel [D, G*H]``, ``recurrent_kernel [H, G*H]``, ``bias [G*H]``,
  ``gate`` if gated, and the parameters its equations take), and
  ``equations()`` describes its step.
  """

  def equations(self) -> CellEquations:
    ...

  def kernels(self, input_features: int) -> dict[str, Any]:
    ...


# The entries of a fused cell's parameters that are not its equations' params.
_PROJECTIONS = ('gate', 'input_kernel', 'recurrent_kernel', 'bias')


@struct.dataclass
class StepWeights:
  """A fused cell's parameters as one step multiplies by them.

  In the compute dtype, arranged once per sequence outside the loop. Fused
  layout: the arrays, with ``recurrent_kernel`` the concatenation
  ``[W_ha | W_h] [H, D + G*H]`` when gated. Split layout: tuples of G per-gate
  blocks ``[., H]`` and the gate's ``W_ha`` on its own.

  Attributes:
    input_kernel: ``W_x``: ``[D, G*H]`` or G blocks ``[D, H]``.
    bias: ``b``: ``[G*H]`` or G blocks ``[H]``.
    recurrent_kernel: ``[W_ha | W_h]`` (``W_h`` if ungated) or G blocks of
      ``W_h``.
    params: the parameters the equations take (the GRU's ``recurrent_bias``).
    gate_input_kernel: ``W_xa [D, D]``, None if ungated.
    gate_bias: ``b_a [D]``, None if ungated.
    gate_recurrent_kernel: ``W_ha [H, D]`` in the split layout, else None.
    layout: the layout these weights are arranged for (static).
    dtype: the compute dtype (static).
  """

  input_kernel: Array | Blocks
  bias: Array | Blocks
  recurrent_kernel: Array | Blocks
  params: dict[str, Array]
  gate_input_kernel: Array | None
  gate_bias: Array | None
  gate_recurrent_kernel: Array | None
  layout: Layout = struct.field(pytree_node=False)
  dtype: Any = struct.field(pytree_node=False)


def step_weights(
    equations: CellEquations,
    params: dict[str, Any],
    inputs: Array,
    carry: Carry,
    layout: Layout,
) -> StepWeights:
  """Casts ``params`` to the compute dtype and arranges them for ``layout``.

  The compute dtype is Flax's ``promote_dtype`` policy: ``equations.dtype`` if
  set, else the promotion of the inputs, ``h`` and the parameters.
  """
  dtype = canonicalize_dtype(
      inputs,
      equations.hidden(carry),
      *jax.tree_util.tree_leaves(params),
      dtype=equations.dtype,
  )
  p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
  gate = (
      p['gate']
      if equations.gate_fn is not None
      else dict.fromkeys(('input_kernel', 'recurrent_kernel', 'bias'))
  )
  recurrent_kernel, gate_recurrent_kernel = p['recurrent_kernel'], None
  input_kernel, bias = p['input_kernel'], p['bias']
  if layout.split_gates:
    blocks = lambda a: tuple(jnp.split(a, equations.num_blocks, axis=-1))
    input_kernel, bias = blocks(input_kernel), blocks(bias)
    recurrent_kernel = blocks(recurrent_kernel)
    gate_recurrent_kernel = gate['recurrent_kernel']
  elif equations.gate_fn is not None:
    recurrent_kernel = jnp.concatenate(
        [gate['recurrent_kernel'], recurrent_kernel], axis=-1
    )
  return StepWeights(
      input_kernel=input_kernel,
      bias=bias,
      recurrent_kernel=recurrent_kernel,
      params={k: v for k, v in p.items() if k not in _PROJECTIONS},
      gate_input_kernel=gate['input_kernel'],
      gate_bias=gate['bias'],
      gate_recurrent_kernel=gate_recurrent_kernel,
      layout=layout,
      dtype=dtype,
  )


def input_projection(w: StepWeights, x: Array) -> Array | Blocks:
  """``x W_x + b`` for ``x [..., D]``: ``[..., G*H]`` or G blocks ``[..., H]``."""
  if w.layout.split_gates:
    return tuple(dense(x, k, b) for k, b in zip(w.input_kernel, w.bias))
  return dense(x, w.input_kernel, w.bias)


def input_only(equations: CellEquations, w: StepWeights, x: Array):
  """The part of a step that depends on ``x`` alone, for any leading dims.

  Gated: the gate's ``x W_xa + b_a [..., D]``; ungated: the input projection.
  """
  if equations.gate_fn is not None:
    return dense(x, w.gate_input_kernel, w.gate_bias)
  return input_projection(w, x)


def mask_padding(
    mask_B1: Array | None, new_carry: Carry, carry: Carry, y: Array
) -> tuple[Carry, Array]:
  """Past a sequence's end (``mask_B1`` False): keep the carry, output 0."""
  if mask_B1 is None:
    return new_carry, y
  new_carry = jax.tree_util.tree_map(
      lambda n, o: jnp.where(mask_B1, n, o), new_carry, carry
  )
  return new_carry, jnp.where(mask_B1, y, 0)


def update(
    equations: CellEquations,
    carry: Carry,
    xp,
    hh_cell,
    params: dict[str, Array],
    mask_B1: Array | None = None,
):
  """The cell's equations, then padding: ``(new_carry, y)``.

  ``xp``, ``hh_cell``: the input and recurrent pre-activations, fused
  ``[B, G*H]`` or per gate (tuples of G ``[B, H]``). The new carry keeps the
  carry's dtypes.
  """
  blocks = lambda a: (
      a
      if isinstance(a, tuple)
      else tuple(jnp.split(a, equations.num_blocks, axis=-1))
  )
  new_carry, y = equations.update(carry, blocks(xp), blocks(hh_cell), params)
  new_carry = jax.tree_util.tree_map(
      lambda n, o: n.astype(o.dtype), new_carry, carry
  )
  return mask_padding(mask_B1, new_carry, carry, y)


def recurrent_projection(
    equations: CellEquations, w: StepWeights, h: Array, input_features: int
):
  """``h @ [W_ha | W_h]``: ``(gate part or None, cell part, whole)``."""
  gated = equations.gate_fn is not None
  if w.layout.split_gates:
    hh_cell = tuple(h @ k for k in w.recurrent_kernel)
    hh_gate = h @ w.gate_recurrent_kernel if gated else None
    return hh_gate, hh_cell, hh_cell
  hh = h @ w.recurrent_kernel
  if not gated:
    return None, hh, hh
  return hh[..., :input_features], hh[..., input_features:], hh


def step(
    equations: CellEquations,
    w: StepWeights,
    carry: Carry,
    x: Array,
    pre: Array | Blocks | None = None,
    mask_B1: Array | None = None,
):
  """One step of a fused cell: ``(new_carry, y, attention, saved)``.

  Args:
    equations: the cell's equations.
    w: its weights (:func:`step_weights`).
    carry: the carry, leaves ``[B, ...]``.
    x: ``[B, D]`` inputs.
    pre: ``input_only(equations, w, x)`` if computed before the loop, else None.
    mask_B1: bool ``[B, 1]`` valid-step mask, or None.

  Returns:
    The new carry (same dtypes as ``carry``), ``y [B, H]``, the attention
    ``[B, D]`` (None if ungated) and what the custom backward pass needs:
    ``(carry, hh, xp, gx)``.
  """
  x = x.astype(w.dtype)
  if pre is None:
    pre = input_only(equations, w, x)
  h = equations.hidden(carry).astype(w.dtype)
  hh_gate, hh_cell, hh = recurrent_projection(equations, w, h, x.shape[-1])
  attention = gx = None
  if equations.gate_fn is None:
    xp = pre
  else:
    gx = pre
    x_gated, attention = attend(x, gx, hh_gate, equations.gate_fn)
    xp = input_projection(w, x_gated)
  new_carry, y = update(equations, carry, xp, hh_cell, w.params, mask_B1)
  return new_carry, y, attention, (carry, hh, xp, gx)
