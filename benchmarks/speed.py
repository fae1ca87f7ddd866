r"""Speed of EleAtt-GRU training and inference steps against stock Flax and PyTorch.

    python -m benchmarks.speed [--quick] [--cases skeleton,smnist_pixel]
        [--impls eleatt_gru,flax_gru,...] [--modes train,infer] [--repeats 7]
        [--sweep]

Prints one JSON object per line:
``{"case", "impl", "B", "T", "D", "H", "L", "mode", "ms_median", "ms_min",
"ms_max", "gflops_model", "ratio_vs_flax_gru"}``, preceded by one line with the
machine's large-matmul GFLOP/s (``{"matmul_gflops": ...}``) so model-FLOP
utilization is ``gflops_model / matmul_gflops``.

Method: every implementation of a case is compiled and warmed up first, then the
implementations are timed round-robin (one call each per round, ``--repeats``
rounds), so load from other processes spreads over all of them alike; medians are
reported. A training step is loss (mean readout, linear classifier, softmax cross
entropy), gradient and an SGD update on all parameters; an inference step is the
forward pass to logits. ``gflops_model`` counts the recurrent layers' matmul
FLOPs (2 per multiply-add; the gate's ``W_xa``, ``W_ha`` counted for gated
implementations; backward = 2x forward) divided by the median time.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from eleatt_jax import cli
from eleatt_jax import RNN, EleAtt, EleAttGRUCell

CASES = {
    # The paper's skeleton models: 3 layers of 100, NTU-like 150-dim input.
    'skeleton': dict(B=256, T=100, D=150, H=100, L=3, C=60),
    # Pixel-by-pixel sequential MNIST.
    'smnist_pixel': dict(B=128, T=784, D=1, H=128, L=1, C=10),
}
QUICK_CASES = {
    'skeleton': dict(B=64, T=50, D=150, H=100, L=2, C=60),
    'smnist_pixel': dict(B=32, T=196, D=1, H=128, L=1, C=10),
}
# (split_gates, hoist_input_projection, fused_backward, unroll) tried by --sweep.
SWEEP = [
    (True, False, False, 1),
    (True, True, False, 1),
    (True, False, False, 4),
    (False, False, False, 1),
    (False, True, False, 1),
    (False, False, True, 1),
    (False, True, True, 1),
]
JAX_IMPLS = ('eleatt_gru', 'eleatt_wrap_flax_gru', 'flax_gru', 'gru')
TORCH_IMPLS = ('torch_eleatt_gru_loop', 'torch_gru')
GATED = {'eleatt_gru', 'eleatt_wrap_flax_gru', 'torch_eleatt_gru_loop'}


def model_flops(case: dict, gated: bool, mode: str) -> float:
  """Matmul FLOPs of the recurrent layers for one step of ``mode``."""
  b, t, d, h, num_layers = (case[k] for k in 'BTDHL')
  total = 0.0
  for layer in range(num_layers):
    d_in = d if layer == 0 else h
    per_step = 3 * h * (d_in + h) + (d_in * (d_in + h) if gated else 0)
    total += 2.0 * b * t * per_step
  return total * (3.0 if mode == 'train' else 1.0)


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
  """This machine's float32 GFLOP/s on an n x n matmul (median of repeats)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    f(a).block_until_ready()
    times.append(time.perf_counter() - start)
  return 2.0 * n**3 / statistics.median(times) / 1e9


class _Stack(nn.Module):
  """``L`` recurrent layers, mean over time, linear classifier."""

  make_layer: Callable[[int], nn.Module]
  num_layers: int
  num_classes: int

  @nn.compact
  def __call__(self, x):
    for i in range(self.num_layers):
      x = self.make_layer(i)(x)
    return nn.Dense(self.num_classes)(x.mean(axis=1))


