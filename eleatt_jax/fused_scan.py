"""One step and the time loop of the fused cells, and their layouts.

Forward, per step, fused layout (``K = G*H``; gated cells)::

    hh  = h_{t-1} @ [W_ha | W_h]                  [B, D+K]   one matmul
    a   = gate_fn(gx_t + hh[:, :D]),  x~ = a * x   gx_t = x_t W_xa + b_a
    xp  = x~ @ W_x + b                            [B, K]     one matmul
    carry_t, y_t = update(carry_{t-1}, xp, hh[:, D:])

The split layout multiplies by per-gate blocks of the same kernels instead (no
slicing of matmul results); ``gx`` (or an ungated cell's ``xp``) can be
computed for all steps before the loop. ``DEFAULT_LAYOUT`` holds the measured
choice per backend.

Backward: autodiff of ``lax.scan``, which accumulates every weight gradient
inside the backward loop (``dW += h_t^T dhh_t`` per step); or, with
``custom_backward`` (fused layout), a cuDNN-style VJP whose backward loop carries
only ``d carry`` and emits the per-step pre-activation gradients, the weight
gradients then being one ``[T*B]``-deep matmul each. Elementwise parts are
differentiated by ``jax.vjp`` of the same functions the forward pass uses, so
each cell's equations are written once (``cell._update``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from eleatt_jax.gate import add_bias

Carry = Any


# Per-backend defaults of the layout choices of `eleatt_jax.RNN`, set by
# measurement: `python -m benchmarks.speed --sweep` (README, Speed). Backends
# not measured yet use the CPU choices.
DEFAULT_LAYOUT = {
    'cpu': {'hoist_input_projection': False, 'split_gates': True,
            'fused_backward': False},
}


def default_layout(name: str) -> bool:
  """The default of layout choice ``name`` on the current backend."""
  table = DEFAULT_LAYOUT.get(jax.default_backend(), DEFAULT_LAYOUT['cpu'])
  return table[name]


def _tree_add(a, b):
  return jax.tree_util.tree_map(jnp.add, a, b)


def _matmul_sum(a_TBI, b_TBO, dtype):
  """``sum_t a_t^T b_t`` as one matmul: ``[I, O]``.

  Flattened to one contracting axis first: XLA:CPU runs the two-axis einsum
  about 3x slower (measured, 100x256 steps).
  """
  a = a_TBI.reshape(-1, a_TBI.shape[-1])
  b = b_TBO.reshape(-1, b_TBO.shape[-1])
  return jax.lax.dot_general(a, b, (((0,), (0,)), ((), ())),
                             preferred_element_type=jnp.float32).astype(dtype)


def input_only(cell, w, x):
  """The part of a step that depends on ``x`` alone, for any leading dims.

  Gated: the gate's ``x W_xa + b_a [..., D]``; ungated: the input projection
  ``x W_x + b`` (``[..., G*H]``, or a tuple of G ``[..., H]`` if split).
  """
  if cell.use_gate:
    return dense(x, w['gate_input_kernel'], w['gate_bias'])
  return _input_projection(w, x)


def dense(x, kernel, bias):
  """``x @ kernel + bias`` for ``x [..., I]``, as one 2-D matmul.

  XLA:CPU runs a rank-3 by rank-2 dot markedly slower than the same dot on
  the flattened rank-2 operand (measured on [T, B, D] inputs).
  """
  y = x.reshape(-1, x.shape[-1]) @ kernel
  return add_bias(y, bias).reshape(x.shape[:-1] + kernel.shape[-1:])


def _input_projection(w, x):
  if 'input_kernels' in w:
    return tuple(dense(x, k, b) for k, b in zip(w['input_kernels'], w['biases']))
  return dense(x, w['input_kernel'], w['bias'])


def apply_gate(cell, gx, hh_gate, x):
  """``(a * x, a)`` with ``a = gate_fn(gx + h W_ha)``."""
  attention = cell.gate_fn(gx + hh_gate)
  return attention * x, attention


def update(cell, carry, xp, hh_cell, recurrent_bias, mask_B1=None):
  """The cell's own equations, then padding: ``(new_carry, y)``.

  ``xp``, ``hh_cell``: the input and recurrent pre-activations, fused
  ``[B, G*H]`` or per gate (tuples of G ``[B, H]``). Past a sequence's end
  (``mask_B1`` False) the carry is kept and ``y`` is 0.
  """
  blocks = lambda a: (a if isinstance(a, (tuple, list)) else
                      tuple(jnp.split(a, cell.num_blocks, axis=-1)))
  new_carry, y = cell._update({'recurrent_bias': recurrent_bias}, carry,  # pylint: disable=protected-access
                              blocks(xp), blocks(hh_cell))
  new_carry = jax.tree_util.tree_map(lambda n, o: n.astype(o.dtype), new_carry,
                                     carry)
  return mask_padding(mask_B1, new_carry, carry, y)


def mask_padding(mask_B1, new_carry, carry, y):
  """Past a sequence's end (``mask_B1`` False): keep the carry, output 0."""
  if mask_B1 is None:
    return new_carry, y
  new_carry = jax.tree_util.tree_map(lambda n, o: jnp.where(mask_B1, n, o),
                                     new_carry, carry)
  return new_carry, jnp.where(mask_B1, y, 0)


