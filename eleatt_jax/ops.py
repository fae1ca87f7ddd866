"""Array helpers that the gate, the equations and both module APIs share.

Nothing here knows about cells or modules: a matmul with a bias that keeps
strict rank promotion, the per-gate initializer of the fused kernels, and the
input check every entry point runs.

Example usage::

  >>> import jax.numpy as jnp
  >>> from eleatt_jax.ops import dense
  >>> dense(jnp.ones((2, 5, 3)), jnp.ones((3, 4)), jnp.zeros(4)).shape
  (2, 5, 4)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Array, Initializer

__all__ = ['add_bias', 'check_float_inputs', 'dense', 'stacked_init']


def add_bias(y: Array, bias: Array) -> Array:
  """``y + bias`` with ``bias [F]`` reshaped to ``y``'s rank first.

  Explicit, so that the library runs under
  ``jax_numpy_rank_promotion='raise'`` (as Flax's ``Dense`` does).
  """
  return y + jnp.reshape(bias, (1,) * (y.ndim - bias.ndim) + bias.shape)


def dense(x: Array, kernel: Array, bias: Array) -> Array:
  """``x @ kernel + bias`` for ``x [..., I]``, as one 2-D matmul.

  XLA:CPU runs a rank-3 by rank-2 dot markedly slower than the same dot on
  the flattened rank-2 operand (measured on [T, B, D] inputs).
  """
  y = x.reshape(-1, x.shape[-1]) @ kernel
  return add_bias(y, bias).reshape(x.shape[:-1] + kernel.shape[-1:])


def stacked_init(init: Initializer, num_blocks: int) -> Initializer:
  """Initializes a ``[in, num_blocks * out]`` kernel as independent blocks.

  Each gate's ``[in, out]`` block gets its own draw of ``init``, so that e.g. an
  orthogonal recurrent kernel is orthogonal per gate, as in Flax's per-gate
  ``Dense`` layers, and not across the concatenation. A boxed initializer
  (``nn.with_partitioning(init, names)``) gives a kernel boxed the same way:
  the concatenation keeps the blocks' partition names.
  """

  def _init(key, shape, dtype=jnp.float32):
    fan_in, total = shape
    if total % num_blocks:
      raise ValueError(
          f'stacked_init: last axis {total} is not a multiple of '
          f'{num_blocks} blocks.'
      )
    keys = jax.random.split(key, num_blocks)
    blocks = [init(k, (fan_in, total // num_blocks), dtype) for k in keys]
    if isinstance(blocks[0], nn.meta.AxisMetadata):
      return blocks[0].replace_boxed(
          jnp.concatenate([b.unbox() for b in blocks], axis=-1)
      )
    return jnp.concatenate(blocks, axis=-1)

  return _init


def check_float_inputs(inputs: Array, where: str) -> None:
  """Raises a ValueError naming ``where`` if ``inputs`` are not floats."""
  if not jnp.issubdtype(inputs.dtype, jnp.floating):
    raise ValueError(
        f'{where}: expected floating-point inputs, got dtype '
        f'{inputs.dtype} (shape {inputs.shape}); cast with '
        '.astype(jnp.float32).'
    )
