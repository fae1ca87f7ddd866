"""Faults of issue 10 (best-k across restarts, reruns that would destroy a
run, a restart from scratch, two trainers on one workdir, bad config values,
a corrupt checkpoint under train.eval, a dataset that is not built, a full
disk), each tried for real: orbax files on disk, subprocesses, signals,
kernel-enforced file-size limits and /dev/full."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import re
import resource
import signal
import socket
import struct
import subprocess
import sys

import jax
import numpy as np
import pytest

import train_support as sup
from train import checkpoints
from train import config_lib
from train import eval as train_eval
from train import reporting
from train import train
from train import workdir as workdir_lib

# Module-scoped fixtures shared by the train test modules.
from train_support import _jax_cache, data_dir, npz_dir  # noqa: F401  # pylint: disable=unused-import

NPZ_CONFIG = 'train/configs/npz.py'


def _steps(workdir):
  return sorted(
      int(p.name)
      for p in (workdir / 'checkpoints').iterdir()
      if p.name.isdigit()
  )


def _same_params(a, b):
  return all(
      np.array_equal(x, y)
      for x, y in zip(
          jax.tree_util.tree_leaves(sup.final_params(a)[0]),
          jax.tree_util.tree_leaves(sup.final_params(b)[0]),
      )
  )


def _history(workdir):
  """metrics.jsonl without the timings."""
  return [
      {k: v for k, v in json.loads(line).items() if 'per_sec' not in k}
      for line in (workdir / 'metrics.jsonl').read_text().splitlines()
  ]


def _truncate_state(step_dir):
  files = [
      os.path.join(d, f) for d, _, fs in os.walk(step_dir / 'state') for f in fs
  ]
  victim = max(files, key=os.path.getsize)
  with open(victim, 'r+b') as f:
    f.truncate(os.path.getsize(victim) // 2)


@pytest.mark.slow
def test_best_k_survives_kill_and_sigterm_like_an_unbroken_run(
    npz_dir, data_dir, tmp_path
):
  """Kept steps, the `best` evaluation and train.eval --checkpoint=best are
  those of an unbroken run after kill -9 and SIGTERM restarts."""
  overrides = sup.cli_overrides(
      npz_dir,
      data_dir,
      num_train_steps=24,
      log_every_steps=1,
      checkpoint_every_steps=2,
      eval_every_steps=2,
      keep_best=2,
      final_checkpoint='best',
      **{'optim.learning_rate': 0.03},
  )
  ref = tmp_path / 'unbroken'
  sup.train_unbroken(npz_dir, data_dir, overrides, ref)

  workdir = tmp_path / 'broken'
  cmd = sup.train_cmd(NPZ_CONFIG, workdir, overrides)
  rc, out, _ = sup.run_and_signal(cmd, workdir, 7, signal.SIGKILL)
  assert rc == -signal.SIGKILL, out[-3000:]
  rc, out, _ = sup.run_and_signal(cmd, workdir, 15, signal.SIGTERM)
  assert rc == 143, out[-3000:]
  rerun = sup.run(cmd)
  assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]

  assert _steps(workdir) == _steps(ref)
  ours = json.loads((workdir / 'eval_results.json').read_text())
  theirs = json.loads((ref / 'eval_results.json').read_text())
  assert ours['checkpoint'] == theirs['checkpoint']
  assert ours['accuracy'] == theirs['accuracy']
  # The true best: the highest eval accuracy logged at a checkpoint step.
  records = map(json.loads, (ref / 'metrics.jsonl').read_text().splitlines())
  logged = {
      r['step']: r['validation/accuracy']
      for r in records
      if 'validation/accuracy' in r
  }
  best = max(logged.values())
  assert ours['checkpoint']['selection_accuracy'] == best
  assert logged[ours['checkpoint']['step']] == best
  # Each checkpoint carries the metrics it is ranked by.
  ckpt = checkpoints.Checkpointer(str(workdir), 2, read_only=True)
  assert [ckpt.stored_accuracy(s) for s in _steps(workdir)] == [
      logged[s] for s in _steps(workdir)
  ]
  ckpt.close()
  again = train_eval.evaluate_checkpoint(
      str(workdir), checkpoint='best', output=str(tmp_path / 'best.json')
  )
  assert again['step'] == ours['checkpoint']['step']
  assert again['accuracy'] == ours['accuracy']


@pytest.mark.slow
def test_rerun_with_another_model_is_refused_and_overwrite_keeps_the_old(
    npz_dir, data_dir, tmp_path
):
  workdir = tmp_path / 'run'
  train.train_and_evaluate(sup.tiny_config(npz_dir, data_dir), str(workdir))
  before = _steps(workdir)
  metrics = (workdir / 'metrics.jsonl').read_text()
  other = sup.tiny_config(
      npz_dir, data_dir, seed=3, **{'model.hidden_sizes': (6,)}
  )
  with pytest.raises(
      workdir_lib.WorkdirError,
      match=r'differs in model.hidden_sizes, seed;.*'
      r'--config.overwrite=True',
  ):
    train.train_and_evaluate(other, str(workdir))
  assert _steps(workdir) == before  # nothing moved, nothing rewritten
  assert (workdir / 'metrics.jsonl').read_text() == metrics
  assert not (workdir / 'corrupt_checkpoints').exists()
  # More steps is a resumption, not another run.
  longer = sup.tiny_config(npz_dir, data_dir, num_train_steps=8)
  train.train_and_evaluate(longer, str(workdir))
  kept = _steps(workdir)
  for n, seed in ((1, 3), (2, 4)):  # the first replaced run stays
    other = sup.tiny_config(npz_dir, data_dir, seed=seed, overwrite=True)
    train.train_and_evaluate(other, str(workdir))
    old = workdir / 'replaced' / str(n)
    assert (old / 'config.json').exists() and (old / 'metrics.jsonl').exists()
  assert _steps(workdir / 'replaced' / '1') == kept
  assert (
      json.loads((workdir / 'replaced' / '2' / 'config.json').read_text())[
          'seed'
      ]
      == 3
  )
  assert json.loads((workdir / 'config.json').read_text())['seed'] == 4


def test_twice_corrupt_checkpoint_is_kept_under_a_fresh_name(
    npz_dir, data_dir, tmp_path
):
  workdir = tmp_path / 'run'
  config = sup.tiny_config(npz_dir, data_dir, keep_best=3)
  for _ in range(2):
    train.train_and_evaluate(config, str(workdir))
    _truncate_state(workdir / 'checkpoints' / '6')
  train.train_and_evaluate(config, str(workdir))
  corrupt = workdir / 'corrupt_checkpoints'
  assert sorted(p.name for p in corrupt.iterdir()) == ['6', '6.1']
  assert all((corrupt / n / 'state').is_dir() for n in ('6', '6.1'))


def test_when_no_checkpoint_is_readable_the_data_restarts_too(
    npz_dir, data_dir, tmp_path, capsys
):
  workdir = tmp_path / 'run'
  config = sup.tiny_config(npz_dir, data_dir, keep_best=3)
  train.train_and_evaluate(config, str(workdir))
  for step in _steps(workdir):
    _truncate_state(workdir / 'checkpoints' / str(step))
  capsys.readouterr()
  train.train_and_evaluate(config, str(workdir))
  assert 'starting from scratch' in capsys.readouterr().out
  fresh = tmp_path / 'fresh'
  train.train_and_evaluate(config, str(fresh))
  assert _same_params(workdir, fresh)
  assert _history(workdir) == _history(fresh)
  assert (workdir / 'corrupt_checkpoints' / 'metrics.jsonl').exists()


@pytest.mark.slow
def test_second_trainer_exits_naming_the_holder_and_stale_lock_is_no_block(
    npz_dir, data_dir, tmp_path
):
  workdir = tmp_path / 'run'
  overrides = sup.cli_overrides(
      npz_dir,
      data_dir,
      num_train_steps=100000,
      log_every_steps=1,
      checkpoint_every_steps=0,
      eval_every_steps=100000,
  )
  holder = subprocess.Popen(
      sup.train_cmd(NPZ_CONFIG, workdir, overrides),
      cwd=sup.REPO,
      env=sup.subprocess_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
  )
  try:
    for line in holder.stdout:
      if line.startswith('step 1/'):
        break
    second = sup.run(sup.train_cmd(NPZ_CONFIG, workdir, overrides), timeout=60)
  finally:
    holder.kill()
    holder.wait(timeout=60)
  assert second.returncode == 1, second.stderr[-3000:]
  assert f'pid {holder.pid} on host {socket.gethostname()}' in second.stderr
  assert 'Traceback' not in second.stderr
  # The killed holder left its lock file: it does not block a rerun.
  assert (workdir / 'train.lock').exists()
  rerun = sup.run(
      sup.train_cmd(NPZ_CONFIG, workdir, dict(overrides, num_train_steps=2))
  )
  assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]


@pytest.mark.parametrize(
    'key,value,allowed',
    [
        ('batch_size', 0, 'an integer >= 1'),
        ('log_every_steps', 0, 'an integer >= 1'),
        ('model.dropout_rate', 1.5, 'a number >= 0 and < 1'),
        ('num_train_steps', -5, 'an integer >= 0'),
        ('eval_every_steps', -1, 'an integer >= 0'),
        ('keep_best', 0, 'an integer >= 1'),
    ],
)
def test_config_values_out_of_range_are_refused_at_start(
    npz_dir, data_dir, tmp_path, key, value, allowed
):
  config = sup.tiny_config(npz_dir, data_dir, **{key: value})
  with pytest.raises(
      config_lib.ConfigError,
      match=re.escape(f'config.{key} must be {allowed}, got {value!r}'),
  ):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_bad_value_on_the_command_line_is_one_line(npz_dir, data_dir, tmp_path):
  proc = sup.run(
      sup.train_cmd(
          NPZ_CONFIG,
          tmp_path / 'run',
          sup.cli_overrides(npz_dir, data_dir, batch_size=0),
      )
  )
  assert proc.returncode == 2
  assert proc.stderr.strip() == (
      'FATAL: config.batch_size must be an integer >= 1, got 0.'
  )


def test_eval_of_a_corrupt_latest_checkpoint_falls_back(
    npz_dir, data_dir, tmp_path, capsys
):
  workdir = tmp_path / 'run'
  config = sup.tiny_config(npz_dir, data_dir, keep_best=3)
  train.train_and_evaluate(config, str(workdir))
  _truncate_state(workdir / 'checkpoints' / '6')
  capsys.readouterr()
  out = train_eval.evaluate_checkpoint(str(workdir))
  err = capsys.readouterr().err
  assert out['step'] == 4
  assert len(err.strip().splitlines()) == 1
  assert re.match(r'WARNING: Checkpoint at step 6 .* is unreadable', err)
  assert _steps(workdir) == [2, 4, 6]  # evaluation moves nothing


def test_dataset_not_built_names_data_dir_in_one_screen(tmp_path):
  proc = sup.run([
      sys.executable,
      '-m',
      'train.main',
      '--config=train/configs/nucla_dev.py',
      f'--workdir={tmp_path / "run"}',
      f'--config.data.data_dir={tmp_path / "tfds"}',
  ])
  assert proc.returncode == 2, proc.stderr[-3000:]  # a usage error
  assert 'Traceback' not in proc.stderr
  assert 'nucla/dev is not built in' in proc.stderr
  assert str(tmp_path / 'tfds') in proc.stderr
  assert '--config.data.data_dir=D' in proc.stderr
  assert '--config.data.manual_dir=DIR' in proc.stderr
  assert len(proc.stderr.strip().splitlines()) <= 5


@pytest.mark.slow
def test_full_disk_stops_with_one_line_and_a_rerun_resumes_bitwise(
    npz_dir, data_dir, tmp_path
):
  """Once the first checkpoint is written the trainer's file-size limit drops
  to 4 KiB (below the next checkpoint's files: they fail in orbax's
  background threads; metrics.jsonl, smaller, may fail first). Python
  ignores SIGXFSZ, so a write over the limit fails with EFBIG as one on a
  full disk fails with ENOSPC. One FATAL line, nothing written before lost,
  and a rerun ends like an unbroken run."""
  steps, limit = 20, 4096
  overrides = sup.cli_overrides(
      npz_dir,
      data_dir,
      num_train_steps=steps,
      log_every_steps=1,
      checkpoint_every_steps=4,
      eval_every_steps=4,
      keep_best=2,
  )
  workdir = tmp_path / 'run'
  cmd = sup.train_cmd(NPZ_CONFIG, workdir, overrides)
  before = {}

  def fill_the_disk(proc, _):
    before['steps'] = _steps(workdir)
    before['config'] = (workdir / 'config.json').read_text()
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (limit, limit))

  rc, out, err, at = sup.run_and_act(
      cmd, workdir, 1, fill_the_disk, stderr_apart=True
  )
  assert at is not None and rc == 1, out[-3000:] + err[-3000:]
  assert 'sys.meta_path' not in err and 'Traceback' not in err, err[-3000:]
  assert len(err.strip().splitlines()) == 1, err[-3000:]
  assert re.match(
      rf'FATAL: Writing {re.escape(str(workdir))}/(checkpoints/\d+\.orbax-'
      r'checkpoint-tmp\S*|metrics\.jsonl) failed: file too large \(EFBIG\)',
      err,
  ), err
  kept = _steps(workdir)
  assert max(before['steps']) <= max(kept) < steps, (before, kept)
  assert (
      f'the checkpoints written before (steps {", ".join(map(str, kept))}'
      f' in {workdir / "checkpoints"}) are intact'
  ) in err
  assert 'run the same command to resume' in err
  # What the run wrote before is whole: each checkpoint restores, the config
  # is unchanged, each metrics line is complete (a cut one is cut off).
  for step in kept:
    assert sup.final_params(workdir, str(step))[1] == step
  assert (workdir / 'config.json').read_text() == before['config']
  records = [
      json.loads(line)
      for line in (workdir / 'metrics.jsonl').read_text().splitlines()
  ]
  assert records and records[-1]['step'] >= max(kept)

  rerun = sup.run(cmd)
  assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
  assert f'Resuming from checkpoint step {max(kept)} ' in rerun.stdout
  assert not list((workdir / 'checkpoints').glob('*tmp*'))
  ref = tmp_path / 'unbroken'
  sup.train_unbroken(npz_dir, data_dir, overrides, ref)
  params, step = sup.final_params(workdir)
  ref_params, ref_step = sup.final_params(ref)
  assert step == ref_step == steps
  assert sup.bitwise_equal(params, ref_params)
  assert sup.same_results(workdir, ref)
  assert _history(workdir) == _history(ref)


def test_disk_full_errors_are_recognised_from_real_writes(tmp_path):
  """ENOSPC from /dev/full, EFBIG over a file-size limit (in a child: Python
  ignores SIGXFSZ), in an exception's chain or in tensorstore's text; other
  errors are not."""
  with pytest.raises(OSError) as enospc:
    with open('/dev/full', 'w') as f:
      f.write('x')
  assert workdir_lib.disk_full_errno(enospc.value) == (errno.ENOSPC, None)
  try:
    try:
      raise enospc.value
    except OSError as e:
      raise RuntimeError('a checkpoint write failed') from e
  except RuntimeError as e:
    chained = e
  assert workdir_lib.disk_full_errno(chained)[0] == errno.ENOSPC
  child = subprocess.run(
      [
          sys.executable,
          '-c',
          (
              'import resource\n'
              'from train import workdir\n'
              'resource.setrlimit(resource.RLIMIT_FSIZE, (10, 10))\n'
              'try:\n'
              f'  with open({str(tmp_path / "big")!r}, "w") as f:\n'
              '    f.write("x" * 100)\n'
              'except OSError as e:\n'
              '  print(workdir.disk_full_errno(e))'
          ),
      ],
      cwd=sup.REPO,
      env=sup.subprocess_env(),
      capture_output=True,
      text=True,
      timeout=60,
  )
  assert child.stdout.strip() == f'({errno.EFBIG}, None)', (
      child.stdout + child.stderr
  )
  tensorstore = ValueError(
      'OUT_OF_RANGE: Error writing local file "/w/checkpoints/8.orbax-'
      'checkpoint-tmp/state/_sharding": Failed to write 8921 bytes to file 9: '
      "File too large [os_error_code='27']"
  )
  assert workdir_lib.disk_full_errno(tensorstore) == (
      errno.EFBIG,
      '/w/checkpoints/8.orbax-checkpoint-tmp/state/_sharding',
  )
  assert workdir_lib.disk_full_errno(OSError(errno.EACCES, 'no')) is None
  assert workdir_lib.disk_full_errno(ValueError('os_error_code=2')) is None
  message = str(workdir_lib.disk_full_error(tensorstore, str(tmp_path)))
  assert message.startswith(
      'Writing /w/checkpoints/8.orbax-checkpoint-tmp/'
      'state/_sharding failed: file too large (EFBIG)'
  )
  assert 'no checkpoint was written yet' in message
  # A bare write names no file: the unfinished checkpoint is named, if any.
  bare = workdir_lib.disk_full_error(enospc.value, str(tmp_path))
  assert str(bare).startswith(f'Writing in {tmp_path} failed: no space left')
  unfinished = tmp_path / 'checkpoints' / '8.orbax-checkpoint-tmp'
  unfinished.mkdir(parents=True)
  bare = workdir_lib.disk_full_error(enospc.value, str(tmp_path))
  assert str(bare).startswith(f'Writing {unfinished} failed: no space left')


@pytest.mark.slow
def test_full_disk_at_the_start_of_a_run_is_a_disk_full_error(
    npz_dir, data_dir, tmp_path
):
  """A run whose config.json cannot be written (into /dev/full: ENOSPC)
  stops with the short error, having written no checkpoint."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  os.symlink('/dev/full', workdir / 'config.json.tmp')
  with pytest.raises(workdir_lib.DiskFullError) as err:
    train.train_and_evaluate(sup.tiny_config(npz_dir, data_dir), str(workdir))
  assert str(err.value).startswith(
      f'Writing {workdir / "config.json"} failed: no space left on device '
      '(ENOSPC): the disk is full.'
  )
  assert 'no checkpoint was written yet' in str(err.value)
  # Nothing half-made is left: no checkpoints/, no lock (issue 18).
  assert not list(workdir.iterdir())


