"""Reliability of train/: kill -9 and resume, a truncated checkpoint, NaN
fail-fast, SIGTERM, two processes with jax.distributed (all real: orbax on
disk, subprocesses, signals, gloo collectives on localhost)."""

from __future__ import annotations

import os
import random
import re
import signal
import time

import chex
import jax
import numpy as np
import pytest

import train_support as sup
from train import reporting
from train import train

NPZ_CONFIG = 'train/configs/npz.py'


# Module-scoped fixtures shared by the train test modules.
from train_support import _jax_cache, data_dir, npz_dir  # noqa: E402, F401  # pylint: disable=unused-import

_bitwise_equal = sup.bitwise_equal


@pytest.mark.slow
def test_kill9_at_a_random_step_then_resume_is_bitwise_equal(
    npz_dir, data_dir, tmp_path
):
  """SIGKILL mid-run; the rerun's final parameters equal an unbroken run's."""
  steps = 14
  overrides = sup.cli_overrides(
      npz_dir,
      data_dir,
      num_train_steps=steps,
      log_every_steps=1,
      checkpoint_every_steps=3,
      eval_every_steps=3,
      keep_best=2,
  )
  seed = int(os.environ.get('KILL_SEED', time.time_ns() % 10_000))
  kill_at = random.Random(seed).randint(4, steps - 2)
  # The uninterrupted reference, in this process (same XLA, same devices).
  ref_dir = tmp_path / 'reference'
  sup.train_unbroken(npz_dir, data_dir, overrides, ref_dir)

  workdir = tmp_path / 'killed'
  rc, text, killed_at = sup.run_and_signal(
      sup.train_cmd(NPZ_CONFIG, workdir, overrides),
      workdir,
      kill_at,
      signal.SIGKILL,
  )
  assert rc == -signal.SIGKILL, (
      f'seed {seed}: the run ended before step {kill_at}:\n' + text
  )
  rerun = sup.run(sup.train_cmd(NPZ_CONFIG, workdir, overrides))
  assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
  resumed = re.search(r'Resuming from checkpoint step (\d+)', rerun.stdout)
  assert resumed, rerun.stdout[-3000:]
  assert int(resumed.group(1)) <= killed_at
  params, step = sup.final_params(workdir)
  ref_params, ref_step = sup.final_params(ref_dir)
  assert step == ref_step == steps
  assert _bitwise_equal(params, ref_params), f'kill seed {seed} at {kill_at}'
  # metrics.jsonl tells one history: each logged step once.
  import json  # pylint: disable=g-import-not-at-top

  lines = [
      json.loads(l)
      for l in (workdir / 'metrics.jsonl').read_text().splitlines()
  ]
  logged = [l['step'] for l in lines if 'train/loss' in l]
  assert logged == sorted(set(logged)) and logged[-1] == steps


def _largest_file(directory):
  files = [os.path.join(d, f) for d, _, fs in os.walk(directory) for f in fs]
  return max(files, key=os.path.getsize)


