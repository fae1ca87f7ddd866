"""How the fused loop arranges its work: one ``Layout`` value per backend.

A step of a gated fused cell (``K = G*H``, ``G`` gate blocks per hidden unit)
multiplies ``h_{t-1}`` by ``[W_ha | W_h] [H, D+K]`` and ``a_t * x_t`` by
``W_x [D, K]``. Three choices leave the numbers as they are and change only
the speed:

* ``split_gates``: multiply by per-gate blocks ``[., H]`` of the kernels
  (split once, outside the loop) instead of the whole fused kernels;
* ``hoist_input_projection``: compute the input-only part of each step
  (``x_t W_xa + b_a``, or an ungated cell's ``x_t W_x + b``) for all steps in
  one matmul before the loop;
* ``fused_backward``: differentiate with a cuDNN-style VJP whose weight
  gradients are one ``[T*B]``-deep matmul each (fused kernels only);
* ``step_split_gates``: ``split_gates`` for a single step called on its own
  (:meth:`eleatt_jax.RNN.step`, the streaming step of
  :class:`eleatt_jax.StackedRNNClassifier`). One frame per call is a different
  regime from the loop: its time is mostly the fixed cost of each XLA op, so
  fewer, larger matmuls can win where the loop prefers per-gate blocks.

The defaults are chosen per backend by measurement (``python -m
benchmarks.speed --sweep`` for the loop, ``python -m benchmarks.streaming
--layouts`` for the step); :data:`DEFAULT_LAYOUTS` says for each backend
whether its entry was measured.

Example usage::

  >>> from eleatt_jax.layout import Layout
  >>> Layout.default('cpu').split_gates
  True
  >>> Layout.default('cpu').with_choices(fused_backward=True).split_gates
  False
  >>> Layout.default('cpu').for_step().split_gates  # one frame per call
  False
  >>> Layout.default('gpu').measured
  False
  >>> Layout.choose(split_gates=False, backend='cpu').split_gates  # a layer's
  False
"""

from __future__ import annotations

import dataclasses

import jax

__all__ = ['DEFAULT_LAYOUTS', 'UNMEASURED_FALLBACK', 'Layout']


@dataclasses.dataclass(frozen=True)
class Layout:
  """The loop layout of :class:`eleatt_jax.RNN`, checked once when made.

  Attributes:
    split_gates: per-gate matmuls instead of whole fused kernels.
    hoist_input_projection: the input-only projection of all steps before the
      loop, as one matmul.
    fused_backward: the cuDNN-style VJP of :func:`eleatt_jax.fused_scan.run`
      instead of autodiff of ``lax.scan``; needs ``split_gates=False``.
    step_split_gates: ``split_gates`` of a step called on its own (see
      :meth:`for_step`).
    measured: whether these choices were measured on the backend they serve
      (False for a stated fallback); not compared, it changes no result.
  """

  split_gates: bool
  hoist_input_projection: bool
  fused_backward: bool
  step_split_gates: bool
  measured: bool = dataclasses.field(default=True, compare=False)

  def __post_init__(self):
    if self.fused_backward and self.split_gates:
      raise ValueError(
          'Layout: fused_backward=True needs split_gates=False (the '
          'custom backward works on the fused layout).'
      )

  @classmethod
  def default(cls, backend: str | None = None) -> Layout:
    """The entry of :data:`DEFAULT_LAYOUTS` for ``backend`` (default: JAX's).

    A backend without an entry gets :data:`UNMEASURED_FALLBACK`, marked
    ``measured=False``.
    """
    backend = backend or jax.default_backend()
    if backend in DEFAULT_LAYOUTS:
      return DEFAULT_LAYOUTS[backend]
    return UNMEASURED_FALLBACK

  @classmethod
  def choose(
      cls,
      *,
      split_gates: bool | None = None,
      hoist_input_projection: bool | None = None,
      fused_backward: bool | None = None,
      step: bool = False,
      backend: str | None = None,
  ) -> Layout:
    """The layout a layer or a cell runs: where every choice is made.

    The backend's :meth:`default`, with the choices that are set (not None)
    replacing its own (:meth:`with_choices`); with ``step``, as a step called
    on its own runs it (:meth:`for_step`). The linen and the NNX ``RNN`` and
    the fused cells' ``__call__`` all choose here.

    Args:
      split_gates, hoist_input_projection, fused_backward: a layer's
        attributes of the same names (None: the backend's choice).
      step: the layout of a lone step (``RNN.step``), not of the loop.
      backend: the backend whose default to start from (default: JAX's).
    """
    layout = cls.default(backend).with_choices(
        split_gates=split_gates,
        hoist_input_projection=hoist_input_projection,
        fused_backward=fused_backward,
    )
    return layout.for_step(split_gates) if step else layout

  def for_step(self, split_gates: bool | None = None) -> Layout:
    """This layout as a step called on its own runs it: ``split_gates`` is
    ``step_split_gates`` (the loop's other choices do not apply to one step).

    Args:
      split_gates: a layer's own ``split_gates`` attribute; when it is set
        (not None) the step keeps it instead of ``step_split_gates``. The
        linen and the NNX ``RNN`` both choose their step layout here.
    """
    if split_gates is None:
      split_gates = self.step_split_gates and not self.fused_backward
    return dataclasses.replace(self, split_gates=split_gates)

  def with_choices(
      self,
      *,
      split_gates: bool | None = None,
      hoist_input_projection: bool | None = None,
      fused_backward: bool | None = None,
  ) -> Layout:
    """This layout with the choices that are not None replaced.

    Asking for ``fused_backward`` without saying ``split_gates`` unsplits the
    gates, since the custom backward needs the fused kernels; asking for both
    is a ValueError.
    """
    if fused_backward is None:
      fused_backward = self.fused_backward
    if split_gates is None:
      split_gates = self.split_gates and not fused_backward
    if hoist_input_projection is None:
      hoist_input_projection = self.hoist_input_projection
    return dataclasses.replace(
        self,
        split_gates=split_gates,
        hoist_input_projection=hoist_input_projection,
        fused_backward=fused_backward,
    )


# Measured on XLA:CPU with `python -m benchmarks.speed --sweep` (README, Speed):
# slicing a fused matmul's result per gate costs more than the extra small
# matmuls, hoisting slows the backward, and the custom VJP is slower there.
# One streaming step (`python -m benchmarks.streaming --layouts`) is the other
# way round: at batch 1 the fused kernels' 10 matmuls take about half the time
# of the per-gate layout's 25.
_CPU = Layout(
    split_gates=True,
    hoist_input_projection=False,
    fused_backward=False,
    step_split_gates=False,
)

# What a backend that has not been measured runs: the CPU choices, marked so.
UNMEASURED_FALLBACK = dataclasses.replace(_CPU, measured=False)

# The default layout per backend (`jax.default_backend()`). GPU and TPU have not
# been measured yet: they run the stated fallback until `--sweep` there says
# otherwise.
DEFAULT_LAYOUTS = {
    'cpu': _CPU,
    'gpu': UNMEASURED_FALLBACK,
    'tpu': UNMEASURED_FALLBACK,
}