def test_full_disk_while_rewriting_a_file_leaves_the_old_one(tmp_path):
  """config.json, eval_results.json and metrics.jsonl are replaced only by a
  complete new version: writing the new one into /dev/full (ENOSPC) leaves
  the old whole and no temporary file."""
  path = tmp_path / 'config.json'
  path.write_text('{"old": true}')
  os.symlink('/dev/full', tmp_path / 'config.json.tmp')
  with pytest.raises(OSError) as err:
    workdir_lib.write_atomically(str(path), '{"new": true}' * 1000)
  assert err.value.errno == errno.ENOSPC
  assert err.value.filename == str(path)
  assert path.read_text() == '{"old": true}'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['config.json']


def test_full_disk_while_writing_a_png_keeps_the_old_one(tmp_path):
  """A plot is replaced only by a complete new image: its temporary file
  into /dev/full (ENOSPC) leaves the old PNG whole, no temporary file and no
  open figure, and the error names the PNG."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = str(tmp_path / 'confusion_matrix.png')
  reporting.plot_confusion(path, np.eye(2, dtype=int), ['a', 'b'], 'old')
  old = pathlib.Path(path).read_bytes()
  assert old[:4] == b'\x89PNG', f'{path} is not a PNG'
  os.symlink('/dev/full', path + '.tmp')
  with pytest.raises(OSError) as err:
    reporting.plot_confusion(path, 2 * np.eye(2, dtype=int), ['a', 'b'], 'new')
  assert (err.value.errno, err.value.filename) == (errno.ENOSPC, path)
  assert pathlib.Path(path).read_bytes() == old, f'{path} was changed'
  assert sorted(os.listdir(tmp_path)) == ['confusion_matrix.png']
  assert not plt.get_fignums(), 'the figure was left open'
  assert str(workdir_lib.disk_full_error(err.value, str(tmp_path))).startswith(
      f'Writing {path} failed: no space left on device (ENOSPC)'
  )


def _events(path) -> list:
  """The events of a TensorBoard event file, asserting that each record is
  whole and its two CRCs right."""
  # pylint: disable=g-import-not-at-top
  from tensorboardX.proto import event_pb2
  from tensorboardX.record_writer import masked_crc32c
  # pylint: enable=g-import-not-at-top

  data, at, out = pathlib.Path(path).read_bytes(), 0, []
  while at < len(data):
    (n,) = struct.unpack('<Q', data[at : at + 8])
    assert at + 16 + n <= len(data), f'{path}: the record at {at} is cut'
    crcs = struct.unpack('<I', data[at + 8 : at + 12]) + struct.unpack(
        '<I', data[at + 12 + n : at + 16 + n]
    )
    body = data[at + 12 : at + 12 + n]
    assert crcs == (
        masked_crc32c(data[at : at + 8]),
        masked_crc32c(body),
    ), f'{path}: wrong CRC in the record at {at}'
    out.append(event_pb2.Event.FromString(body))
    at += 16 + n
  return out


def _scalars(events) -> list:
  return [
      (e.step, v.tag, v.simple_value) for e in events for v in e.summary.value
  ]


def test_tensorboard_events_on_a_full_disk_raise_naming_the_file(tmp_path):
  """Events are written in the caller's thread, as tensorboardX frames them;
  an event over this process's file-size limit (EFBIG: Python ignores
  SIGXFSZ) raises there, naming the events file, and leaves it whole. A
  resumed run's file starts by hiding the later events (a START log)."""
  # pylint: disable=g-import-not-at-top
  from tensorboardX.record_writer import RecordWriter
  # pylint: enable=g-import-not-at-top

  framed = tmp_path / 'framed_by_tensorboardX'
  writer = RecordWriter(str(framed))
  writer.write(b'an event')
  writer.close()
  assert reporting._record(b'an event') == framed.read_bytes()  # pylint: disable=protected-access
  w = reporting.MetricWriter(str(tmp_path), True, tensorboard=True)
  w.write(1, {'train/loss': 0.5, 'train/accuracy': 0.25})
  path = w.tb.path
  before = pathlib.Path(path).read_bytes()
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 1, hard))
  try:
    with pytest.raises(OSError) as err:
      w.tb.write(2, {'train/loss': 0.25, 'train/accuracy': 0.5})
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
  assert (err.value.errno, err.value.filename) == (errno.EFBIG, path)
  assert pathlib.Path(path).read_bytes() == before, f'{path} was changed'
  assert str(workdir_lib.disk_full_error(err.value, str(tmp_path))).startswith(
      f'Writing {path} failed: file too large (EFBIG)'
  )
  events = _events(path)
  assert events[0].file_version == 'brain.Event:2'
  assert _scalars(events) == [
      (1, 'train/loss', 0.5),
      (1, 'train/accuracy', 0.25),
  ]
  resumed = reporting.MetricWriter(str(tmp_path), True, True, truncate_after=1)
  assert resumed.tb.path != path
  start = _events(resumed.tb.path)[1]
  assert (start.step, start.session_log.status) == (1, start.session_log.START)


