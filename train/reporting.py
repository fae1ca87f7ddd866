"""What the trainer shows and writes: progress, metrics files, tables, plots.

* `Progress`: a tqdm bar (step, loss, accuracy, examples/s) on a terminal,
  plain lines otherwise.
* `MetricWriter`: ``WORKDIR/metrics.jsonl`` (one JSON object per logged step)
  and TensorBoard event files in ``WORKDIR/tensorboard`` (tensorboardX).
* `param_table`: parameter shapes and counts.
* `plot_curves`, `plot_confusion`: PNG files (matplotlib, Agg backend).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

import jax
import numpy as np

from eleatt_jax import viz


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
    rows.append((name, 'x'.join(str(d) for d in leaf.shape) or 'scalar',
                 int(np.prod(leaf.shape))))
  total = sum(r[2] for r in rows)
  w0 = max([len(r[0]) for r in rows] + [9])
  w1 = max([len(r[1]) for r in rows] + [5])
  lines = [f'{"parameter":<{w0}}  {"shape":>{w1}}  {"count":>10}',
           '-' * (w0 + w1 + 14)]
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
    self.bar = None
    if self.mode == 'bar':
      try:
        import tqdm  # pylint: disable=g-import-not-at-top
        self.bar = tqdm.tqdm(total=total, initial=initial, unit='step',
                             dynamic_ncols=True, file=sys.stdout)
      except ImportError:
        self.mode = 'lines'

  def tick(self, step: int) -> None:
    if self.bar is not None:
      self.bar.update(step - self.bar.n)

  def update(self, step: int, metrics: Mapping[str, float]) -> None:
    if self.mode == 'bar' and self.bar is not None:
      self.bar.set_postfix(
          loss=f'{metrics["loss"]:.4f}', acc=f'{metrics["accuracy"]:.3f}',
          ex_s=f'{metrics["examples_per_sec"]:.0f}', refresh=False)
      self.bar.update(step - self.bar.n)
    elif self.mode == 'lines':
      print(f'step {step}/{self.total}  loss {metrics["loss"]:.4f}  '
            f'accuracy {metrics["accuracy"]:.4f}  '
            f'lr {metrics["learning_rate"]:.3g}  '
            f'{metrics["examples_per_sec"]:.0f} examples/s', flush=True)

  def message(self, text: str) -> None:
    if self.mode == 'bar' and self.bar is not None:
      self.bar.write(text)
    elif self.mode == 'lines':
      print(text, flush=True)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
      self.bar = None


class MetricWriter:
  """metrics.jsonl and TensorBoard events, on the primary process.

  On a resumed run, lines of metrics.jsonl past the resumed step (written by
  the interrupted run after its last checkpoint) are dropped first, so the
  file tells one consistent history.
  """

  def __init__(self, workdir: str, primary: bool, tensorboard: bool,
               truncate_after: int | None = None):
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
          if truncate_after is None or json.loads(line)['step'] <= truncate_after:
            keep.append(line)
        except (ValueError, KeyError):
          pass  # a line cut by a crash
      with open(self.path, 'w') as f:
        f.writelines(keep)
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self.tb = SummaryWriter(os.path.join(workdir, 'tensorboard'),
                              purge_step=truncate_after or None)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.primary:
      return
    record = {'step': int(step)}
    record.update({k: float(v) for k, v in scalars.items()})
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    if self.tb is not None:
      for k, v in scalars.items():
        self.tb.add_scalar(k, float(v), int(step))
      self.tb.flush()

  def close(self) -> None:
    if self.tb is not None:
      self.tb.close()
      self.tb = None


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
      styles={'final_test': dict(marker='*', markersize=14, linestyle='none')})
  return viz.save_figure(fig, out_path, close=True)


def plot_confusion(out_path: str, confusion: np.ndarray, class_names,
                   title: str) -> str:
  """The confusion matrix (rows: true class) as a PNG."""
  _pyplot()
  fig = viz.plot_confusion_matrix(confusion, class_names, title=title)
  return viz.save_figure(fig, out_path, close=True)