def jax_layer(
    impl: str, features: int, layout: dict[str, Any]
) -> Callable[[int], nn.Module]:
  """Layer ``i`` of an implementation; ``layout`` goes to our ``RNN``."""

  def make(i):
    name = f'layer_{i}'
    if impl == 'eleatt_gru':
      return RNN(EleAttGRUCell(features, parent=None), name=name, **layout)
    if impl == 'gru':
      return RNN(
          EleAttGRUCell(features, use_gate=False, parent=None),
          name=name,
          **layout,
      )
    if impl == 'flax_gru':
      return nn.RNN(nn.GRUCell(features, parent=None), name=name)
    if impl == 'eleatt_wrap_flax_gru':
      return nn.RNN(
          EleAtt(nn.GRUCell(features, parent=None), parent=None), name=name
      )
    raise ValueError(f'unknown JAX implementation {impl!r}')

  return make


def jax_steps(impl: str, case: dict, layout: dict[str, Any]):
  """Compiled train and infer steps of a JAX implementation."""
  model = _Stack(jax_layer(impl, case['H'], layout), case['L'], case['C'])
  rng = np.random.default_rng(0)
  x = jnp.asarray(
      rng.normal(size=(case['B'], case['T'], case['D'])), jnp.float32
  )
  y = jnp.asarray(rng.integers(0, case['C'], size=case['B']))
  params = model.init(jax.random.key(0), x)['params']

  def loss_fn(params):
    logits = model.apply({'params': params}, x)
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(log_probs, y[:, None], axis=1).mean()

  @jax.jit
  def train_step(params):
    grads = jax.grad(loss_fn)(params)
    return jax.tree_util.tree_map(lambda p, g: p - 1e-3 * g, params, grads)

  @jax.jit
  def infer_step(params):
    return model.apply({'params': params}, x)

  def run(step):
    return lambda: jax.block_until_ready(step(params))

  return {'train': run(train_step), 'infer': run(infer_step)}