@pytest.mark.slow
def test_full_disk_in_tensorboard_events_stops_with_one_line_and_resumes(
    npz_dir, data_dir, tmp_path
):
  """With TensorBoard on, the trainer's file-size limit drops to its events
  file's size (measured with the trainer stopped, while metrics.jsonl is
  well below it): the next event fails with EFBIG, before any later
  checkpoint is saved (metrics are written first). One FATAL line naming the
  events file and how to resume (a checkpoint that was being written may
  fail too: the first error is the news), exit 1, the events file whole; a
  rerun ends like an unbroken run."""
  steps, every = 30, 10
  overrides = sup.cli_overrides(
      npz_dir,
      data_dir,
      num_train_steps=steps,
      log_every_steps=1,
      checkpoint_every_steps=every,
      eval_every_steps=every,
      tensorboard=True,
  )
  workdir = tmp_path / 'run'
  cmd = sup.train_cmd(NPZ_CONFIG, workdir, overrides)
  seen = {}

  def fill_the_disk(proc, step):
    proc.send_signal(signal.SIGSTOP)  # no write while the files are measured
    try:
      (events,) = (workdir / 'tensorboard').iterdir()
      size = events.stat().st_size
      if (
          step % every == 0  # a checkpoint is saved right after this line
          or (workdir / 'metrics.jsonl').stat().st_size + 500 > size
      ):
        return False
      seen.update(
          events=events, data=events.read_bytes(), steps=_steps(workdir)
      )
      resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (size, size))
      return True
    finally:
      proc.send_signal(signal.SIGCONT)

  rc, out, err, at = sup.run_and_act(
      cmd, workdir, 1, fill_the_disk, stderr_apart=True
  )
  assert at is not None and rc == 1, out[-3000:] + err[-3000:]
  assert len(err.strip().splitlines()) == 1, err[-3000:]
  assert err.startswith(
      f'FATAL: Writing {seen["events"]} failed: file too large (EFBIG)'
  ), err
  kept = _steps(workdir)
  assert max(seen['steps']) <= max(kept) < steps, (seen['steps'], kept)
  assert (
      f'the checkpoints written before (steps {", ".join(map(str, kept))}'
      f' in {workdir / "checkpoints"}) are intact'
  ) in err, err
  assert 'run the same command to resume' in err
  assert seen['events'].read_bytes() == seen['data'], 'events file changed'
  assert _scalars(_events(seen['events']))

  rerun = sup.run(cmd)
  assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
  assert f'Resuming from checkpoint step {max(kept)} ' in rerun.stdout
  (resumed,) = set((workdir / 'tensorboard').iterdir()) - {seen['events']}
  assert max(s for s, _, _ in _scalars(_events(resumed))) == steps
  ref = tmp_path / 'unbroken'
  sup.train_unbroken(npz_dir, data_dir, overrides, ref)
  params, step = sup.final_params(workdir)
  assert sup.bitwise_equal(params, sup.final_params(ref)[0]) and step == steps
  assert sup.same_results(workdir, ref)
  assert _history(workdir) == _history(ref)


