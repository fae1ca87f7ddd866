r"""Per-frame latency of streaming inference, against re-running the prefix.

    python -m benchmarks.streaming [--quick] [--dims 60,150] [--batches 1,32]
        [--frames 100] [--rounds 3]

The skeleton model (EleAtt-GRU, 3 x 100, 60 classes, mean readout) at
``D`` in ``--dims`` and batch ``B`` in ``--batches``. Three ways to get the
logits after every frame of a ``--frames``-frame stream:

* ``step_jit``: :meth:`StackedRNNClassifier.step
  <eleatt_jax.StackedRNNClassifier.step>` under ``jax.jit`` (parameters
  closed over, as in an export), the carry passed from frame to frame;
* ``step_exported``: the same step exported by :mod:`eleatt_jax.export`,
  serialized, deserialized and called (``jax.jit(Exported.call)``: a bare
  ``Exported.call`` is traced again at every call);
* ``prefix_rerun``: no carry: at frame t the full-sequence function runs on the
  prefix ``0..t``, padded to the next power of two (one compiled shape per
  bucket: 1, 2, 4, ..., ``--frames``) with ``seq_lengths = t + 1``.

Prints one JSON object per line: first ``{"cpus", "loadavg", "backend",
"jax"}`` (the machine and its load), then per case and implementation
``{"impl", "D", "B", "H", "L", "frames", "us_median", "us_p99",
"total_ms", "ratio_vs_step_jit"}``: the per-frame latency (median and 99th
percentile over ``--rounds`` streams; for ``prefix_rerun`` over all frames,
whose cost grows with t), ``total_ms`` the sum of the per-frame medians over
the stream, and ``ratio_vs_step_jit`` that total over ``step_jit``'s.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from eleatt_jax import StackedRNNClassifier
from eleatt_jax import export as export_lib

FULL = dict(hidden=(100, 100, 100), classes=60, dims=(60, 150), batches=(1, 32),
            frames=100, rounds=3)
QUICK = dict(hidden=(8,), classes=3, dims=(6,), batches=(1,), frames=5,
             rounds=2)


def _percentiles(samples_s):
  us = np.asarray(samples_s) * 1e6
  return float(np.median(us)), float(np.percentile(us, 99))


def time_stream(step, carry, x_BTD, rounds: int):
  """Times ``step(carry, x_t)`` per frame over ``rounds`` streams.

  Returns ``(samples in s, per-frame medians [T] in s)``.
  """
  num_frames = x_BTD.shape[1]
  frames = [x_BTD[:, t] for t in range(num_frames)]
  # Compile and warm up, also for a carry that a step returned.
  jax.block_until_ready(step(step(carry, frames[0])[0], frames[0]))
  samples = np.zeros((rounds, num_frames))
  for r in range(rounds):
    c = carry
    for t in range(num_frames):
      start = time.perf_counter()
      c, logits = step(c, frames[t])[:2]
      logits.block_until_ready()
      samples[r, t] = time.perf_counter() - start
  return samples.reshape(-1), np.median(samples, axis=0)


def time_prefix(sequence, x_BTD, rounds: int):
  """Times re-running the prefix 0..t at every frame (power-of-two buckets)."""
  batch, num_frames = x_BTD.shape[:2]
  buckets = sorted({min(1 << (t).bit_length(), num_frames)
                    for t in range(num_frames)})
  padded = {n: x_BTD[:, :n] for n in buckets}
  for n in buckets:  # compile every bucket first
    jax.block_until_ready(sequence(padded[n], jnp.full((batch,), n, jnp.int32)))
  samples = np.zeros((rounds, num_frames))
  for r in range(rounds):
    for t in range(num_frames):
      n = min(1 << (t).bit_length(), num_frames)
      lengths = jnp.full((batch,), t + 1, jnp.int32)
      start = time.perf_counter()
      sequence(padded[n], lengths).block_until_ready()
      samples[r, t] = time.perf_counter() - start
  return samples.reshape(-1), np.median(samples, axis=0)


def run_case(d: int, b: int, settings: dict):
  """The rows of one (D, B) case."""
  model = StackedRNNClassifier(num_classes=settings['classes'],
                               hidden_sizes=settings['hidden'])
  num_frames = settings['frames']
  x = jax.random.normal(jax.random.key(1), (b, num_frames, d))
  variables = model.init(jax.random.key(0), x[:, :2])
  carry = model.initialize_carry(b)
  step_jit = jax.jit(functools.partial(model.apply, variables, method='step'))
  exported = export_lib.export_classifier(model, variables, d)
  step_exported = jax.export.deserialize(exported['step'].serialize())
  sequence = jax.jit(lambda x, l: model.apply(variables, x, l))
  results = {
      'step_jit': time_stream(step_jit, carry, x, settings['rounds']),
      'step_exported': time_stream(jax.jit(step_exported.call), carry, x,
                                   settings['rounds']),
      'prefix_rerun': time_prefix(sequence, x, settings['rounds']),
  }
  base = results['step_jit'][1].sum()
  rows = []
  for impl, (samples, medians) in results.items():
    median, p99 = _percentiles(samples)
    rows.append({'impl': impl, 'D': d, 'B': b, 'H': settings['hidden'][0],
                 'L': len(settings['hidden']), 'frames': num_frames,
                 'us_median': round(median, 1), 'us_p99': round(p99, 1),
                 'total_ms': round(1e3 * medians.sum(), 3),
                 'ratio_vs_step_jit': round(float(medians.sum() / base), 2)})
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true',
                      help='tiny model and stream (a smoke test)')
  parser.add_argument('--dims', help='comma-separated D (default 60,150)')
  parser.add_argument('--batches', help='comma-separated B (default 1,32)')
  parser.add_argument('--frames', type=int, help='stream length (100)')
  parser.add_argument('--rounds', type=int, help='streams timed (3)')
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
  print(json.dumps({'cpus': os.cpu_count(),
                    'loadavg': [round(v, 2) for v in os.getloadavg()],
                    'backend': jax.default_backend(),
                    'jax': jax.__version__}), flush=True)
  for d in settings['dims']:
    for b in settings['batches']:
      for row in run_case(d, b, settings):
        print(json.dumps(row), flush=True)


if __name__ == '__main__':
  main()