def torch_steps(impl: str, case: dict):
  """(train_step, infer_step) for a PyTorch implementation, written as a PyTorch
  user would: torch.nn.GRU, or an EleAtt-GRU as a loop over torch.nn.GRUCell."""
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(os.cpu_count() or 1)
  torch.manual_seed(0)
  b, t, d, h, num_layers, c = (case[k] for k in 'BTDHLC')

  class EleAttGRULoop(torch.nn.Module):

    def __init__(self):
      super().__init__()
      dims = [d] + [h] * (num_layers - 1)
      self.gates_x = torch.nn.ModuleList(torch.nn.Linear(k, k) for k in dims)
      self.gates_h = torch.nn.ModuleList(
          torch.nn.Linear(h, k, bias=False) for k in dims
      )
      self.cells = torch.nn.ModuleList(torch.nn.GRUCell(k, h) for k in dims)
      self.head = torch.nn.Linear(h, c)

    def forward(self, x):
      for gate_x, gate_h, cell in zip(self.gates_x, self.gates_h, self.cells):
        state = x.new_zeros(x.shape[0], h)
        outputs = []
        for step in range(x.shape[1]):
          a = torch.sigmoid(gate_x(x[:, step]) + gate_h(state))
          state = cell(a * x[:, step], state)
          outputs.append(state)
        x = torch.stack(outputs, dim=1)
      return self.head(x.mean(dim=1))

  class GRU(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.gru = torch.nn.GRU(d, h, num_layers=num_layers, batch_first=True)
      self.head = torch.nn.Linear(h, c)

    def forward(self, x):
      return self.head(self.gru(x)[0].mean(dim=1))

  model = EleAttGRULoop() if impl == 'torch_eleatt_gru_loop' else GRU()
  optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
  rng = np.random.default_rng(0)
  x = torch.tensor(rng.normal(size=(b, t, d)), dtype=torch.float32)
  y = torch.tensor(rng.integers(0, c, size=b))

  def train():
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()

  def infer():
    with torch.no_grad():
      model(x)

  return {'train': train, 'infer': infer}


def time_round_robin(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> dict[str, list[float]]:
  """Milliseconds per call of each fn, interleaved over ``repeats`` rounds."""
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append((time.perf_counter() - start) * 1e3)
  return times


def torch_available() -> bool:
  try:
    import torch  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import

    return True
  except ImportError:
    return False


def main(argv: list[str] | None = None) -> None:
  parser = cli.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument(
      '--quick',
      action='store_true',
      help='smaller shapes of each case, for a fast look',
  )
  parser.add_argument('--cases', default=','.join(CASES))
  parser.add_argument('--impls', default=','.join(JAX_IMPLS + TORCH_IMPLS))
  parser.add_argument('--modes', default='train,infer')
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument(
      '--unroll',
      type=int,
      default=1,
      help='scan unroll of eleatt_jax.RNN (ours only)',
  )
  parser.add_argument(
      '--sweep',
      action='store_true',
      help=(
          'time our layouts (split_gates, '
          'hoist_input_projection, fused_backward, unroll; see '
          'SWEEP) of eleatt_gru and gru against flax_gru, to '
          'choose the per-backend defaults'
      ),
  )
  args = parser.parse_args(argv)
  if args.repeats < 5:
    parser.error('--repeats must be >= 5 (medians of at least 5)')

  impls = [i for i in args.impls.split(',') if i]
  layouts = {i: {'unroll': args.unroll} for i in impls}
  if args.sweep:
    impls, layouts = ['flax_gru'], {'flax_gru': {}}
    for base in ('eleatt_gru', 'gru'):
      for split, hoist, vjp, unroll in SWEEP:
        name = (
            f'{base}[split={split:d},hoist={hoist:d},vjp={vjp:d},'
            f'unroll={unroll}]'
        )
        layouts[name] = {
            'split_gates': split,
            'hoist_input_projection': hoist,
            'fused_backward': vjp,
            'unroll': unroll,
        }
    impls = list(layouts)
  unknown = {i.split('[')[0] for i in impls} - set(JAX_IMPLS + TORCH_IMPLS)
  if unknown:
    parser.error(f'unknown --impls {sorted(unknown)}')
  if not torch_available():
    skipped = [i for i in impls if i in TORCH_IMPLS]
    impls = [i for i in impls if i not in TORCH_IMPLS]
    if skipped:
      print(
          json.dumps({'note': f'torch not importable, skipped {skipped}'}),
          flush=True,
      )
  print(
      json.dumps({
          'backend': jax.default_backend(),
          'device': str(jax.devices()[0].device_kind),
          'cpu_count': os.cpu_count(),
          'matmul_gflops': round(matmul_gflops(), 1),
      }),
      flush=True,
  )

  cases = QUICK_CASES if args.quick else CASES
  for case_name in args.cases.split(','):
    case = cases[case_name]
    steps = {
        i: (
            torch_steps(i, case)
            if i in TORCH_IMPLS
            else jax_steps(i.split('[')[0], case, layouts[i])
        )
        for i in impls
    }
    for mode in args.modes.split(','):
      times = time_round_robin(
          {i: s[mode] for i, s in steps.items()}, args.repeats
      )
      medians = {i: statistics.median(t) for i, t in times.items()}
      for impl in impls:
        flops = model_flops(case, impl.split('[')[0] in GATED, mode)
        row = {
            'case': case_name,
            'impl': impl,
            **{k: case[k] for k in 'BTDHL'},
            'mode': mode,
            'ms_median': round(medians[impl], 2),
            'ms_min': round(min(times[impl]), 2),
            'ms_max': round(max(times[impl]), 2),
            'gflops_model': round(flops / medians[impl] / 1e6, 2),
            'ratio_vs_flax_gru': (
                round(medians[impl] / medians['flax_gru'], 3)
                if 'flax_gru' in medians
                else None
            ),
        }
        print(json.dumps(row), flush=True)


if __name__ == '__main__':
  cli.run_plain(main)