@pytest.mark.slow
def test_full_disk_while_writing_the_plots_stops_and_a_rerun_writes_them(
    npz_dir, data_dir, tmp_path
):
  """The run's last writes are its PNGs: one into /dev/full (ENOSPC) stops
  the run with the short error naming it, the previous PNGs whole and no
  temporary file; the rerun (which resumes from the final checkpoint)
  writes them."""
  workdir = tmp_path / 'run'
  config = sup.tiny_config(npz_dir, data_dir, plots=True)
  train.train_and_evaluate(config, str(workdir))
  pngs = ('confusion_matrix.png', 'curves.png')
  old = {n: (workdir / n).read_bytes() for n in pngs}
  os.symlink('/dev/full', workdir / 'confusion_matrix.png.tmp')
  longer = sup.tiny_config(npz_dir, data_dir, plots=True, num_train_steps=8)
  with pytest.raises(workdir_lib.DiskFullError) as err:
    train.train_and_evaluate(longer, str(workdir))
  assert str(err.value).startswith(
      f'Writing {workdir / "confusion_matrix.png"} failed: no space left on '
      'device (ENOSPC)'
  ), err.value
  assert 'run the same command to resume' in str(err.value)
  assert {n: (workdir / n).read_bytes() for n in pngs} == old
  assert not list(workdir.glob('*.tmp'))
  assert _steps(workdir)[-1] == 8
  train.train_and_evaluate(longer, str(workdir))
  assert (workdir / 'curves.png').read_bytes() != old['curves.png']
  assert all((workdir / n).read_bytes()[:4] == b'\x89PNG' for n in pngs)
