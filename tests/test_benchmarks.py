"""The benchmark scripts run and print the rows their docstrings promise.

Smoke tests at the smallest settings: they check the output format, not speed
(speed lives in the scripts' own output, never in a test).
"""

import json

import jax.numpy as jnp
import pytest

from benchmarks import checkpoint_save
from benchmarks import input_pipeline
from benchmarks import speed

SPEED_KEYS = {
    'case',
    'impl',
    'B',
    'T',
    'D',
    'H',
    'L',
    'mode',
    'ms_median',
    'ms_min',
    'ms_max',
    'gflops_model',
    'ratio_vs_flax_gru',
}


def _json_lines(text):
  """The JSON rows of a benchmark's stdout (builders may log other lines)."""
  return [
      json.loads(line) for line in text.splitlines() if line.startswith('{')
  ]


def test_speed_prints_one_row_per_impl_with_every_field(capsys):
  speed.main([
      '--quick',
      '--cases',
      'smnist_pixel',
      '--modes',
      'infer',
      '--impls',
      'eleatt_gru,flax_gru,gru',
      '--repeats',
      '5',
  ])
  rows = _json_lines(capsys.readouterr().out)
  header, rows = rows[0], [r for r in rows if 'impl' in r]
  assert header['matmul_gflops'] > 0
  assert [r['impl'] for r in rows] == ['eleatt_gru', 'flax_gru', 'gru']
  for row in rows:
    assert set(row) == SPEED_KEYS
    assert row['case'] == 'smnist_pixel' and row['mode'] == 'infer'
    assert 0 < row['ms_min'] <= row['ms_median'] <= row['ms_max']
    assert row['gflops_model'] > 0
  assert rows[1]['ratio_vs_flax_gru'] == 1.0


def test_speed_model_flops_counts_the_gate():
  case = speed.CASES['skeleton']
  gated = speed.model_flops(case, gated=True, mode='infer')
  plain = speed.model_flops(case, gated=False, mode='infer')
  # 3 layers: D=150 then 100, H=100; gate adds D*(D+H) per step and layer.
  assert plain == 2 * 256 * 100 * (3 * 100 * 250 + 2 * 3 * 100 * 200)
  assert gated - plain == 2 * 256 * 100 * (150 * 250 + 2 * 100 * 200)
  assert speed.model_flops(case, gated=True, mode='train') == 3 * gated


@pytest.mark.slow
def test_input_pipeline_benchmark_reports_every_source(capsys):
  # The train-step path too (at 4 units: the trainer's step, cheaply).
  input_pipeline.main([
      '--batches',
      '2',
      '--ntu_files',
      '40',
      '--batch_size',
      '16',
      '--hidden',
      '4',
      '--train_repeats',
      '1',
  ])
  rows = _json_lines(capsys.readouterr().out)
  assert rows[0]['build'] == 'ntu_rgbd60/xsub' and rows[0]['files'] == 40
  sources = {r['source']: r for r in rows[1:]}
  assert set(sources) == {'skeleton', 'smnist_pixel', 'smnist_row'}
  assert all(r['examples_per_s'] > 0 for r in sources.values())
  assert sources['skeleton']['batch_shape'] == [16, 100, 150]
  assert sources['smnist_pixel']['batch_shape'] == [16, 784, 1]
  for r in sources.values():
    assert r['train_step_examples_per_s'] > 0
    # The ratio is of the unrounded rates; the printed rates are rounded.
    assert r['ratio'] == pytest.approx(
        r['examples_per_s'] / r['train_step_examples_per_s'], rel=0.05, abs=0.01
    )


def test_checkpoint_save_refuses_an_unknown_mode():
  from eleatt_jax import cli  # pylint: disable=g-import-not-at-top

  with pytest.raises(cli.UsageError, match="'later' is not sync or async"):
    checkpoint_save.main(['--modes', 'sync,later'])


@pytest.mark.slow
def test_checkpoint_save_times_both_modes_with_two_processes(capsys):
  checkpoint_save.main(['--saves', '2', '--timeout', '500'])
  rows = _json_lines(capsys.readouterr().out)
  assert [r['mode'] for r in rows] == ['sync', 'async']
  for r in rows:
    assert r['processes'] == 2 and r['saves'] == 2
    assert r['parameters'] == 359  # the train tests' model
    assert 0 < r['blocking_s_min'] <= r['blocking_s_median']
    assert r['blocking_s_median'] <= r['blocking_s_max']
    assert r['written_s_median'] >= r['blocking_s_min']


STREAMING_KEYS = {
    'impl',
    'D',
    'B',
    'H',
    'L',
    'frames',
    'us_median',
    'us_p99',
    'total_ms',
    'ratio_vs_step_jit',
}


def test_streaming_prints_one_row_per_impl_with_every_field(capsys):
  from benchmarks import streaming  # pylint: disable=g-import-not-at-top

  streaming.main(['--quick', '--frames', '3', '--rounds', '1', '--layouts'])
  rows = _json_lines(capsys.readouterr().out)
  header, rows = rows[0], rows[1:]
  assert header['cpus'] > 0 and len(header['loadavg']) == 3
  assert [r['impl'] for r in rows] == [
      'step_jit',
      'step_exported',
      'step_exported_valid',
      'prefix_rerun',
      'step_jit[split=1]',
      'step_jit[split=0]',
  ]
  for row in rows:
    assert set(row) == STREAMING_KEYS
    assert row['frames'] == 3 and 0 < row['us_median'] <= row['us_p99']
  assert rows[0]['ratio_vs_step_jit'] == 1.0


def test_streaming_turns_are_whole_streams_in_a_changing_order():
  """Each implementation runs whole streams, frames in order; the order of the
  implementations changes from round to round."""
  from benchmarks import streaming  # pylint: disable=g-import-not-at-top

  calls = []

  def impl(name):
    def frame(state, t):
      calls.append(name)
      assert state == t, (name, state, t)
      return state + 1, jnp.zeros(())

    return 0, frame

  names, frames, rounds = ('a', 'b', 'c', 'd'), 3, 6
  streaming.time_streams({n: impl(n) for n in names}, frames, rounds)
  timed = calls[len(names) * frames :]  # after one warm-up stream each
  streams = [timed[i : i + frames] for i in range(0, len(timed), frames)]
  assert all(len(set(stream)) == 1 for stream in streams)
  orders = [
      tuple(stream[0] for stream in streams[i : i + len(names)])
      for i in range(0, len(streams), len(names))
  ]
  assert len(orders) == rounds and all(sorted(o) == list(names) for o in orders)
  assert len(set(orders)) > 1
