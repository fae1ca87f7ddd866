r"""Gradient memory of one EleAtt-GRU layer with and without remat.

    python -m benchmarks.memory [--lengths 784,4096] [--B 8 --D 32 --H 64]
        [--impls ours,ours_remat,...]

Prints one JSON object per line:
``{"impl", "B", "T", "D", "H", "temp_mib", "argument_mib", "output_mib"}``.

Method: ``jax.jit(jax.grad(loss)).lower(params, x).compile().memory_analysis()``
of ``loss = sum(layer(x) ** 2)`` with respect to the parameters; ``temp_mib`` is
XLA's temporary buffer size (what the backward pass keeps alive: the saved
activations of every step), the number that grows with ``T``. Implementations:
``ours`` (``RNN(EleAttGRUCell(H))``, the backend's default layout),
``ours_remat`` (``RNN(..., remat=True)``: per-step ``jax.checkpoint`` that keeps
only the carry), ``ours_fused_backward`` and ``ours_fused_backward_remat``
(the cuDNN-style VJP), ``flax`` (``nn.RNN(EleAttGRUCell(H))``) and
``flax_remat`` (``nn.RNN(nn.remat(EleAttGRUCell)(H))``).
"""

from __future__ import annotations

import json
from typing import Callable

import jax
import jax.numpy as jnp
import flax.linen as nn

from eleatt_jax import cli
from eleatt_jax import RNN, EleAttGRUCell

MIB = 2.0**20


def make_layer(impl: str, features: int) -> nn.Module:
  """The layer ``impl`` names, with ``features`` hidden units."""
  makers: dict[str, Callable[[], nn.Module]] = {
      'ours': lambda: RNN(EleAttGRUCell(features)),
      'ours_remat': lambda: RNN(EleAttGRUCell(features), remat=True),
      'ours_fused_backward': lambda: RNN(
          EleAttGRUCell(features), fused_backward=True
      ),
      'ours_fused_backward_remat': lambda: RNN(
          EleAttGRUCell(features), fused_backward=True, remat=True
      ),
      'flax': lambda: nn.RNN(EleAttGRUCell(features)),
      'flax_remat': lambda: nn.RNN(nn.remat(EleAttGRUCell)(features)),
  }
  if impl not in makers:
    raise ValueError(
        f'--impls: unknown {impl!r}; expected one of {sorted(makers)}.'
    )
  return makers[impl]()


def measure(
    impl: str, batch: int, steps: int, features_in: int, features: int
) -> dict[str, float | int | str]:
  """One row: the compiled gradient's memory analysis, in MiB."""
  layer = make_layer(impl, features)
  x = jnp.zeros((batch, steps, features_in), jnp.float32)
  params = jax.eval_shape(layer.init, jax.random.key(0), x)['params']

  def loss(params, x):
    return jnp.sum(layer.apply({'params': params}, x) ** 2)

  compiled = jax.jit(jax.grad(loss)).lower(params, x).compile()
  analysis = compiled.memory_analysis()
  return {
      'impl': impl,
      'B': batch,
      'T': steps,
      'D': features_in,
      'H': features,
      'temp_mib': round(analysis.temp_size_in_bytes / MIB, 2),
      'argument_mib': round(analysis.argument_size_in_bytes / MIB, 2),
      'output_mib': round(analysis.output_size_in_bytes / MIB, 2),
  }


def main(argv: list[str] | None = None) -> None:
  parser = cli.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--lengths', default='784,4096')
  parser.add_argument('--B', type=int, default=8)
  parser.add_argument('--D', type=int, default=32)
  parser.add_argument('--H', type=int, default=64)
  parser.add_argument(
      '--impls',
      default=(
          'ours,ours_remat,ours_fused_backward,'
          'ours_fused_backward_remat,flax,flax_remat'
      ),
  )
  args = parser.parse_args(argv)
  for steps in (int(t) for t in args.lengths.split(',')):
    for impl in args.impls.split(','):
      print(
          json.dumps(measure(impl, args.B, steps, args.D, args.H)), flush=True
      )


if __name__ == '__main__':
  cli.run_plain(main)