def test_truncated_newest_checkpoint_falls_back_to_previous(
    npz_dir, data_dir, tmp_path, capsys
):
  workdir = tmp_path / 'run'
  # A rate that does not depend on the total steps: the rerun trains 8, not 6.
  config = sup.tiny_config(
      npz_dir,
      data_dir,
      num_train_steps=6,
      keep_best=3,
      **{'model.dropout_rate': 0.0, 'optim.schedule': 'constant'},
  )
  train.train_and_evaluate(config, str(workdir))
  ckpts = workdir / 'checkpoints'
  assert sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) == [
      2,
      4,
      6,
  ]
  # A crash mid-write: the newest checkpoint's array data is cut in half.
  victim = _largest_file(ckpts / '6' / 'state')
  size = os.path.getsize(victim)
  with open(victim, 'r+b') as f:
    f.truncate(size // 2)
  capsys.readouterr()
  config.unlock()
  config.num_train_steps = 8
  train.train_and_evaluate(config, str(workdir))
  log = capsys.readouterr().out
  assert 'Checkpoint at step 6' in log and 'unreadable' in log
  assert 'Resuming from step 4' in log
  assert (workdir / 'corrupt_checkpoints' / '6').is_dir()
  # Resuming from step 4 gives exactly an unbroken 8-step run.
  ref = tmp_path / 'ref'
  config.num_train_steps = 8
  train.train_and_evaluate(config, str(ref))
  assert _bitwise_equal(sup.final_params(workdir)[0], sup.final_params(ref)[0])


def test_nan_batch_stops_with_message_and_writes_no_nan_checkpoint(
    npz_dir, data_dir, tmp_path
):
  workdir = tmp_path / 'run'
  config = sup.tiny_config(
      npz_dir,
      data_dir,
      num_train_steps=12,
      keep_best=5,
      inject_nan_at_step=5,
      log_every_steps=4,
      eval_every_steps=4,
      checkpoint_every_steps=2,
  )
  with pytest.raises(reporting.NonFiniteLossError) as err:
    train.train_and_evaluate(config, str(workdir))
  msg = str(err.value)
  assert 'at step 5' in msg, msg
  assert 'last checkpoint is step 4' in msg and 'left intact' in msg, msg
  steps = sorted(
      int(p.name)
      for p in (workdir / 'checkpoints').iterdir()
      if p.name.isdigit()
  )
  assert steps == [2, 4]
  params, step = sup.final_params(workdir)
  assert step == 4
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(params))
  # No metrics line with a non-finite loss was written.
  text = (workdir / 'metrics.jsonl').read_text()
  assert 'NaN' not in text and 'Infinity' not in text


@pytest.mark.parametrize(
    'sig,status,what',
    [
        (signal.SIGTERM, 143, 'Preempted'),
        (signal.SIGINT, 130, 'Interrupted'),  # Ctrl-C
    ],
    ids=['SIGTERM', 'SIGINT'],
)
@pytest.mark.slow
def test_signal_saves_a_checkpoint_and_resume_is_bitwise_equal(
    npz_dir, data_dir, tmp_path, sig, status, what
):
  """SIGTERM (preemption) or Ctrl-C: a checkpoint at the step reached, exit
  128 + the signal; the rerun's final parameters equal an unbroken run's."""
  steps = 80
  overrides = sup.cli_overrides(
      npz_dir,
      data_dir,
      num_train_steps=steps,
      log_every_steps=1,
      checkpoint_every_steps=40,
      eval_every_steps=40,
  )
  workdir = tmp_path / 'run'
  cmd = sup.train_cmd(NPZ_CONFIG, workdir, overrides)
  rc, text, _ = sup.run_and_signal(cmd, workdir, 3, sig, after_checkpoint=False)
  assert rc == status, text[-3000:]
  m = re.search(rf'{what} \({sig.name}\) at step (\d+)', text)
  assert m, text[-3000:]
  saved = int(m.group(1))
  assert 3 <= saved < 40
  assert 'Traceback' not in text
  steps_on_disk = [
      int(p.name)
      for p in (workdir / 'checkpoints').iterdir()
      if p.name.isdigit()
  ]
  assert steps_on_disk == [saved]

  rerun = sup.run(cmd)
  assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
  assert f'Resuming from checkpoint step {saved} ' in rerun.stdout
  ref_dir = tmp_path / 'reference'
  sup.train_unbroken(npz_dir, data_dir, overrides, ref_dir)
  params, step = sup.final_params(workdir)
  ref_params, ref_step = sup.final_params(ref_dir)
  assert step == ref_step == steps
  assert _bitwise_equal(params, ref_params), f'{sig.name} at step {saved}'
  assert sup.same_results(workdir, ref_dir)


