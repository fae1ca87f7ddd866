"""What the trainer shows and writes: progress, metrics files, tables, plots.

* `Reporter`: the run's step metrics (fetched in groups, checked finite),
  evaluations and progress, in one object.
* `Progress`: a tqdm bar (step, loss, accuracy, examples/s) on a terminal,
  plain lines with the elapsed time and an ETA otherwise.
* `MetricWriter`: ``WORKDIR/metrics.jsonl`` (one JSON object per logged step)
  and TensorBoard event files in ``WORKDIR/tensorboard`` (`EventFile`:
  written in the trainer's thread, each record whole or not at all).
* `write_eval_results`: ``eval_results.json``.
* `param_table`: parameter shapes and counts.
* `plot_curves`, `plot_confusion`, `save_png`: PNG files (matplotlib, Agg
  backend), each replaced only by a complete new image.
* `start_command`, `warn`: the start of the commands' ``main`` and their
  one-line warnings.
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from eleatt_jax import viz
from train import workdir as workdir_lib


def start_command(argv: Sequence[str]) -> None:
  """Begins a command's ``main`` (train.eval, train.export, ...).

  Args:
    argv: absl's remaining arguments; any beyond the program name is an
      error.
  """
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:
    # Without --verbosity, only errors: absl's INFO lines would bury the
    # command's own output.
    logging.set_verbosity(logging.ERROR)


def warn(message: str) -> None:
  """Prints ``WARNING: message`` on stderr (e.g. a checkpoint skipped)."""
  print(f'WARNING: {message}', file=sys.stderr, flush=True)


class Logger:
  """Prints on the primary process only (flushed, to stdout)."""

  def __init__(self, primary: bool):
    self.primary = primary

  def __call__(self, message: str) -> None:
    if self.primary:
      print(message, flush=True)


def param_table(params) -> str:
  """A table of every parameter: path, shape, count; and the total."""
  rows = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = '/'.join(str(getattr(k, 'key', k)) for k in path)
    rows.append((
        name,
        'x'.join(str(d) for d in leaf.shape) or 'scalar',
        int(np.prod(leaf.shape)),
    ))
  total = sum(r[2] for r in rows)
  w0 = max([len(r[0]) for r in rows] + [9])
  w1 = max([len(r[1]) for r in rows] + [5])
  lines = [
      f'{"parameter":<{w0}}  {"shape":>{w1}}  {"count":>10}',
      '-' * (w0 + w1 + 14),
  ]
  lines += [f'{n:<{w0}}  {s:>{w1}}  {c:>10,}' for n, s, c in rows]
  lines += ['-' * (w0 + w1 + 14), f'{"total":<{w0}}  {"":>{w1}}  {total:>10,}']
  return '\n'.join(lines)


class Progress:
  """A progress bar on a terminal, plain lines elsewhere (or nothing)."""

  def __init__(self, mode: str, total: int, initial: int, primary: bool):
    if mode == 'auto':
      mode = 'bar' if sys.stdout.isatty() else 'lines'
    self.mode = mode if primary else 'none'
    self.total = total
    self.initial = initial
    self.start = time.time()
    self.bar = None
    if self.mode == 'bar':
      try:
        import tqdm  # pylint: disable=g-import-not-at-top

        self.bar = tqdm.tqdm(
            total=total,
            initial=initial,
            unit='step',
            dynamic_ncols=True,
            file=sys.stdout,
        )
      except ImportError:
        self.mode = 'lines'

  def tick(self, step: int) -> None:
    if self.bar is not None:
      self.bar.update(step - self.bar.n)

  def update(self, step: int, metrics: Mapping[str, float]) -> None:
    if self.mode == 'bar' and self.bar is not None:
      self.bar.set_postfix(
          loss=f'{metrics["loss"]:.4f}',
          acc=f'{metrics["accuracy"]:.3f}',
          ex_s=f'{metrics["examples_per_sec"]:.0f}',
          refresh=False,
      )
      self.bar.update(step - self.bar.n)
    elif self.mode == 'lines':
      print(
          f'step {step}/{self.total}  loss {metrics["loss"]:.4f}  '
          f'accuracy {metrics["accuracy"]:.4f}  '
          f'lr {metrics["learning_rate"]:.3g}  '
          f'{metrics["examples_per_sec"]:.0f} examples/s  '
          f'{self.timing(step)}',
          flush=True,
      )

  def timing(self, step: int, now: float | None = None) -> str:
    """``elapsed H:MM:SS  eta H:MM:SS`` (steps of this process so far)."""
    elapsed = (time.time() if now is None else now) - self.start
    done = step - self.initial
    eta = (self.total - step) * elapsed / done if done > 0 else math.nan
    return f'elapsed {_clock(elapsed)}  eta {_clock(eta)}'

  def message(self, text: str) -> None:
    if self.mode == 'bar' and self.bar is not None:
      self.bar.write(text)
    elif self.mode == 'lines':
      print(text, flush=True)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
      self.bar = None


def _clock(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  s = int(round(seconds))
  return f'{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}'


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


class Reporter:
  """Step metrics, evaluations and progress of a run.

  Step metrics stay on the device until `flush` (every ``log_every_steps``
  and before each evaluation and checkpoint) fetches them together, stops
  the run on a non-finite loss or parameters, and writes their mean.
  """

  def __init__(
      self,
      config,
      workdir: str,
      *,
      num_steps: int,
      start_step: int,
      primary: bool,
      last_checkpoint: Callable[[], str],
  ):
    """`last_checkpoint()` describes the last checkpoint, for errors."""
    self.writer = MetricWriter(
        workdir, primary, config.tensorboard, truncate_after=start_step
    )
    self.progress = Progress(config.progress, num_steps, start_step, primary)
    self._batch_size = config.batch_size
    self._last_checkpoint = last_checkpoint
    self._pending: list[tuple[int, Any]] = []
    self.restart_clock()

  def restart_clock(self) -> None:
    """examples/s counts training time only: restarted after evaluations."""
    self._time, self._steps = time.time(), 0

  def step(self, step: int, metrics) -> None:
    """Records the (device) metrics of `step`."""
    self._pending.append((step, metrics))
    self._steps += 1
    self.progress.tick(step)

  def flush(self, step: int) -> None:
    """Fetches the pending metrics; fails fast on a non-finite loss."""
    if not self._pending:
      return
    steps = [s for s, _ in self._pending]
    fetched = jax.device_get([m for _, m in self._pending])
    self._pending = []
    for s, m in zip(steps, fetched):
      loss_ok = math.isfinite(float(m['loss']))
      if not loss_ok or not bool(m['params_finite']):
        what = (
            f'training loss ({float(m["loss"])})'
            if not loss_ok
            else 'parameters (the loss was still finite)'
        )
        self.progress.close()
        raise NonFiniteLossError(
            f'Non-finite {what} at step {s}; stopping without saving them. '
            f'{self._last_checkpoint()}. Resuming would restart from there.'
        )
    now = time.time()
    mean = {
        k: float(np.mean([float(m[k]) for m in fetched]))
        for k in fetched[0]
        if k != 'params_finite'
    }
    mean['learning_rate'] = float(fetched[-1]['learning_rate'])
    mean['examples_per_sec'] = (
        self._steps * self._batch_size / max(now - self._time, 1e-9)
    )
    self._time, self._steps = now, 0
    self.writer.write(step, {f'train/{k}': v for k, v in mean.items()})
    self.progress.update(step, mean)

  def evaluation(self, step: int, split: str, res: Mapping[str, Any]) -> None:
    self.writer.write(
        step,
        {f'{split}/accuracy': res['accuracy'], f'{split}/loss': res['loss']},
    )
    self.progress.message(
        f'step {step}: {split} accuracy {res["accuracy"]:.4f} loss '
        f'{res["loss"]:.4f} ({res["num_examples"]} examples)'
    )

  def close(self) -> None:
    self.progress.close()
    self.writer.close()


def write_eval_results(
    path: str,
    results: Mapping[str, Any],
    *,
    step: int,
    split: str,
    config,
    class_names,
    checkpoint: Mapping[str, Any] | None = None,
) -> dict:
  """Writes ``{"step", "split", "accuracy", ..., "config"}`` as JSON.

  ``checkpoint`` says which parameters were evaluated and why (``chosen_by``,
  the ``selection_split`` that chose them and its accuracy there).
  """
  out = {
      'step': int(step),
      'split': split,
      'checkpoint': dict(checkpoint or {}),
      'accuracy': results['accuracy'],
      'per_class_accuracy': results['per_class_accuracy'],
      'num_examples': results['num_examples'],
      'loss': results['loss'],
      'class_names': list(class_names),
      'confusion_matrix': results['confusion_matrix'],
      'config': json.loads(config.to_json_best_effort()),
  }
  workdir_lib.write_atomically(path, json.dumps(out, indent=2))
  return out


class MetricWriter:
  """metrics.jsonl and TensorBoard events, on the primary process.

  On a resumed run, lines of metrics.jsonl past the resumed step (written by
  the interrupted run after its last checkpoint) are dropped first, so the
  file tells one consistent history.
  """

  def __init__(
      self,
      workdir: str,
      primary: bool,
      tensorboard: bool,
      truncate_after: int | None = None,
  ):
    self.primary = primary
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.tb = None
    if not primary:
      return
    if os.path.exists(self.path):
      with open(self.path) as f:
        lines = [l for l in f if l.strip()]
      keep = []
      for line in lines:
        try:
          if (
              truncate_after is None
              or json.loads(line)['step'] <= truncate_after
          ):
            keep.append(line.rstrip('\n') + '\n')
        except (ValueError, KeyError):
          pass  # a line cut by a crash or a full disk
      if keep != lines:  # rewritten only if need be, and never in place
        workdir_lib.write_atomically(self.path, ''.join(keep))
    if tensorboard:
      self.tb = EventFile(
          os.path.join(workdir, 'tensorboard'), purge_step=truncate_after
      )

  def logged(self, step: int, key: str) -> bool:
    """Whether metrics.jsonl has `key` at `step` already (a finished run's
    final evaluation, which its rerun must not log twice)."""
    if not self.primary or not os.path.exists(self.path):
      return False
    with open(self.path) as f:
      for line in f:
        try:
          record = json.loads(line)
        except ValueError:
          continue
        if record.get('step') == step and key in record:
          return True
    return False

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.primary:
      return
    record = {'step': int(step)}
    record.update({k: float(v) for k, v in scalars.items()})
    workdir_lib.append_whole(self.path, (json.dumps(record) + '\n').encode())
    if self.tb is not None:
      self.tb.write(step, scalars)

  def close(self) -> None:
    self.tb = None


class EventFile:
  """A TensorBoard event file, written in the thread that calls `write`.

  tensorboardX's SummaryWriter writes from a background thread: a full disk
  there (its periodic flush) kills that thread with a traceback, the events
  that follow are lost, and once its queue is full the trainer blocks for
  good; a full disk met by its flush in the trainer names no file, and its
  exit hook prints a traceback. Here each event is a record appended whole
  or not at all, like a line of metrics.jsonl, and a failure raises in the
  trainer naming this file. (tensorboardX still gives the protos.)
  """

  def __init__(self, directory: str, purge_step: int | None = None):
    """`purge_step`: a resumed run's step; TensorBoard hides the events the
    interrupted run wrote from there on (a START session log)."""
    # pylint: disable=g-import-not-at-top
    from tensorboardX.proto import event_pb2
    from tensorboardX.proto import summary_pb2
    # pylint: enable=g-import-not-at-top
    os.makedirs(directory, exist_ok=True)
    self._pb2 = event_pb2, summary_pb2
    self.path = workdir_lib.fresh_name(
        directory,
        f'events.out.tfevents.{int(time.time())}.{socket.gethostname()}',
    )
    events = [event_pb2.Event(wall_time=time.time(), file_version=_BRAIN)]
    if purge_step:
      events.append(
          event_pb2.Event(
              wall_time=time.time(),
              step=int(purge_step),
              session_log=event_pb2.SessionLog(
                  status=event_pb2.SessionLog.START
              ),
          )
      )
    self._append(events)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    """An event per scalar (as tensorboardX's ``add_scalar``)."""
    event_pb2, summary_pb2 = self._pb2
    now = time.time()
    self._append([
        event_pb2.Event(
            wall_time=now,
            step=int(step),
            summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag=k, simple_value=float(v))]
            ),
        )
        for k, v in scalars.items()
    ])

  def _append(self, events) -> None:
    workdir_lib.append_whole(
        self.path, b''.join(_record(e.SerializeToString()) for e in events)
    )


