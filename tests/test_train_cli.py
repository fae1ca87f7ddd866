"""Issue 18: every command line ends a user error with one ``FATAL:`` line
(exit status 2 for usage errors), releases its lock and leaves nothing
half-made; tracebacks only with ``--verbose``."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import time

import pytest

import train_support as sup
from eleatt_jax import cli
from eleatt_jax.datasets import _common
from train import train

# Module-scoped fixtures shared by the train test modules.
from train_support import _jax_cache, data_dir, npz_dir  # noqa: F401  # pylint: disable=unused-import

NPZ_CONFIG = 'train/configs/npz.py'


def _one_fatal_line(proc, status: int, *parts: str) -> str:
  """Asserts `proc` ended with one FATAL line (naming `parts`); the line."""
  err = proc.stderr.strip()
  assert proc.returncode == status, proc.stdout[-2000:] + err[-3000:]
  assert 'Traceback' not in err, err[-3000:]
  lines = [l for l in err.splitlines() if l.startswith('FATAL')]
  assert len(lines) == 1 and lines[0].startswith('FATAL: '), err[-3000:]
  for part in parts:
    assert part in lines[0], lines[0]
  return lines[0]


@pytest.mark.parametrize(
    'err,status',
    [
        (ValueError('config.batch_size must be >= 1'), 2),
        (KeyError('config.nope is not a field'), 2),
        (FileNotFoundError('x.npz'), 2),
        (_common.CorruptFileError('x.npz', 'key x', 'an array'), 2),
        (RuntimeError('WORKDIR is in use'), 1),
        (FloatingPointError('NaN loss at step 5'), 1),
    ],
)
def test_an_error_is_one_fatal_line_and_its_status(err, status, capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.guard(lambda: (_ for _ in ()).throw(err), lambda: False)()
  assert exit_.value.code == status
  out = capsys.readouterr().err
  assert out == f'FATAL: {err.args[0]}\n'


def test_verbose_adds_the_traceback_and_ctrl_c_is_130(capsys):
  def boom():
    raise ValueError('bad value')

  with pytest.raises(SystemExit):
    cli.guard(boom, lambda: True)()
  err = capsys.readouterr().err
  assert 'Traceback' in err and err.endswith('FATAL: bad value\n')

  def interrupted():
    raise KeyboardInterrupt

  with pytest.raises(SystemExit) as exit_:
    cli.guard(interrupted, lambda: False, 'Interrupted (SIGINT); rerun.')()
  assert exit_.value.code == 130
  assert capsys.readouterr().err == 'Interrupted (SIGINT); rerun.\n'


def test_an_unexpected_error_names_its_type_and_verbose(capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.guard(lambda: {}.get(1).x, lambda: False)()
  assert exit_.value.code == 1
  err = capsys.readouterr().err
  assert err.startswith('FATAL: AttributeError: ') and '--verbose' in err


def test_a_failed_start_leaves_no_lock_and_nothing_half_made(npz_dir, tmp_path):
  """A damaged data file found while building a sequence-npz data set (into
  the workdir): the error names it; no train.lock, tfds/ or checkpoints/ is
  left, and a workdir the run made is gone; an existing one stays."""
  bad = tmp_path / 'bad'
  bad.mkdir()
  for name in ('train.npz', 'test.npz'):
    (bad / name).write_bytes((npz_dir / name).read_bytes()[:300])
  config = sup.tiny_config(bad, '', **{'data.data_dir': ''})
  workdir = tmp_path / 'run'
  with pytest.raises(_common.CorruptFileError, match='train.npz'):
    train.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()
  workdir.mkdir()
  (workdir / 'notes.txt').write_text('mine')
  with pytest.raises(_common.CorruptFileError):
    train.train_and_evaluate(config, str(workdir))
  assert sorted(p.name for p in workdir.iterdir()) == ['notes.txt']


@pytest.mark.slow
def test_user_errors_of_train_main_are_one_line(npz_dir, data_dir, tmp_path):
  """A config file that does not exist, a missing --workdir, a data path
  that does not exist: one FATAL line each, exit status 2, nothing left."""
  workdir = tmp_path / 'run'
  proc = sup.run(
      sup.train_cmd('train/configs/nope.py', workdir, {}), timeout=600
  )
  _one_fatal_line(proc, 2, '--config=train/configs/nope.py', 'No such file')
  proc = sup.run(
      [sys.executable, '-m', 'train.main', f'--config={NPZ_CONFIG}'],
      timeout=600,
  )
  _one_fatal_line(proc, 2, '--workdir')
  overrides = sup.cli_overrides(tmp_path / 'nowhere', '')
  proc = sup.run(sup.train_cmd(NPZ_CONFIG, workdir, overrides), timeout=600)
  _one_fatal_line(proc, 2, str(tmp_path / 'nowhere'), 'is not a directory')
  assert not workdir.exists()


@pytest.mark.parametrize(
    'command',
    ['train.stream', pytest.param('train.eval', marks=pytest.mark.slow)],
)
def test_commands_on_a_workdir_that_does_not_exist_say_so(tmp_path, command):
  typo = tmp_path / 'typo'
  proc = sup.run(
      [sys.executable, '-m', command, f'--workdir={typo}'], timeout=600
  )
  line = _one_fatal_line(proc, 2, f'--workdir={typo} does not exist')
  assert 'train.export' not in line


@pytest.mark.slow
@pytest.mark.parametrize(
    'cmd,parts',
    [
        (
            ['-m', 'train.export', '--workdir=/nonexistent/w'],
            ['/nonexistent/w'],
        ),
        (
            ['-m', 'train.attention', '--workdir=/nonexistent/w'],
            ['/nonexistent/w'],
        ),
        (['-m', 'train.eval', '--workdir=w', 'extra'], ['extra']),
        (['-m', 'benchmarks.speed', '--nope'], ['--nope', '--help']),
        (['-m', 'benchmarks.memory', '--B=x'], ['--B']),
        (
            [
                '-m',
                'eleatt_jax.datasets',
                'build',
                'nucla/dev',
                '--manual_dir=/nonexistent/m',
                '--data_dir={tmp}',
            ],
            ['/nonexistent/m', '--manual_dir=DIR'],
        ),
    ],
    ids=['export', 'attention', 'eval-args', 'speed', 'memory', 'datasets'],
)
def test_every_entry_point_ends_a_user_error_in_one_line(cmd, parts, tmp_path):
  cmd = [c.replace('{tmp}', str(tmp_path / 'tfds')) for c in cmd]
  proc = sup.run([sys.executable, *cmd], timeout=600)
  _one_fatal_line(proc, 2, *parts)
  verbose = sup.run([sys.executable, *cmd, '--verbose'], timeout=600)
  assert verbose.returncode == 2
  assert 'Traceback' in verbose.stderr or 'usage' not in verbose.stderr


@pytest.mark.slow
def test_a_non_finite_loss_is_one_line_and_leaves_no_lock(
    npz_dir, data_dir, tmp_path
):
  workdir = tmp_path / 'run'
  overrides = sup.cli_overrides(npz_dir, data_dir, inject_nan_at_step=5)
  proc = sup.run(sup.train_cmd(NPZ_CONFIG, workdir, overrides), timeout=900)
  _one_fatal_line(proc, 1, 'at step 5', 'step 4')
  assert not (workdir / 'train.lock').exists()
  assert (workdir / 'checkpoints' / '4').is_dir()


@pytest.mark.slow
def test_ctrl_c_during_the_final_evaluation_is_one_line_and_130(tmp_path):
  """A test split of 20,000 sequences in batches of 4 keeps the final
  evaluation busy for seconds; SIGINT once the last checkpoint is complete."""
  npz = sup.write_npz_dataset(tmp_path / 'npz', n_test=20000)
  workdir = tmp_path / 'run'
  overrides = sup.cli_overrides(npz, tmp_path / 'tfds', eval_batch_size=4)
  proc = subprocess.Popen(
      sup.train_cmd(NPZ_CONFIG, workdir, overrides),
      cwd=sup.REPO,
      env=sup.subprocess_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      # As from a terminal: a test run in the background inherits SIGINT
      # ignored, and so would the trainer once its own handler is gone.
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
  )
  last = pathlib.Path(workdir) / 'checkpoints' / '6'
  deadline = time.monotonic() + 900
  while not last.is_dir() and proc.poll() is None:
    assert time.monotonic() < deadline
    time.sleep(0.01)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 130, out[-2000:] + err[-3000:]
  assert 'Traceback' not in err, err[-3000:]
  # In the final evaluation (or, if the signal came while the last step was
  # saved, at that step): one line either way.
  lines = [
      l
      for l in (err + out).splitlines()
      if l.startswith(('Interrupted', 'FATAL', 'E1', 'E0'))  # absl: E1203...
  ]
  assert len(lines) == 1 and lines[0].startswith('Interrupted (SIGINT)'), err
  assert 'Final test accuracy' not in out
  assert not (workdir / 'train.lock').exists()
  rerun = sup.run(sup.train_cmd(NPZ_CONFIG, workdir, overrides), timeout=900)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert (workdir / 'eval_results.json').exists()


@pytest.mark.slow
def test_overwrite_moves_aside_everything_written_for_the_run(
    npz_dir, tmp_path
):
  """train.eval of another split, train.export and train.attention write
  into the workdir; `overwrite` moves all of it, and the data built there,
  aside with the run; train.stream then has no export to serve."""
  from train import attention  # pylint: disable=g-import-not-at-top
  from train import eval as train_eval  # pylint: disable=g-import-not-at-top
  from train import export  # pylint: disable=g-import-not-at-top

  workdir = tmp_path / 'run'
  # No data.data_dir: the data are built in WORKDIR/tfds.
  config = sup.tiny_config(npz_dir, '', **{'data.data_dir': ''})
  train.train_and_evaluate(config, str(workdir))
  train_eval.evaluate_checkpoint(str(workdir), split='validation')
  export.export_run(str(workdir))
  attention.plot_attention(str(workdir), 0)
  written = sorted(p.name for p in workdir.iterdir())
  for name in (
      'export',
      'eval_results_validation.json',
      'confusion_matrix_validation.png',
      'attention_test_0.png',
      'attention_test_0.npz',
      'tfds',
  ):
    assert name in written, written
  again = sup.tiny_config(
      npz_dir, '', seed=5, overwrite=True, **{'data.data_dir': ''}
  )
  train.train_and_evaluate(again, str(workdir))
  old = sorted(p.name for p in (workdir / 'replaced' / '1').iterdir())
  assert set(written) - {'replaced'} <= set(old), (written, old)
  now = sorted(p.name for p in workdir.iterdir())
  assert now == [
      'checkpoints',
      'config.json',
      'data_source.json',
      'eval_results.json',
      'metrics.jsonl',
      'replaced',
      'tfds',
  ]
  with pytest.raises(FileNotFoundError, match='train.export'):
    from train import stream  # pylint: disable=g-import-not-at-top

    stream.replay(str(workdir))


@pytest.mark.slow
def test_other_data_at_a_rerun_are_refused_naming_both(tmp_path):
  """Another data.path (another D, other classes' data) on a workdir that
  holds its built copy of the first: refused naming both paths; with
  `overwrite` the run trains on the new data."""
  from train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  first = sup.write_npz_dataset(tmp_path / 'first', n_train=24, n_test=9)
  second = tmp_path / 'second'
  second.mkdir()
  sup.write_npz_split(second / 'train.npz', 30, seed=7, dim=5)
  sup.write_npz_split(second / 'test.npz', 12, seed=8, dim=5)
  workdir = tmp_path / 'run'
  small = {'data.data_dir': '', 'num_train_steps': 2}
  train.train_and_evaluate(sup.tiny_config(first, '', **small), str(workdir))
  other = sup.tiny_config(second, '', **small)
  with pytest.raises(
      workdir_lib.WorkdirError, match=f'{first} before, {second} now'
  ):
    train.train_and_evaluate(other, str(workdir))
  # The same files, elsewhere, are the same data: a resumption.
  moved = tmp_path / 'moved'
  moved.mkdir()
  for name in ('train.npz', 'test.npz'):
    (moved / name).write_bytes((first / name).read_bytes())
  train.train_and_evaluate(
      sup.tiny_config(moved, '', **dict(small, num_train_steps=4)),
      str(workdir),
  )
  other.overwrite = True
  out = train.train_and_evaluate(other, str(workdir))
  assert out['num_examples'] == 12
  assert (workdir / 'replaced' / '1' / 'tfds').is_dir()


def test_the_test_split_cannot_select_unless_allowed(npz_dir, tmp_path):
  from train import config_lib  # pylint: disable=g-import-not-at-top

  config = sup.tiny_config(npz_dir, tmp_path, **{'data.eval_split': 'test'})
  with pytest.raises(
      config_lib.ConfigError,
      match=r"eval_split='test' is the test split.*chosen on the test data.*"
      r'--config.allow_test_selection=True',
  ):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()
  config.allow_test_selection = True
  config_lib.validate(config)  # said explicitly: allowed


@pytest.fixture(scope='module')
def finished_run(npz_dir, data_dir, tmp_path_factory):  # pylint: disable=redefined-outer-name
  """A finished tiny run with checkpoints 2, 4 and 6 (each one sealed)."""
  workdir = tmp_path_factory.mktemp('finished') / 'run'
  config = sup.tiny_config(npz_dir, data_dir, keep_best=3)
  train.train_and_evaluate(config, str(workdir))
  return workdir


def _garbage(path):
  path.write_bytes(b'\x00{not json')


def _truncate_a_data_file(step_dir):
  files = [p for p in (step_dir / 'state').rglob('*') if p.is_file()]
  data = [p for p in files if p.parent.name == 'd'] or files
  victim = max(data, key=lambda p: p.stat().st_size)
  with open(victim, 'r+b') as f:
    f.truncate(victim.stat().st_size - 7)


def _unsealed_garbage_metrics(step_dir):
  (step_dir / 'sha256sums.json').unlink()  # a checkpoint of an older version
  _garbage(step_dir / 'metrics' / 'metrics')


DAMAGE = {
    'metrics-garbage': (6, lambda d: _garbage(d / 'metrics' / 'metrics')),
    'metrics-empty': (
        6,
        lambda d: (d / 'metrics' / 'metrics').write_bytes(b''),
    ),
    'checkpoint-metadata': (6, lambda d: _garbage(d / '_CHECKPOINT_METADATA')),
    'state-metadata': (6, lambda d: _garbage(d / 'state' / '_METADATA')),
    'older-truncated-data': (2, _truncate_a_data_file),
    'unsealed-metrics-garbage': (6, _unsealed_garbage_metrics),
}
_SLOW_DAMAGE = (
    'metrics-empty',
    'checkpoint-metadata',
    'state-metadata',
    'unsealed-metrics-garbage',
)


@pytest.mark.parametrize(
    'kind',
    [
        pytest.param(k, marks=pytest.mark.slow) if k in _SLOW_DAMAGE else k
        for k in DAMAGE
    ],
)
def test_damage_anywhere_in_a_checkpoint_is_moved_aside(
    finished_run, data_dir, npz_dir, tmp_path, capsys, kind
):  # pylint: disable=redefined-outer-name
  """train.eval skips the damaged checkpoint with one warning line; the
  trainer moves it to corrupt_checkpoints/ and goes on from the next one."""
  import shutil  # pylint: disable=g-import-not-at-top

  from train import eval as train_eval  # pylint: disable=g-import-not-at-top

  step, make_damage = DAMAGE[kind]
  workdir = tmp_path / 'run'
  shutil.copytree(finished_run, workdir)
  make_damage(workdir / 'checkpoints' / str(step))
  capsys.readouterr()
  out = train_eval.evaluate_checkpoint(
      str(workdir), output=str(tmp_path / 'e.json')
  )
  err = capsys.readouterr().err.strip().splitlines()
  assert out['step'] == (4 if step == 6 else 6)
  assert len(err) == 1, err
  assert err[0].startswith(f'WARNING: Checkpoint at step {step} in ')
  assert 'is unreadable' in err[0]
  config = sup.tiny_config(npz_dir, data_dir, keep_best=3, num_train_steps=8)
  train.train_and_evaluate(config, str(workdir))
  said = capsys.readouterr().out
  assert f'Checkpoint at step {step} in' in said, said[-3000:]
  assert (workdir / 'corrupt_checkpoints' / str(step)).is_dir()
  steps = sorted(
      int(p.name)
      for p in (workdir / 'checkpoints').iterdir()
      if p.name.isdigit()
  )
  assert step not in steps or step == 6
  assert 8 in steps


def test_a_rerun_of_a_finished_run_logs_its_final_test_once(
    finished_run, npz_dir, data_dir, tmp_path
):  # pylint: disable=redefined-outer-name
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top

  from train import config_lib  # pylint: disable=g-import-not-at-top

  workdir = tmp_path / 'run'
  shutil.copytree(finished_run, workdir)

  def finals():
    lines = (workdir / 'metrics.jsonl').read_text().splitlines()
    return [l for l in lines if 'final_test/accuracy' in json.loads(l)]

  assert len(finals()) == 1
  config = sup.tiny_config(npz_dir, data_dir, keep_best=3)
  train.train_and_evaluate(config, str(workdir))
  assert len(finals()) == 1
  # Fewer steps than the run has done: refused, naming both.
  shorter = sup.tiny_config(npz_dir, data_dir, keep_best=3, num_train_steps=4)
  with pytest.raises(
      config_lib.ConfigError,
      match=r'holds step 6, beyond the 4 training steps.*'
      r'--config.num_train_steps=6',
  ):
    train.train_and_evaluate(shorter, str(workdir))


def _one_fatal_line_each(procs, outs):
  """Every process exited 1 with one ``FATAL`` line, the same on all; the
  lines per process."""
  fatal = [
      [l for l in out.splitlines() if l.startswith('FATAL')] for out in outs
  ]
  for p, out, lines in zip(procs, outs, fatal):
    assert p.returncode == 1, out[-4000:]
    assert len(lines) == 1, out[-4000:]
  assert fatal[0] == fatal[1], fatal
  return fatal


@pytest.mark.slow
def test_a_disk_error_on_one_of_two_processes_stops_both_with_one_line(
    npz_dir, data_dir, tmp_path
):
  """Two real processes (jax.distributed over localhost); at step 3 process
  0's file-size limit drops to the size of its metrics.jsonl, so that its
  next line fails with EFBIG (no checkpoint is written before step 1000).
  Both stop, long before jax's 300 s shutdown barrier (the wait below gives
  up at 250 s), each with the same FATAL line naming the file."""
  import re  # pylint: disable=g-import-not-at-top
  import resource  # pylint: disable=g-import-not-at-top

  overrides = sup.cli_overrides(
      npz_dir,
      data_dir,
      num_train_steps=2000,
      log_every_steps=1,
      checkpoint_every_steps=0,
      eval_every_steps=1000,
  )
  workdir = tmp_path / 'run'
  # Pipes, not files: the file-size limit must not stop the output.
  procs = sup.start_processes(sup.train_cmd(NPZ_CONFIG, workdir, overrides))
  try:
    sup.wait_for_step(procs[0], 3, timeout=900)
    size = (workdir / 'metrics.jsonl').stat().st_size
    resource.prlimit(procs[0].pid, resource.RLIMIT_FSIZE, (size, size))
  except BaseException:
    sup.wait_processes(procs, timeout=0)  # ends them
    raise
  outs = sup.wait_processes(procs, timeout=250)
  fatal = _one_fatal_line_each(procs, outs)
  assert re.match(
      r'FATAL: Process 0: Writing \S+metrics.jsonl failed: file too large '
      r'\(EFBIG\)',
      fatal[0][0],
  ), fatal


@pytest.mark.parametrize('failing', [0, 1], ids=['process0', 'process1'])
@pytest.mark.slow
def test_a_disk_error_in_a_checkpoint_write_of_one_of_two_processes_stops_both(
    npz_dir, data_dir, tmp_path, failing
):
  """Two real processes (jax.distributed over localhost); once the first
  checkpoint is complete, the file-size limit of one of them drops to 4 KiB,
  below some of its files of the next checkpoint (process 0: the data and
  metadata; process 1: its array metadata; metrics.jsonl, a line per
  evaluation, stays below it), so that orbax's write of that checkpoint
  fails with EFBIG on that process alone. Both stop with the same FATAL line
  naming the checkpoint's folder and exit 1, instead of waiting at orbax's
  barrier for 1200 s (the wait below gives up at 120 s); the lock is
  released and the checkpoints written before restore."""
  import re  # pylint: disable=g-import-not-at-top
  import resource  # pylint: disable=g-import-not-at-top

  limit = 4096
  overrides = sup.cli_overrides(
      npz_dir,
      data_dir,
      num_train_steps=2000,
      log_every_steps=1000,
      checkpoint_every_steps=20,
      eval_every_steps=20,
  )
  workdir = tmp_path / 'run'
  ckpts = workdir / 'checkpoints'
  # Pipes, not files: the file-size limit must not stop the output.
  procs = sup.start_processes(sup.train_cmd(NPZ_CONFIG, workdir, overrides))
  try:
    deadline = time.monotonic() + 900
    while not (
        ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())
    ):
      assert (
          time.monotonic() < deadline and procs[0].poll() is None
      ), sup.output(procs[0])[-4000:]
      time.sleep(0.02)
    resource.prlimit(procs[failing].pid, resource.RLIMIT_FSIZE, (limit, limit))
  except BaseException:
    sup.wait_processes(procs, timeout=0)  # ends them
    raise
  outs = sup.wait_processes(procs, timeout=120)
  fatal = _one_fatal_line_each(procs, outs)
  for out in outs:
    assert 'Traceback' not in out, out[-4000:]
  assert re.match(
      rf'FATAL: Process {failing}: Writing {re.escape(str(ckpts))}/\d+\.orbax-'
      r'checkpoint-tmp\S* failed: file too large \(EFBIG\)',
      fatal[0][0],
  ), fatal
  assert not (workdir / 'train.lock').exists()
  kept = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
  assert kept and kept[0] == 20, kept
  for step in kept:
    assert sup.final_params(workdir, str(step))[1] == step