@pytest.mark.slow
def test_two_processes_with_jax_distributed_match_one_process(
    npz_dir, data_dir, tmp_path
):
  """Two processes (one CPU device each, gloo collectives) over localhost,
  each reading its half of every global batch, train the same parameters as
  one process on the whole batch."""
  overrides = sup.cli_overrides(
      npz_dir,
      data_dir,
      num_train_steps=6,
      checkpoint_every_steps=3,
      eval_every_steps=3,
  )
  workdir = tmp_path / 'two'
  procs = sup.start_processes(
      sup.train_cmd(NPZ_CONFIG, workdir, overrides), tmp_path / 'logs'
  )
  outs = sup.wait_processes(procs)
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  assert 'parallel=jit over 2 device(s), 2 process(es)' in outs[0], outs[0]
  assert 'Final test accuracy' in outs[0]
  assert 'Final test accuracy' not in outs[1]  # only process 0 reports
  # Each process saved its own data-iterator state with the checkpoint.
  data = workdir / 'checkpoints' / '6' / 'data'
  assert sorted(p.name for p in data.glob('process_*.json')) == [
      'process_0-of-2.json',
      'process_1-of-2.json',
  ]
  # One process, same config, whole batch.
  config = sup.tiny_config(
      npz_dir,
      data_dir,
      num_train_steps=6,
      checkpoint_every_steps=3,
      eval_every_steps=3,
  )
  train.train_and_evaluate(config, str(tmp_path / 'one'))
  two, _ = sup.final_params(workdir)
  one, _ = sup.final_params(tmp_path / 'one')
  chex.assert_trees_all_close(two, one, atol=1e-5, rtol=1e-5)
  import json  # pylint: disable=g-import-not-at-top

  r2 = json.loads((workdir / 'eval_results.json').read_text())
  r1 = json.loads((tmp_path / 'one' / 'eval_results.json').read_text())
  assert r2['num_examples'] == r1['num_examples'] == 21
  assert r2['accuracy'] == pytest.approx(r1['accuracy'])


@pytest.mark.parametrize('signalled', [(0, 1), (1,)], ids=['both', 'one'])
@pytest.mark.slow
def test_ctrl_c_stops_two_processes_at_one_step_and_resume_is_bitwise_equal(
    npz_dir, data_dir, tmp_path, signalled
):
  """A first Ctrl-C with two jax.distributed processes, sent to both (a
  terminal's foreground group) or to process 1 alone (a terminal on another
  host): both stop at the same step, save it and exit 130; a rerun ends
  bitwise equal to an unbroken two-process run."""
  steps = 40
  overrides = sup.cli_overrides(
      npz_dir,
      data_dir,
      num_train_steps=steps,
      log_every_steps=1,
      checkpoint_every_steps=20,
      eval_every_steps=20,
  )
  workdir = tmp_path / 'run'
  cmd = sup.train_cmd(NPZ_CONFIG, workdir, overrides)
  procs = sup.start_processes(cmd, tmp_path / 'interrupted')
  sup.wait_for_step(procs[0], 3)
  for pid in signalled:
    procs[pid].send_signal(signal.SIGINT)
  outs = sup.wait_processes(procs)
  said = []
  for pid, (proc, out) in enumerate(zip(procs, outs)):
    assert proc.returncode == 130, out[-4000:]
    m = re.search(
        rf'Process {pid} of 2: Interrupted \(SIGINT\) at step (\d+)', out
    )
    assert m, out[-4000:]
    said.append(int(m.group(1)))
    assert 'Traceback' not in out, out[-4000:]
  saved = said[0]
  assert said == [saved, saved] and 3 <= saved < 20
  ckpts = workdir / 'checkpoints'
  assert [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()] == [saved]
  # Each process saved its data iterator's position at that step.
  data = ckpts / str(saved) / 'data'
  assert sorted(p.name for p in data.glob('process_*.json')) == [
      'process_0-of-2.json',
      'process_1-of-2.json',
  ]

  rerun = sup.start_processes(cmd, tmp_path / 'rerun')
  for proc, out in zip(rerun, sup.wait_processes(rerun)):
    assert proc.returncode == 0, out[-4000:]
  assert f'Resuming from checkpoint step {saved} ' in sup.output(rerun[0])
  ref_dir = tmp_path / 'reference'
  ref = sup.start_processes(
      sup.train_cmd(NPZ_CONFIG, ref_dir, overrides), tmp_path / 'ref'
  )
  for proc, out in zip(ref, sup.wait_processes(ref)):
    assert proc.returncode == 0, out[-4000:]
  params, step = sup.final_params(workdir)
  ref_params, ref_step = sup.final_params(ref_dir)
  assert step == ref_step == steps
  assert _bitwise_equal(params, ref_params), f'SIGINT at step {saved}'
  assert sup.same_results(workdir, ref_dir)
