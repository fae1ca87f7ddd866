"""Helpers of the train/ tests: tiny data sets, tiny configs, subprocesses.

(No tests here: a helper module, imported by the test_train*.py modules.)
"""

from __future__ import annotations

import importlib
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_CLASSES = 3


def config_names(with_default: bool = False) -> list[str]:
  """The experiment configs as ``--config`` names them, sorted.

  A file's stem (``smnist``), or ``stem:arg`` for each argument a config that
  takes one lists in its ``ARGS`` (``ntu:xsub60``); ``default`` (the schema)
  only ``with_default``.
  """
  names = []
  for path in sorted((REPO / 'train' / 'configs').glob('*.py')):
    if path.stem.startswith('_') or (
        path.stem == 'default' and not with_default
    ):
      continue
    module = importlib.import_module(f'train.configs.{path.stem}')
    args = getattr(module, 'ARGS', ())
    names += [f'{path.stem}:{a}' for a in args] if args else [path.stem]
  return sorted(names)


def load_config(name: str):
  """The config ``--config=train/configs/NAME`` loads (``stem[:arg]``)."""
  stem, _, arg = name.partition(':')
  module = importlib.import_module(f'train.configs.{stem}')
  return module.get_config(arg) if arg else module.get_config()


def write_npz_split(
    path, n: int, seed: int, num_frames: int = 10, dim: int = 3
) -> None:
  """A learnable sequence-npz split: class c lights up feature c."""
  rng = np.random.default_rng(seed)
  y = np.arange(n) % NUM_CLASSES
  rng.shuffle(y)
  lengths = rng.integers(4, num_frames + 1, n).astype(np.int32)
  x = np.zeros((n, num_frames, dim), np.float32)
  for i in range(n):
    t = lengths[i]
    x[i, :t] = 0.3 * rng.standard_normal((t, dim))
    x[i, :t, y[i] % dim] += 1.0
  np.savez(
      path,
      x=x,
      lengths=lengths,
      y=y.astype(np.int64),
      class_names=np.array(['up', 'down', 'flat']),
  )


def write_npz_dataset(
    root, n_train: int = 48, n_test: int = 21, validation: bool = False
) -> pathlib.Path:
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  write_npz_split(root / 'train.npz', n_train, seed=1)
  write_npz_split(root / 'test.npz', n_test, seed=2)
  if validation:
    write_npz_split(root / 'validation.npz', 12, seed=3)
  return root


def tiny_config(npz_dir, data_dir, **overrides):
  """The npz experiment at toy size; `overrides` are 'a.b' -> value."""
  from train.configs import npz  # pylint: disable=g-import-not-at-top

  config = npz.get_config()
  config.data.path = os.fspath(npz_dir)
  config.data.data_dir = os.fspath(data_dir)
  config.data.num_threads = 1
  config.data.prefetch = 2
  config.model.hidden_sizes = (8,)
  config.model.dropout_rate = 0.1
  config.optim.learning_rate = 0.01
  config.batch_size = 8
  config.eval_batch_size = 6  # 21 test examples: the last batch is padded
  config.num_train_steps = 6
  config.log_every_steps = 2
  config.eval_every_steps = 3
  config.checkpoint_every_steps = 2
  config.keep_best = 1
  config.progress = 'lines'
  config.tensorboard = False
  config.plots = False
  apply_overrides(config, overrides)
  return config


def apply_overrides(config, overrides):
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def flag_args(overrides) -> list[str]:
  """``--config.KEY=VALUE`` flags for the CLI."""
  out = []
  for key, value in overrides.items():
    if isinstance(value, (tuple, list)):
      value = (
          '('
          + ','.join(str(v) for v in value)
          + (',)' if len(value) == 1 else ')')
      )
    out.append(f'--config.{key}={value}')
  return out


def cli_overrides(npz_dir, data_dir, **overrides):
  """The `tiny_config` values as CLI overrides of train/configs/npz.py."""
  base = {
      'data.path': os.fspath(npz_dir),
      'data.data_dir': os.fspath(data_dir),
      'data.num_threads': 1,
      'data.prefetch': 2,
      'model.hidden_sizes': (8,),
      'model.dropout_rate': 0.1,
      'optim.learning_rate': 0.01,
      'batch_size': 8,
      'eval_batch_size': 6,
      'num_train_steps': 6,
      'log_every_steps': 2,
      'eval_every_steps': 3,
      'checkpoint_every_steps': 2,
      'keep_best': 1,
      'progress': 'lines',
      'tensorboard': False,
      'plots': False,
  }
  base.update(overrides)
  return base


