r"""Seconds per checkpoint save with several processes, synchronous or not.

    python -m benchmarks.checkpoint_save [--saves 10] [--hidden 8]
        [--layers 1] [--processes 2] [--modes sync,async]

With several processes the trainer saves synchronously (`train.checkpoints`,
docs/RELIABILITY.md: a write that fails on one process must raise in its
main thread); this measures what that costs. It writes a small random
sequence-npz data set into a temporary directory, then for each mode starts
`--processes` processes of one `jax.distributed` run on this machine (one
CPU device each, gloo collectives over localhost). Each builds the trainer's
state (EleAtt-GRU, `--layers` x `--hidden`, Adam) and its training iterator
and saves them `--saves` times with the trainer's `Checkpointer`, as the
loop does (``sync``: `Checkpointer` as the trainer uses it; ``async``: the
same with orbax's background write, as with one process). All processes meet
before each save, so that each save starts from rest.

One JSON line per mode (process 0's timings): ``{"mode", "processes",
"parameters", "saves", "blocking_s_median", "blocking_s_min",
"blocking_s_max", "written_s_median"}``. ``blocking_s`` is how long
`Checkpointer.save` holds the training loop; ``written_s`` adds the wait
until the checkpoint is on disk (equal for ``sync``).
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from eleatt_jax import cli

_REPO = os.fspath(pathlib.Path(__file__).resolve().parents[1])


def _write_data(root: pathlib.Path, dim: int = 3, num_frames: int = 10):
  """Random train/test splits in the sequence-npz layout."""
  rng = np.random.default_rng(0)
  root.mkdir(parents=True, exist_ok=True)
  for split, n in (('train', 48), ('test', 21)):
    np.savez(
        root / f'{split}.npz',
        x=rng.standard_normal((n, num_frames, dim)).astype(np.float32),
        lengths=np.full(n, num_frames, np.int32),
        y=(np.arange(n) % 3).astype(np.int64),
        class_names=np.array(['a', 'b', 'c']),
    )


def _config(tmp: pathlib.Path, hidden: int, layers: int):
  from train.configs import npz  # pylint: disable=g-import-not-at-top

  config = npz.get_config()
  config.data.path = os.fspath(tmp / 'npz')
  config.data.data_dir = os.fspath(tmp / 'tfds')
  config.data.num_threads = 1
  config.model.hidden_sizes = (hidden,) * layers
  config.batch_size = 8
  return config


def _worker(args) -> None:
  """One process of a mode: saves and times; process 0 prints the line."""
  # pylint: disable=g-import-not-at-top
  import jax
  from train import checkpoints
  from train import distributed
  from train import input_pipeline
  from train import parallel
  from train import state as state_lib

  # pylint: enable=g-import-not-at-top
  distributed.initialize()
  tmp = pathlib.Path(args.tmp)
  config = _config(tmp, args.hidden, args.layers)
  builder, info = input_pipeline.prepare_dataset(config, config.data.data_dir)
  exp = state_lib.build(config, info, 1000)
  par = parallel.create(config.parallel, exp, info.num_classes)
  state = jax.jit(exp.init_fn, out_shardings=par.state_sharding())()
  iterator = input_pipeline.train_iterator(config, builder, info)
  next(iterator)

  class Background(checkpoints.Checkpointer):
    asynchronous = property(lambda self: True)

  cls = Background if args.worker == 'async' else checkpoints.Checkpointer
  ckpt = cls(os.fspath(tmp / f'workdir_{args.worker}'), keep_best=1)
  assert ckpt.asynchronous == (args.worker == 'async')
  blocking, written = [], []
  for step in range(1, args.saves + 1):
    distributed.sync(f'before save {step}')
    start = time.perf_counter()
    ckpt.save(step, par.host_state(state), iterator, {'accuracy': 0.5})
    blocking.append(time.perf_counter() - start)
    ckpt.wait_until_finished()
    written.append(time.perf_counter() - start)
  ckpt.close()
  if distributed.is_primary():
    count = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
    print(
        json.dumps({
            'mode': args.worker,
            'processes': jax.process_count(),
            'parameters': int(count),
            'saves': args.saves,
            'blocking_s_median': round(statistics.median(blocking), 3),
            'blocking_s_min': round(min(blocking), 3),
            'blocking_s_max': round(max(blocking), 3),
            'written_s_median': round(statistics.median(written), 3),
        }),
        flush=True,
    )


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _launch(args, mode: str, tmp: pathlib.Path) -> str:
  """Runs `mode` in `args.processes` processes; process 0's output."""
  port = _free_port()
  procs = []
  for pid in range(args.processes):
    env = dict(
        os.environ,
        JAX_PLATFORMS='cpu',
        JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
        JAX_NUM_PROCESSES=str(args.processes),
        JAX_PROCESS_ID=str(pid),
        XLA_FLAGS='--xla_force_host_platform_device_count=1',
        PYTHONPATH=os.pathsep.join(
            [_REPO] + [p for p in os.environ.get('PYTHONPATH', '').split(':')]
        ),
    )
    cmd = [sys.executable, '-m', 'benchmarks.checkpoint_save']
    cmd += [f'--{k}={getattr(args, k)}' for k in ('saves', 'hidden', 'layers')]
    cmd += [f'--worker={mode}', f'--tmp={tmp}']
    procs.append(
        subprocess.Popen(
            cmd,
            cwd=_REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    )
  outs = [p.communicate(timeout=args.timeout)[0] for p in procs]
  for p, out in zip(procs, outs):
    if p.returncode:
      raise RuntimeError(
          f'{mode}: a process exited {p.returncode}:\n{out[-3000:]}'
      )
  return outs[0]


def main(argv: list[str] | None = None) -> None:
  parser = cli.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--saves', type=int, default=10)
  parser.add_argument('--hidden', type=int, default=8)
  parser.add_argument('--layers', type=int, default=1)
  parser.add_argument('--processes', type=int, default=2)
  parser.add_argument('--modes', default='sync,async')
  parser.add_argument('--timeout', type=float, default=600)
  parser.add_argument('--worker', default=None, help='(internal)')
  parser.add_argument('--tmp', default=None, help='(internal)')
  args = parser.parse_args(argv)
  if args.worker:
    _worker(args)
    return
  modes = args.modes.split(',')
  for mode in modes:
    if mode not in ('sync', 'async'):
      parser.error(f'--modes: {mode!r} is not sync or async')
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    _write_data(tmp / 'npz')
    # Built once here, not by each process at once.
    from train import input_pipeline  # pylint: disable=g-import-not-at-top

    config = _config(tmp, args.hidden, args.layers)
    input_pipeline.prepare_dataset(config, config.data.data_dir)
    for mode in modes:
      out = _launch(args, mode, tmp)
      print(next(l for l in out.splitlines() if l.startswith('{')), flush=True)


if __name__ == '__main__':
  cli.run_plain(main)