def step(cell, w, carry, x, pre=None, mask_B1=None, dtype=None):
  """One step of a fused cell: ``(new_carry, y, attention, saved)``.

  Args:
    cell: the fused cell (for its equations and attributes).
    w: prepared weights (``cell.prepare``), in the compute dtype, fused or
      split per gate.
    carry: the carry, leaves ``[B, ...]``.
    x: ``[B, D]`` inputs.
    pre: ``input_only(cell, w, x)`` if computed before the loop, else None.
    mask_B1: bool ``[B, 1]`` valid-step mask, or None.
    dtype: compute dtype (default: that of ``w['input_kernel(s)']``).

  Returns:
    The new carry (same dtypes as ``carry``), ``y [B, H]``, the attention
    ``[B, D]`` (None if ungated) and, for the fused layout, what the custom
    backward pass needs: ``(carry, hh, xp, gx)``.
  """
  split = 'recurrent_kernels' in w
  dtype = dtype or jax.tree_util.tree_leaves(
      w['input_kernels' if split else 'input_kernel'])[0].dtype
  x = x.astype(dtype)
  if pre is None:
    pre = input_only(cell, w, x)
  h = cell.hidden(carry).astype(dtype)
  attention = gx = None
  if split:
    hh = hh_cell = tuple(h @ k for k in w['recurrent_kernels'])
    if cell.use_gate:
      gx = pre
      x_gated, attention = apply_gate(cell, gx, h @ w['gate_recurrent_kernel'],
                                       x)
      xp = _input_projection(w, x_gated)
    else:
      xp = pre
  else:
    hh = h @ w['recurrent_kernel']
    if cell.use_gate:
      d = x.shape[-1]
      gx = pre
      x_gated, attention = apply_gate(cell, gx, hh[..., :d], x)
      xp = _input_projection(w, x_gated)
      hh_cell = hh[..., d:]
    else:
      xp = pre
      hh_cell = hh
  new_carry, y = update(cell, carry, xp, hh_cell, w.get('recurrent_bias'),
                        mask_B1)
  return new_carry, y, attention, (carry, hh, xp, gx)


