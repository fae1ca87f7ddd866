r"""Per-frame latency of streaming inference, against re-running the prefix.

    python -m benchmarks.streaming [--quick] [--dims 60,150] [--batches 1,32]
        [--frames 100] [--rounds 10] [--sequential] [--layouts]

The skeleton model (EleAtt-GRU, 3 x 100, 60 classes, mean readout) at
``D`` in ``--dims`` and batch ``B`` in ``--batches``. Four ways to get the
logits after every frame of a ``--frames``-frame stream:

* ``step_jit``: :meth:`StackedRNNClassifier.step
  <eleatt_jax.StackedRNNClassifier.step>` under ``jax.jit`` (parameters
  closed over, as in an export), the carry passed from frame to frame;
* ``step_exported``: the same step exported by :mod:`eleatt_jax.export`,
  saved, and loaded as a user would: :func:`eleatt_jax.export.load_callables`
  (``jax.jit(Exported.call)``; a bare ``Exported.call`` dispatches eagerly
  and is several times slower), from its ``initialize_carry``;
* ``step_exported_valid``: the same with ``valid`` (all True; the
  ``step_valid`` export);
* with ``--layouts``, ``step_jit[split=1]`` and ``step_jit[split=0]``: the
  jitted step with per-gate and with fused kernels
  (``StackedRNNClassifier(split_gates=...)``), the measurement behind
  :attr:`Layout.step_split_gates <eleatt_jax.layout.Layout>`; ``step_jit``
  runs the backend's default;
* ``prefix_rerun``: no carry: at frame t the full-sequence function runs on the
  prefix ``0..t``, padded to the next power of two (one compiled shape per
  bucket: 1, 2, 4, ..., ``--frames``) with ``seq_lengths = t + 1``.

Each is compiled and run over one stream first. Then the implementations take
turns stream by stream, in a new random order each round: within a stream one
implementation runs alone, as it would in deployment (turns frame by frame
measured the caches that the prefix re-run had just flushed), and over the
rounds all see the same machine load. ``--sequential`` times all streams of one
implementation before the next instead (then a load that changes during the
run skews the ratios).

Prints one JSON object per line: first ``{"cpus", "loadavg", "backend",
"jax"}`` (the machine and its load), then per case and implementation
``{"impl", "D", "B", "H", "L", "frames", "us_median", "us_p99",
"total_ms", "ratio_vs_step_jit"}``: the per-frame latency (median and 99th
percentile over ``--rounds`` streams; for ``prefix_rerun`` over all frames,
whose cost grows with t), ``total_ms`` the sum of the per-frame medians over
the stream, and ``ratio_vs_step_jit`` that total over ``step_jit``'s.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from eleatt_jax import cli
from eleatt_jax import StackedRNNClassifier
from eleatt_jax import export as export_lib

FULL = dict(
    hidden=(100, 100, 100),
    classes=60,
    dims=(60, 150),
    batches=(1, 32),
    frames=100,
    rounds=10,
)
QUICK = dict(
    hidden=(8,), classes=3, dims=(6,), batches=(1,), frames=5, rounds=2
)


def _percentiles(samples_s):
  us = np.asarray(samples_s) * 1e6
  return float(np.median(us)), float(np.percentile(us, 99))


def time_streams(impls, num_frames: int, rounds: int, sequential: bool = False):
  """Times each implementation per frame over ``rounds`` streams.

  Args:
    impls: ``{name: (initial state, frame)}``, ``frame(state, t) -> (state,
      output)``: frame t of a stream (``output`` an array to wait for).
    num_frames: frames per stream.
    rounds: streams timed per implementation.
    sequential: all streams of one implementation, then the next; by default
      they take turns stream by stream, in a random order (seeded) each round.

  Returns:
    ``{name: (samples in s, per-frame medians [T] in s)}``.
  """
  names = list(impls)
  for init, frame in impls.values():  # compile and warm up: one stream
    state = init
    for t in range(num_frames):
      state, out = frame(state, t)
    jax.block_until_ready(out)
  samples = {name: np.zeros((rounds, num_frames)) for name in names}
  if sequential:
    turns = [(name, r) for name in names for r in range(rounds)]
  else:
    order = np.random.default_rng(0)
    turns = [
        (names[i], r)
        for r in range(rounds)
        for i in order.permutation(len(names))
    ]
  for name, r in turns:
    state, frame = impls[name]
    for t in range(num_frames):
      start = time.perf_counter()
      state, out = frame(state, t)
      out.block_until_ready()
      samples[name][r, t] = time.perf_counter() - start
  return {
      name: (s.reshape(-1), np.median(s, axis=0)) for name, s in samples.items()
  }


def _step_frames(step, frames, **kwargs):
  """``frame(carry, t)`` of a step ``(carry, x_t) -> (carry, logits, ...)``."""

  def frame(carry, t):
    carry, logits = step(carry, frames[t], **kwargs)[:2]
    return carry, logits

  return frame


def _prefix_frames(sequence, x_BTD):
  """``frame(None, t)``: the full sequence on the prefix 0..t, padded."""
  batch, num_frames = x_BTD.shape[:2]
  bucket = [min(1 << t.bit_length(), num_frames) for t in range(num_frames)]
  padded = {n: x_BTD[:, :n] for n in set(bucket)}
  lengths = [jnp.full((batch,), t + 1, jnp.int32) for t in range(num_frames)]
  return lambda _, t: (None, sequence(padded[bucket[t]], lengths[t]))


def run_case(
    d: int,
    b: int,
    settings: dict,
    sequential: bool = False,
    layouts: bool = False,
):
  """The rows of one (D, B) case."""
  model = StackedRNNClassifier(
      num_classes=settings['classes'], hidden_sizes=settings['hidden']
  )
  num_frames = settings['frames']
  x = jax.random.normal(jax.random.key(1), (b, num_frames, d))
  frames = [x[:, t] for t in range(num_frames)]
  variables = model.init(jax.random.key(0), x[:, :2])
  step_jit = jax.jit(functools.partial(model.apply, variables, method='step'))
  with tempfile.TemporaryDirectory() as directory:
    export_lib.save(
        export_lib.export_classifier(
            model,
            variables,
            d,
            names=('initialize_carry', 'step', 'step_valid'),
        ),
        directory,
    )
    exported = export_lib.load_callables(directory)
  exported_carry = exported['initialize_carry'](frames[0])
  sequence = jax.jit(lambda x, l: model.apply(variables, x, l))
  impls = {
      'step_jit': (model.initialize_carry(b), _step_frames(step_jit, frames)),
      'step_exported': (exported_carry, _step_frames(exported['step'], frames)),
      'step_exported_valid': (
          exported_carry,
          _step_frames(exported['step'], frames, valid=np.ones((b,), bool)),
      ),
      'prefix_rerun': (None, _prefix_frames(sequence, x)),
  }
  for split in (True, False) if layouts else ():
    step = functools.partial(
        model.clone(split_gates=split).apply, variables, method='step'
    )
    impls[f'step_jit[split={split:d}]'] = (
        model.initialize_carry(b),
        _step_frames(jax.jit(step), frames),
    )
  results = time_streams(impls, num_frames, settings['rounds'], sequential)
  base = results['step_jit'][1].sum()
  rows = []
  for impl, (samples, medians) in results.items():
    median, p99 = _percentiles(samples)
    rows.append({
        'impl': impl,
        'D': d,
        'B': b,
        'H': settings['hidden'][0],
        'L': len(settings['hidden']),
        'frames': num_frames,
        'us_median': round(median, 1),
        'us_p99': round(p99, 1),
        'total_ms': round(1e3 * medians.sum(), 3),
        'ratio_vs_step_jit': round(float(medians.sum() / base), 2),
    })
  return rows


def main(argv=None):
  parser = cli.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument(
      '--quick',
      action='store_true',
      help='tiny model and stream (a smoke test)',
  )
  parser.add_argument('--dims', help='comma-separated D (default 60,150)')
  parser.add_argument('--batches', help='comma-separated B (default 1,32)')
  parser.add_argument('--frames', type=int, help='stream length (100)')
  parser.add_argument(
      '--rounds', type=int, help='streams timed per implementation (10)'
  )
  parser.add_argument(
      '--sequential',
      action='store_true',
      help=(
          'time one implementation after the other instead '
          'of stream by stream in turn'
      ),
  )
  parser.add_argument(
      '--layouts',
      action='store_true',
      help=(
          'also time the step with per-gate and with fused kernels '
          '(to choose Layout.step_split_gates)'
      ),
  )
  args = parser.parse_args(argv)
  settings = dict(QUICK if args.quick else FULL)
  if args.dims:
    settings['dims'] = tuple(int(v) for v in args.dims.split(','))
  if args.batches:
    settings['batches'] = tuple(int(v) for v in args.batches.split(','))
  if args.frames:
    settings['frames'] = args.frames
  if args.rounds:
    settings['rounds'] = args.rounds
  print(
      json.dumps({
          'cpus': os.cpu_count(),
          'loadavg': [round(v, 2) for v in os.getloadavg()],
          'backend': jax.default_backend(),
          'jax': jax.__version__,
      }),
      flush=True,
  )
  for d in settings['dims']:
    for b in settings['batches']:
      for row in run_case(d, b, settings, args.sequential, args.layouts):
        print(json.dumps(row), flush=True)


if __name__ == '__main__':
  cli.run_plain(main)