_BRAIN = 'brain.Event:2'


def _record(data: bytes) -> bytes:
  """`data` framed as a TFRecord: length, its CRC, data, its CRC."""
  from tensorboardX.record_writer import masked_crc32c  # pylint: disable=g-import-not-at-top

  header = struct.pack('<Q', len(data))
  return b''.join((
      header,
      struct.pack('<I', masked_crc32c(header)),
      data,
      struct.pack('<I', masked_crc32c(data)),
  ))


def read_metrics(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  out = []
  with open(path) as f:
    for line in f:
      try:
        out.append(json.loads(line))
      except ValueError:
        pass
  return out


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def plot_curves(metrics_path: str, out_path: str) -> str | None:
  """Loss and accuracy against steps, training and evaluation, as a PNG."""
  records = read_metrics(metrics_path)
  if not records:
    return None
  _pyplot()  # selects the Agg backend
  fig = viz.plot_training_curves(
      viz.curves_from_records(records),
      styles={'final_test': dict(marker='*', markersize=14, linestyle='none')},
  )
  return save_png(fig, out_path)


def plot_confusion(
    out_path: str, confusion: np.ndarray, class_names, title: str
) -> str:
  """The confusion matrix (rows: true class) as a PNG."""
  _pyplot()
  fig = viz.plot_confusion_matrix(confusion, class_names, title=title)
  return save_png(fig, out_path)


def save_png(fig, path: str, dpi: int = 100) -> str:
  """Writes the figure `fig` to `path` as a PNG, and closes it.

  Through a temporary file (`workdir.write_atomically`): a crash or a full
  disk leaves the previous image whole, never a truncated one.
  """
  plt = _pyplot()
  try:
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    workdir_lib.write_atomically(
        path,
        lambda f: fig.savefig(f, format='png', dpi=dpi, bbox_inches='tight'),
    )
  finally:
    plt.close(fig)
  return path