def fused_scan(cell, prepared: dict[str, Any], x_TBD, carry: Carry, mask_TB1,
               unroll: int = 1, custom_backward: bool = True):
  """Runs a fused cell over ``x [T, B, D]``.

  Args:
    cell: a fused cell (``EleAttGRUCell`` etc.), used for its equations only.
    prepared: ``cell.prepare(...)`` output (compute-dtype, fused kernels).
    x_TBD: inputs, time-major.
    carry: initial carry, leaves ``[B, ...]``.
    mask_TB1: bool ``[T, B, 1]``, True on valid steps, or None.
    unroll: scan unroll.
    custom_backward: use the cuDNN-style VJP (else autodiff of ``lax.scan``).

  Returns:
    ``(final_carry, y [T, B, H], attention [T, B, D] or None)``; past a
    sequence's end, ``y`` is 0 and the carry stays at its last valid step.
  """
  dtype = prepared['dtype']
  gated = cell.use_gate
  hoist = prepared['hoist']
  weights = {k: v for k, v in prepared.items() if k not in ('dtype', 'hoist')}
  d = x_TBD.shape[-1]
  gate_fn = functools.partial(apply_gate, cell)
  update_fn = functools.partial(update, cell)
  hidden = lambda carry: cell.hidden(carry).astype(dtype)

  def forward(w, x_TBD, carry, mask_TB1, save: bool):
    pre_TB = input_only(cell, w, x_TBD) if hoist else None

    def step_fn(carry, xs):
      x, pre, mask = xs
      new_carry, y, attention, saved = step(cell, w, carry, x, pre, mask, dtype)
      return new_carry, (y, attention, saved if save else None)

    carry, (y, attention, saved) = jax.lax.scan(
        step_fn, carry, (x_TBD, pre_TB, mask_TB1), unroll=unroll)
    return (carry, y, attention), saved

  if not custom_backward:
    return forward(weights, x_TBD.astype(dtype), carry, mask_TB1,
                   save=False)[0]
  if 'recurrent_kernels' in weights:
    raise ValueError('fused_scan: custom_backward needs the fused layout '
                     '(prepare(..., split_gates=False)).')

  # The mask is an argument, not a closure: a custom_vjp function must not
  # close over tracers (e.g. of an enclosing jit under jax.grad(jax.jit(f))).
  @jax.custom_vjp
  def run(w, x_TBD, carry, mask_TB1):
    return forward(w, x_TBD, carry, mask_TB1, save=False)[0]

  def run_fwd(w, x_TBD, carry, mask_TB1):
    outputs, saved = forward(w, x_TBD, carry, mask_TB1, save=True)
    return outputs, (w, x_TBD, mask_TB1, saved)

  def run_bwd(residuals, cotangents):
    w, x_TBD, mask_TB1, (carries, hh_TB, xp_TB, gx_TB) = residuals
    d_carry, dy_TBH, d_attention_TBD = cotangents
    w_rec_T = w['recurrent_kernel'].T
    w_in_T = w['input_kernel'].T
    recurrent_bias = w.get('recurrent_bias')

    def step(state, xs):
      d_carry, d_recurrent_bias = state
      dy, d_attention, carry, hh, xp, x, gx, mask = xs
      hh_cell = hh[:, d:] if gated else hh
      _, pull_update = jax.vjp(
          lambda c, xp, hc, rb: update_fn(c, xp, hc, rb, mask), carry, xp,
          hh_cell, recurrent_bias)
      d_carry_direct, d_xp, d_hh_cell, d_rb = pull_update((d_carry, dy))
      outs = {'xp': d_xp}
      if gated:
        d_x_gated = d_xp @ w_in_T
        _, pull_gate = jax.vjp(gate_fn, gx, hh[:, :d], x)
        d_gx, d_hh_gate, d_x = pull_gate((d_x_gated, d_attention))
        d_hh = jnp.concatenate([d_hh_gate, d_hh_cell], axis=-1)
        outs.update(gx=d_gx, x=d_x)
      else:
        d_hh = d_hh_cell
      outs['hh'] = d_hh
      _, pull_hidden = jax.vjp(hidden, carry)
      (d_carry_h,) = pull_hidden(d_hh @ w_rec_T)
      if d_rb is not None:
        d_recurrent_bias = d_recurrent_bias + d_rb
      return (_tree_add(d_carry_direct, d_carry_h), d_recurrent_bias), outs

    if not gated:
      d_attention_TBD = None
    d_rb0 = None if recurrent_bias is None else jnp.zeros_like(recurrent_bias)
    (d_carry0, d_recurrent_bias), outs = jax.lax.scan(
        step, (d_carry, d_rb0),
        (dy_TBH, d_attention_TBD, carries, hh_TB, xp_TB, x_TBD, gx_TB,
         mask_TB1),
        reverse=True, unroll=unroll)

    # Weight gradients: one [T*B]-deep matmul each.
    h_prev_TBH = hidden(carries)
    dw = {'recurrent_kernel': _matmul_sum(h_prev_TBH, outs['hh'], dtype),
          'bias': outs['xp'].sum(axis=(0, 1)).astype(dtype)}
    if recurrent_bias is not None:
      dw['recurrent_bias'] = d_recurrent_bias
    if gated:
      attention_TBD = cell.gate_fn(gx_TB + hh_TB[..., :d])
      dw['input_kernel'] = _matmul_sum(attention_TBD * x_TBD, outs['xp'], dtype)
      dw['gate_input_kernel'] = _matmul_sum(x_TBD, outs['gx'], dtype)
      dw['gate_bias'] = outs['gx'].sum(axis=(0, 1)).astype(dtype)
      dx_TBD = outs['x'] + outs['gx'] @ w['gate_input_kernel'].T
    else:
      dw['input_kernel'] = _matmul_sum(x_TBD, outs['xp'], dtype)
      dx_TBD = outs['xp'] @ w_in_T
    return dw, dx_TBD.astype(x_TBD.dtype), d_carry0, None

  run.defvjp(run_fwd, run_bwd)
  return run(weights, x_TBD.astype(dtype), carry, mask_TB1)