def subprocess_env(num_devices: int = 2, **extra) -> dict[str, str]:
  env = dict(os.environ)
  flags = [
      f
      for f in env.get('XLA_FLAGS', '').split()
      if not f.startswith('--xla_force_host_platform_device_count')
  ]
  flags.append(f'--xla_force_host_platform_device_count={num_devices}')
  env['XLA_FLAGS'] = ' '.join(flags)
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = os.pathsep.join(
      [str(REPO)]
      + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]
  )
  env['PYTHONUNBUFFERED'] = '1'
  if env.get(CACHE_ENV):
    env['JAX_COMPILATION_CACHE_DIR'] = env[CACHE_ENV]
    env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  env.update({k: str(v) for k, v in extra.items()})
  return env


def train_cmd(config_file: str, workdir, overrides) -> list[str]:
  return [
      sys.executable,
      '-m',
      'train.main',
      f'--config={config_file}',
      f'--workdir={workdir}',
  ] + flag_args(overrides)


def run(cmd, env=None, timeout=120) -> subprocess.CompletedProcess:
  return subprocess.run(
      cmd,
      cwd=REPO,
      env=env or subprocess_env(),
      capture_output=True,
      text=True,
      timeout=timeout,
  )


def run_and_signal(cmd, workdir, at_step: int, sig, after_checkpoint=True):
  """Starts the CLI; sends `sig` at the first progress line past `at_step`
  (once a checkpoint is complete in WORKDIR, so that a rerun resumes, unless
  not `after_checkpoint`).

  Returns:
    ``(return code, output, the step signalled at or None)``.
  """
  rc, out, _, at = run_and_act(
      cmd,
      workdir,
      at_step,
      lambda proc, _: proc.send_signal(sig),
      after_checkpoint=after_checkpoint,
  )
  return rc, out, at


def run_and_act(
    cmd, workdir, at_step: int, act, after_checkpoint=True, stderr_apart=False
):
  """Starts the CLI; calls ``act(process, step)`` at the first progress line
  past `at_step` once a checkpoint is complete in WORKDIR (orbax renames it
  to its step number when it is), or at once if not `after_checkpoint`; an
  `act` that returns False is called again at the next line.

  Returns:
    ``(return code, output, stderr (with `stderr_apart`; else in the output),
    the step acted at or None)``.
  """
  with tempfile.TemporaryFile('w+') as err:
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=err if stderr_apart else subprocess.STDOUT,
        text=True,
    )
    out, at = [], None
    try:
      for line in proc.stdout:
        out.append(line)
        m = re.match(r'step (\d+)/', line)
        ckpts = pathlib.Path(workdir) / 'checkpoints'
        if (
            m
            and int(m.group(1)) >= at_step
            and (
                not after_checkpoint
                or (
                    ckpts.is_dir()
                    and any(p.name.isdigit() for p in ckpts.iterdir())
                )
            )
        ):
          if act(proc, int(m.group(1))) is not False:
            at = int(m.group(1))
            break
      out.append(proc.stdout.read())
    finally:
      proc.wait(timeout=60)
    err.seek(0)
    return proc.returncode, ''.join(out), err.read(), at


def free_port() -> int:
  import socket  # pylint: disable=g-import-not-at-top

  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def start_processes(
    cmd, log_dir=None, num: int = 2, env=None
) -> list[subprocess.Popen]:
  """Starts `cmd` as `num` processes of one `jax.distributed` run over
  localhost (one CPU device each, gloo collectives), each with `env` added
  to its environment.

  Process N writes its stdout and stderr to ``LOG_DIR/process_N.log`` (a
  file, not a pipe: one that nobody reads never blocks it), which `output`
  reads. Without `log_dir` they go to a pipe that a thread of this process
  reads: a file-size limit (``RLIMIT_FSIZE``) set on a process then limits
  its own writes only, not its output.
  """
  import threading  # pylint: disable=g-import-not-at-top

  port = free_port()
  procs = []
  for pid in range(num):
    proc_env = subprocess_env(
        num_devices=1,
        JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
        JAX_NUM_PROCESSES=num,
        JAX_PROCESS_ID=pid,
        **(env or {}),
    )
    if log_dir is None:
      proc = subprocess.Popen(
          cmd,
          cwd=REPO,
          env=proc_env,
          stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT,
          text=True,
      )
      proc.lines = []
      proc.reader = threading.Thread(
          target=proc.lines.extend, args=(proc.stdout,), daemon=True
      )
      proc.reader.start()
    else:
      log_dir = pathlib.Path(log_dir)
      log_dir.mkdir(parents=True, exist_ok=True)
      log_path = log_dir / f'process_{pid}.log'
      with open(log_path, 'w') as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=proc_env, stdout=log, stderr=subprocess.STDOUT
        )
      proc.log_path = log_path
    procs.append(proc)
  return procs


def output(proc) -> str:
  """What a process of `start_processes` printed so far."""
  if hasattr(proc, 'lines'):
    return ''.join(proc.lines)
  return proc.log_path.read_text(errors='replace')


