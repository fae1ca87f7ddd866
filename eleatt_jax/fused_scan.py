"""The time loop of the fused cells, and its optional cuDNN-style backward.

Forward: ``lax.scan`` of :func:`eleatt_jax.equations.step` over ``x [T, B, D]``,
with the input-only part of each step (``gx_t = x_t W_xa + b_a``, or an ungated
cell's input projection) computed for all steps before the loop if the layout
hoists it.

Backward: autodiff of ``lax.scan``, which accumulates every weight gradient
inside the backward loop (``dW += h_t^T dhh_t`` per step); or, with
``layout.fused_backward`` (fused kernels), a cuDNN-style VJP whose backward
loop carries only ``d carry`` and emits the per-step pre-activation gradients,
the weight gradients then being one ``[T*B]``-deep matmul each::

    d carry_{t-1}, d xp_t, d hh_t  <-  vjp(update)(d carry_t, dy_t)
    d x~_t = d xp_t W_x^T;  d gx_t, d hh_gate_t  <-  vjp(attend)
    dW_x = sum_t x~_t^T d xp_t,  [dW_ha | dW_h] = sum_t h_{t-1}^T d hh_t, ...

The elementwise parts are differentiated by ``jax.vjp`` of the same pure
functions the forward pass runs (:func:`eleatt_jax.equations.update`,
:func:`eleatt_jax.gate.attend`), so each equation is written once.

Example usage::

  >>> import jax, jax.numpy as jnp
  >>> from eleatt_jax import EleAttGRUCell, equations, fused_scan
  >>> from eleatt_jax.layout import Layout
  >>> cell, x = EleAttGRUCell(4), jnp.ones((5, 2, 3))   # x [T, B, D]
  >>> carry = cell.initialize_carry(jax.random.key(0), x.shape[1:])
  >>> params = cell.init(jax.random.key(1), carry, x[0])['params']
  >>> eq = cell.equations()
  >>> w = equations.step_weights(eq, params, x, carry, Layout.default('cpu'))
  >>> carry, y, attention = fused_scan.run(eq, w, x, carry, None)
  >>> y.shape, attention.shape
  ((5, 2, 4), (5, 2, 3))
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from eleatt_jax.equations import (
    Carry,
    CellEquations,
    StepWeights,
    input_only,
    step,
    update,
)
from eleatt_jax.gate import attend

__all__ = ['run']


def run(
    equations: CellEquations,
    w: StepWeights,
    x_TBD,
    carry: Carry,
    mask_TB1,
    unroll: int = 1,
    remat: bool = False,
    remat_policy: Callable[..., bool] | None = None,
):
  """Runs a fused cell over ``x [T, B, D]``.

  With ``remat``, each step is a ``jax.checkpoint`` (``remat_policy``; None
  saves nothing inside the step): the backward pass keeps only the carry of
  every step, ``[T, B, H]`` (LSTM: ``(c, h)``), and recomputes the step's
  pre-activations from it; with ``fused_backward`` the custom VJP does the same.

  Args:
    equations: the cell's equations (``cell.equations()``).
    w: its weights (:func:`eleatt_jax.equations.step_weights`); their layout
      says whether to hoist the input-only projection and which backward to
      use.
    x_TBD: inputs, time-major.
    carry: initial carry, leaves ``[B, ...]``.
    mask_TB1: bool ``[T, B, 1]``, True on valid steps, or None.
    unroll: scan unroll.
    remat: rematerialise each step in the backward pass.
    remat_policy: a ``jax.checkpoint_policies`` policy for ``remat`` (autodiff
      backward only; the fused backward always recomputes all but the carry).

  Returns:
    ``(final_carry, y [T, B, H], attention [T, B, D] or None)``; past a
    sequence's end, ``y`` is 0 and the carry stays at its last valid step.
  """
  x_TBD = x_TBD.astype(w.dtype)
  if not w.layout.fused_backward:
    checkpoint = (
        functools.partial(
            jax.checkpoint, policy=remat_policy, prevent_cse=False
        )
        if remat
        else None
    )
    return _forward(
        equations,
        unroll,
        w,
        x_TBD,
        carry,
        mask_TB1,
        save=False,
        checkpoint=checkpoint,
    )[0]
  # The mask is an argument, not a closure: a custom_vjp function must not
  # close over tracers (e.g. of an enclosing jit under jax.grad(jax.jit(f))).
  fused = jax.custom_vjp(functools.partial(_outputs, equations, unroll))
  fused.defvjp(
      functools.partial(_outputs_and_residuals, equations, unroll, remat),
      functools.partial(_backward, equations, unroll),
  )
  return fused(w, x_TBD, carry, mask_TB1)


def _forward(
    equations,
    unroll,
    w,
    x_TBD,
    carry,
    mask_TB1,
    save: bool,
    checkpoint=None,
    save_carry_only: bool = False,
):
  """``((carry, y, attention), saved)``: the scan, keeping what backward needs.

  ``checkpoint``: wraps the step (``jax.checkpoint``) if not None.
  ``save_carry_only``: of what backward needs, keep only the carries.
  """
  hoist = w.layout.hoist_input_projection
  pre_TB = input_only(equations, w, x_TBD) if hoist else None

  def step_fn(carry, xs):
    x, pre, mask = xs
    new_carry, y, attention, saved = step(equations, w, carry, x, pre, mask)
    if save_carry_only:
      saved = (saved[0], None, None, None)
    return new_carry, (y, attention, saved if save else None)

  if checkpoint is not None:
    step_fn = checkpoint(step_fn)

  carry, (y, attention, saved) = jax.lax.scan(
      step_fn, carry, (x_TBD, pre_TB, mask_TB1), unroll=unroll
  )
  return (carry, y, attention), saved


def _outputs(equations, unroll, w, x_TBD, carry, mask_TB1):
  return _forward(equations, unroll, w, x_TBD, carry, mask_TB1, save=False)[0]


def _outputs_and_residuals(equations, unroll, remat, w, x_TBD, carry, mask_TB1):
  outputs, saved = _forward(
      equations,
      unroll,
      w,
      x_TBD,
      carry,
      mask_TB1,
      save=True,
      save_carry_only=remat,
  )
  return outputs, (w, x_TBD, mask_TB1, saved)


def _tree_add(a, b):
  return jax.tree_util.tree_map(jnp.add, a, b)


def _matmul_sum(a_TBI, b_TBO, dtype):
  """``sum_t a_t^T b_t`` as one matmul: ``[I, O]``.

  Flattened to one contracting axis first: XLA:CPU runs the two-axis einsum
  about 3x slower (measured, 100x256 steps). Accumulated in at least float32
  and in float64 for float64 operands (x64 agrees with autodiff to ~1e-16).
  """
  a = a_TBI.reshape(-1, a_TBI.shape[-1])
  b = b_TBO.reshape(-1, b_TBO.shape[-1])
  accumulate = jnp.promote_types(jnp.result_type(a, b), jnp.float32)
  return jax.lax.dot_general(
      a, b, (((0,), (0,)), ((), ())), preferred_element_type=accumulate
  ).astype(dtype)


def _backward_step(
    equations: CellEquations, w: StepWeights, kernels_T, d: int, state, xs
):
  """One step back: ``d carry_t -> d carry_{t-1}`` and the step's gradients.

  ``kernels_T``: ``(W_x^T, [W_ha | W_h]^T)``, transposed once before the loop.
  Returns ``(d carry_{t-1}, d params)`` and the per-step gradients of the
  pre-activations (``xp``, ``hh``, and when gated ``gx`` and ``x``).
  """
  input_kernel_T, recurrent_kernel_T = kernels_T
  d_carry, d_params = state
  dy, d_attention, carry, hh, xp, x, gx, mask = xs
  gated = equations.gate_fn is not None
  outs = {}
  if hh is None:  # remat: recompute the step's pre-activations from its carry.
    _, _, _, (_, hh, xp, gx) = step(equations, w, carry, x, None, mask)
    if gated:
      outs['x_gated'] = attend(x, gx, hh[:, :d], equations.gate_fn)[0]
  hidden = lambda carry: equations.hidden(carry).astype(w.dtype)
  _, pull_update = jax.vjp(
      lambda c, xp, hc, p: update(equations, c, xp, hc, p, mask),
      carry,
      xp,
      hh[:, d:] if gated else hh,
      w.params,
  )
  d_carry_direct, d_xp, d_hh_cell, d_step_params = pull_update((d_carry, dy))
  outs['xp'] = d_xp
  if gated:
    _, pull_gate = jax.vjp(
        lambda gx, hh_gate, x: attend(x, gx, hh_gate, equations.gate_fn),
        gx,
        hh[:, :d],
        x,
    )
    d_gx, d_hh_gate, d_x = pull_gate((d_xp @ input_kernel_T, d_attention))
    d_hh = jnp.concatenate([d_hh_gate, d_hh_cell], axis=-1)
    outs.update(gx=d_gx, x=d_x)
  else:
    d_hh = d_hh_cell
  outs['hh'] = d_hh
  _, pull_hidden = jax.vjp(hidden, carry)
  (d_carry_h,) = pull_hidden(d_hh @ recurrent_kernel_T)
  return (
      (
          _tree_add(d_carry_direct, d_carry_h),
          _tree_add(d_params, d_step_params),
      ),
      outs,
  )


def _backward(equations: CellEquations, unroll: int, residuals, cotangents):
  """The custom VJP: the backward loop, then one matmul per weight gradient."""
  w, x_TBD, mask_TB1, (carries, hh_TB, xp_TB, gx_TB) = residuals
  d_carry, dy_TBH, d_attention_TBD = cotangents
  gated = equations.gate_fn is not None
  d = x_TBD.shape[-1]
  if not gated:
    d_attention_TBD = None
  d_params0 = jax.tree_util.tree_map(jnp.zeros_like, w.params)
  kernels_T = (w.input_kernel.T, w.recurrent_kernel.T)
  (d_carry0, d_params), outs = jax.lax.scan(
      functools.partial(_backward_step, equations, w, kernels_T, d),
      (d_carry, d_params0),
      (dy_TBH, d_attention_TBD, carries, hh_TB, xp_TB, x_TBD, gx_TB, mask_TB1),
      reverse=True,
      unroll=unroll,
  )

  h_prev_TBH = equations.hidden(carries).astype(w.dtype)
  dw = w.replace(
      recurrent_kernel=_matmul_sum(h_prev_TBH, outs['hh'], w.dtype),
      bias=outs['xp'].sum(axis=(0, 1)).astype(w.dtype),
      params=d_params,
  )
  if gated:
    if 'x_gated' in outs:
      x_gated_TBD = outs['x_gated']
    else:
      x_gated_TBD, _ = attend(x_TBD, gx_TB, hh_TB[..., :d], equations.gate_fn)
    dw = dw.replace(
        input_kernel=_matmul_sum(x_gated_TBD, outs['xp'], w.dtype),
        gate_input_kernel=_matmul_sum(x_TBD, outs['gx'], w.dtype),
        gate_bias=outs['gx'].sum(axis=(0, 1)).astype(w.dtype),
    )
    dx_TBD = outs['x'] + outs['gx'] @ w.gate_input_kernel.T
  else:
    dw = dw.replace(input_kernel=_matmul_sum(x_TBD, outs['xp'], w.dtype))
    dx_TBD = outs['xp'] @ kernels_T[0]
  return dw, dx_TBD.astype(x_TBD.dtype), d_carry0, None