def wait_for_step(proc, at_step: int, timeout: float = 240) -> int:
  """Waits for a progress line of `proc` past `at_step`; its step."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline and proc.poll() is None:
    steps = [int(s) for s in re.findall(r'^step (\d+)/', output(proc), re.M)]
    if steps and steps[-1] >= at_step:
      return steps[-1]
    time.sleep(0.05)
  raise AssertionError(
      f'no progress line past step {at_step} (exit status {proc.poll()}):\n'
      + output(proc)[-4000:]
  )


def wait_processes(procs, timeout: float = 240) -> list[str]:
  """Waits for every process (all are killed if one outlives `timeout`:
  their exit status is then -9); their outputs."""
  deadline = time.monotonic() + timeout
  try:
    for p in procs:
      p.wait(timeout=max(1.0, deadline - time.monotonic()))
  except subprocess.TimeoutExpired:
    pass  # the exit status and output say it
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
    for p in procs:
      if hasattr(p, 'reader'):
        p.reader.join(timeout=30)
  return [output(p) for p in procs]


def same_results(workdir, other) -> bool:
  """Two runs' eval_results.json agree (but for the config's paths)."""
  import json  # pylint: disable=g-import-not-at-top

  a, b = (
      json.loads((pathlib.Path(w) / 'eval_results.json').read_text())
      for w in (workdir, other)
  )
  a.pop('config'), b.pop('config')
  return a == b


def bitwise_equal(a, b) -> bool:
  """Two trees of arrays with the same structure, dtypes, shapes and bits."""
  import jax  # pylint: disable=g-import-not-at-top

  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  return all(
      x.dtype == y.dtype
      and x.shape == y.shape
      and np.array_equal(x.view(np.uint8), y.view(np.uint8))
      for x, y in zip(la, lb)
  )


def train_unbroken(npz_dir, data_dir, overrides, workdir):
  """Trains, in this process, the run that `overrides` (the command line's
  'a.b' -> value of a real-process run) describes, without interruption: the
  reference a killed or stopped run must end equal to."""
  from train import train  # pylint: disable=g-import-not-at-top

  config = tiny_config(
      npz_dir,
      data_dir,
      **{
          k: v
          for k, v in overrides.items()
          if k not in ('data.path', 'data.data_dir')
      },
  )
  return train.train_and_evaluate(config, os.fspath(workdir))


def final_params(workdir, checkpoint='latest'):
  """The parameters (as NumPy) and step of a run's checkpoint."""
  import jax  # pylint: disable=g-import-not-at-top
  from train import checkpoints  # pylint: disable=g-import-not-at-top

  run = checkpoints.load_run(workdir, checkpoint)
  params = jax.tree_util.tree_map(np.asarray, jax.device_get(run.state.params))
  return params, run.step


CACHE_ENV = 'ELEATT_TEST_JAX_CACHE'


def cache_dir(tmp_path_factory) -> pathlib.Path:
  """The session's compilation cache, shared by pytest-xdist workers."""
  base = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    base = base.parent  # .../pytest-N/popen-gwK -> .../pytest-N
  return base / 'jax_compilation_cache'


def compilation_cache(path):
  """Generator for a fixture: jax's persistent compilation cache in `path`.

  The train tests run the same tiny programs many times (a reference run, a
  killed run, its resumption, subprocesses...): with the cache each compiles
  once. Subprocesses started with `subprocess_env` use the same cache.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental.compilation_cache import compilation_cache as cc  # pylint: disable=g-import-not-at-top

  previous = (
      jax.config.jax_compilation_cache_dir,
      jax.config.jax_persistent_cache_min_compile_time_secs,
      os.environ.get(CACHE_ENV),
  )
  jax.config.update('jax_compilation_cache_dir', os.fspath(path))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  os.environ[CACHE_ENV] = os.fspath(path)
  cc.reset_cache()
  try:
    yield path
  finally:
    jax.config.update('jax_compilation_cache_dir', previous[0])
    jax.config.update('jax_persistent_cache_min_compile_time_secs', previous[1])
    if previous[2] is None:
      os.environ.pop(CACHE_ENV, None)
    else:
      os.environ[CACHE_ENV] = previous[2]
    cc.reset_cache()


# Fixtures, imported by the test modules that use them (module scope: each
# module builds its own tiny data set once).


@pytest.fixture(scope='module', autouse=True)
def _jax_cache(tmp_path_factory):
  yield from compilation_cache(cache_dir(tmp_path_factory))


@pytest.fixture(scope='module')
def npz_dir(tmp_path_factory):
  return write_npz_dataset(tmp_path_factory.mktemp('npz'))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory, npz_dir):  # pylint: disable=redefined-outer-name
  """A tfds data_dir with the npz fixture built once for the module."""
  from train import input_pipeline  # pylint: disable=g-import-not-at-top

  d = tmp_path_factory.mktemp('tfds')
  input_pipeline.prepare_dataset(tiny_config(npz_dir, d), str(d))
  return d
