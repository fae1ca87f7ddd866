"""Checkpoints: orbax manager, best-k, restore with fallback, preemption.

* `Checkpointer` wraps an orbax `CheckpointManager` of ``WORKDIR/checkpoints``
  that keeps the latest checkpoint and the best ``keep_best`` by the
  eval_split accuracy each was saved with. The accuracy and loss are stored
  in the checkpoint (orbax's ``metrics`` item), so the ranking survives any
  number of restarts. The grain iterator's state is saved with the model.
  With one process orbax writes each checkpoint in background threads; with
  several, synchronously (`Checkpointer.asynchronous`), so that a write that
  fails on one process alone raises in its main thread and stops them all.
* Each finished checkpoint gets ``sha256sums.json``, the SHA-256 and size of
  every file in it (`seal`). Before orbax sees the checkpoints, each one is
  checked (`damage`): every file the sums name must be there, whole and
  unchanged; a checkpoint without sums (one from before, or one a crash left
  unsealed) must at least have well-formed JSON metadata (orbax's
  ``_CHECKPOINT_METADATA``, ``metrics/metrics``, ``_METADATA``...). A
  damaged checkpoint is hidden from orbax (its manager would fail on it) and
  reported in one line.
* `Checkpointer.restore_latest` resumes from the newest readable checkpoint;
  damaged or unreadable ones are moved to ``WORKDIR/corrupt_checkpoints``
  (under a fresh name: nothing is ever deleted) and the previous one is
  tried.
* `Preemption` records SIGTERM or Ctrl-C (SIGINT) so that the loop saves
  and exits cleanly; with several processes all stop at the same step,
  whichever process saw the signal.
* `load_run` restores a run's checkpoint for `train.eval` / `train.attention`
  ('latest', 'best' or a step), falling back to the next readable one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
from collections.abc import Callable
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from train import config_lib
from train import distributed
from train import input_pipeline
from train import state as state_lib
from train import workdir as workdir_lib

CORRUPT = 'corrupt_checkpoints'


def _accuracy(metrics) -> float:
  return float(metrics['accuracy'])


def short(err: BaseException) -> str:
  return (
      f'{type(err).__name__}: {str(err).splitlines()[0][:300]}'
      if str(err)
      else type(err).__name__
  )


SUMS = 'sha256sums.json'
# orbax's metadata files, JSON (checked when a checkpoint has no sums).
_JSON_FILES = ('_CHECKPOINT_METADATA', '_METADATA', '_sharding', 'metrics')


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def _files(step_dir: str) -> list[str]:
  """Every file under `step_dir` (relative paths), but the sums."""
  out = []
  for root, _, names in os.walk(step_dir):
    for name in names:
      rel = os.path.relpath(os.path.join(root, name), step_dir)
      if rel != SUMS:
        out.append(rel)
  return sorted(out)


def seal(step_dir: str) -> None:
  """Writes ``sha256sums.json`` into a finished checkpoint's folder."""
  sums = {
      rel: {
          'sha256': _sha256(os.path.join(step_dir, rel)),
          'size': os.path.getsize(os.path.join(step_dir, rel)),
      }
      for rel in _files(step_dir)
  }
  workdir_lib.write_atomically(
      os.path.join(step_dir, SUMS), json.dumps(sums, indent=0)
  )


def damage(step_dir: str) -> str | None:
  """What is wrong with a checkpoint's files (None: nothing found).

  With ``sha256sums.json``: a file missing, of another size or another
  SHA-256 than when it was written. Without: a metadata file that is empty
  or not JSON.
  """
  sums_path = os.path.join(step_dir, SUMS)
  try:
    if os.path.exists(sums_path):
      try:
        with open(sums_path) as f:
          sums = json.load(f)
      except ValueError:
        return f'{sums_path} is not JSON'
      for rel, want in sums.items():
        path = os.path.join(step_dir, rel)
        if not os.path.exists(path):
          return f'{path} is missing'
        if os.path.getsize(path) != want['size']:
          return (
              f'{path} has {os.path.getsize(path)} bytes, not '
              f'{want["size"]} as when it was saved'
          )
        if _sha256(path) != want['sha256']:
          return f'{path} differs from what was saved (SHA-256)'
      return None
    for rel in _files(step_dir):
      name = os.path.basename(rel)
      if name in _JSON_FILES or name.endswith('.json'):
        path = os.path.join(step_dir, rel)
        try:
          with open(path) as f:
            json.load(f)
        except ValueError:
          return f'{path} is not JSON (empty or damaged)'
  except OSError as err:
    return f'{err.filename or step_dir}: {err.strerror}'
  return None


class _HidingSteps:
  """An orbax step `NameFormat` that does not see the steps in `hidden`."""

  def __init__(self, inner, hidden):
    self._inner = inner
    self._hidden = hidden

  def build_name(self, step: int) -> str:
    return self._inner.build_name(step)

  def find_all(self, base_path):
    return [
        m for m in self._inner.find_all(base_path) if m.step not in self._hidden
    ]

  def find_step(self, base_path, step: int):
    if step in self._hidden:
      raise ValueError(f'No step path found for step={step} (damaged)')
    return self._inner.find_step(base_path, step)

  def __getattr__(self, name):
    return getattr(self._inner, name)


class Checkpointer:
  """The run's checkpoints (see the module docstring).

  Attributes:
    damaged: Step -> what is wrong with it, for the checkpoints found damaged
      (hidden from orbax; `restore_latest` moves them aside).
  """

  def __init__(self, workdir: str, keep_best: int, read_only: bool = False):
    self.workdir = workdir
    self._keep_best = keep_best
    self._read_only = read_only
    self.damaged: dict[int, str] = {}
    self.mngr = self._manager()

  @property
  def asynchronous(self) -> bool:
    """Whether saves are written in orbax's background threads (with one
    process only: see `_manager`)."""
    return jax.process_count() == 1

  def _find_damage(self) -> None:
    """Checks every checkpoint's files (`damage`) into ``self.damaged``."""
    ckpts = os.path.join(self.workdir, 'checkpoints')
    self.damaged = {}
    for step in workdir_lib.checkpoint_steps(self.workdir):
      found = damage(os.path.join(ckpts, str(step)))
      if found:
        self.damaged[step] = found

  def _seal_finished(self, but: int | None = None) -> None:
    """Seals the finished checkpoints that have no sums yet (process 0)."""
    if self._read_only or not distributed.is_primary():
      return
    for step in self.mngr.all_steps():
      step_dir = os.path.join(self.directory, str(step))
      if step == but or os.path.exists(os.path.join(step_dir, SUMS)):
        continue
      try:
        seal(step_dir)
      except FileNotFoundError:
        pass  # orbax removed it meanwhile (not among the kept ones)

  def _manager(self) -> ocp.CheckpointManager:
    self._find_damage()
    policies = ocp.checkpoint_managers
    options = ocp.CheckpointManagerOptions(
        # best_fn makes orbax store each checkpoint's metrics and rank by them.
        best_fn=_accuracy,
        best_mode='max',
        preservation_policy=policies.AnyPreservationPolicy([
            policies.LatestN(n=1),
            policies.BestN(
                get_metric_fn=_accuracy,
                n=self._keep_best,
                keep_checkpoints_without_metrics=False,
            ),
        ]),
        cleanup_tmp_directories=True,
        # With several processes, saves are synchronous: a write that fails
        # on one process alone (its disk is full) then raises in that
        # process's main thread, which announces it to all
        # (`distributed.announce_fatal`). orbax's background write would
        # keep the error in its thread while every process waits at one of
        # orbax's barriers, whose limit is `AsyncOptions.timeout_secs`
        # (1200 s): the failing process at the end of the save, the others
        # at the end of the write (docs/RELIABILITY.md).
        enable_async_checkpointing=self.asynchronous,
        create=not self._read_only,
        read_only=self._read_only,
        step_name_format=_HidingSteps(
            ocp.step.standard_name_format(), set(self.damaged)
        ),
    )
    return ocp.CheckpointManager(
        os.path.join(self.workdir, 'checkpoints'), options=options
    )

  @property
  def directory(self) -> str:
    return os.fspath(self.mngr.directory)

  def latest_step(self) -> int | None:
    return self.mngr.latest_step()

  def best_step(self) -> int | None:
    """The kept step of highest accuracy (the latest among equals)."""
    return self.mngr.best_step()

  def stored_accuracy(self, step: int) -> float | None:
    """The eval_split accuracy `step` was saved with (None: none)."""
    metrics = self.mngr.metrics(step)
    return None if metrics is None else _accuracy(metrics)

  def ranked_steps(self, checkpoint: str) -> list[int]:
    """Steps to try for 'latest', 'best' or a step, the preferred first."""
    steps = sorted(self.mngr.all_steps(), reverse=True)
    if checkpoint == 'latest':
      return steps
    if checkpoint == 'best':
      scored = [(self.stored_accuracy(s), s) for s in steps]
      ranked = sorted((a, s) for a, s in scored if a is not None)[::-1]
      return [s for _, s in ranked] + [s for a, s in scored if a is None]
    if int(checkpoint) not in steps:
      raise ValueError(
          f'No checkpoint at step {checkpoint} in '
          f'{self.directory}; there are {sorted(steps)}.'
      )
    return [int(checkpoint)]

  def save(self, step: int, state, data_iterator, metrics) -> None:
    """Saves `state` and the iterator; `metrics` (accuracy, loss) or None."""
    self.mngr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_iterator),
        ),
        metrics=metrics,
        force=True,
    )
    # orbax finished the previous save before it began this one (and this
    # one too when it saves synchronously).
    self._seal_finished(but=step if self.asynchronous else None)

  def restore_state(self, step: int, abstract):
    """The state saved at `step` (`abstract`: shapes and shardings)."""
    return self._restore(step, abstract)[0]

  def _restore(self, step: int, abstract, iterator=None):
    args = {'state': ocp.args.StandardRestore(abstract)}
    if iterator is not None:
      args['data'] = grain.checkpoint.CheckpointRestore(iterator)
    restored = self.mngr.restore(step, args=ocp.args.Composite(**args))
    state = restored['state']
    if int(jax.device_get(state.step)) != step:
      raise ValueError(f'it holds step {int(jax.device_get(state.step))}')
    return state, restored['data'] if iterator is not None else None

  def restore_latest(
      self,
      abstract,
      new_iterator: Callable[[], Any],
      log: Callable[[str], None],
  ):
    """Restores the newest readable checkpoint.

    Args:
      abstract: The state's shapes, dtypes and shardings.
      new_iterator: ``() -> a fresh training iterator`` (each attempt gets
        its own, so that a failed restore never moves the one returned).
      log: Prints a line (on process 0).

    Returns:
      ``(state or None, iterator)``: None and a fresh iterator when there is
      no readable checkpoint.
    """
    failed = []
    for step, found in sorted(self.damaged.items(), reverse=True):
      log(
          f'Checkpoint at step {step} in {self.directory} is unreadable '
          f'({found}); trying an older one.'
      )
      failed.append(step)
    for step in sorted(self.mngr.all_steps(), reverse=True):
      try:
        state, iterator = self._restore(step, abstract, new_iterator())
      except Exception as err:  # pylint: disable=broad-except
        log(
            f'Checkpoint at step {step} in {self.directory} is unreadable '
            f'({short(err)}); trying an older one.'
        )
        failed.append(step)
        continue
      if failed:
        log(
            f'Resuming from step {step} (the checkpoint(s) {failed} '
            'could not be read and were moved to '
            f'{os.path.join(self.workdir, CORRUPT)}).'
        )
        self._move_aside(failed)
      else:
        log(f'Resuming from checkpoint step {step} in {self.directory}.')
      return state, iterator
    if failed:
      log(
          f'No checkpoint in {self.directory} could be read ({failed}); '
          'they and metrics.jsonl were moved to '
          f'{os.path.join(self.workdir, CORRUPT)}; starting from scratch.'
      )
      self._move_aside(failed, also=('metrics.jsonl',))
    return None, new_iterator()

  def _move_aside(self, steps, also=()) -> None:
    """Moves checkpoints (and `also`, workdir files) to corrupt_checkpoints."""
    self.mngr.close()
    if distributed.is_primary():
      dest = os.path.join(self.workdir, CORRUPT)
      for step in steps:
        src = os.path.join(self.directory, str(step))
        if os.path.exists(src):
          workdir_lib.move_aside(src, dest)
      for name in also:
        if os.path.exists(os.path.join(self.workdir, name)):
          workdir_lib.move_aside(os.path.join(self.workdir, name), dest)
    distributed.sync('moved corrupt checkpoints')
    self.mngr = self._manager()

  def reached_preemption(self, step: int) -> bool:
    """jax's preemption notice (several processes: all stop together)."""
    return jax.process_count() > 1 and self.mngr.reached_preemption(step)

  def wait_until_finished(self) -> None:
    self.mngr.wait_until_finished()
    self._seal_finished()

  def close(self) -> None:
    self.mngr.wait_until_finished()
    self._seal_finished()
    self.mngr.close()

  def close_after_error(self) -> BaseException | None:
    """Waits for pending writes and closes, after an error elsewhere.

    A failed write is left as orbax's ``*.orbax-checkpoint-tmp`` folder
    (never a step folder), which the next run's manager removes.

    Returns:
      The error of a failed pending write (None: none), not raised.
    """
    error = None
    for finish in (self.mngr.wait_until_finished, self.mngr.close):
      try:
        finish()
      except Exception as err:  # pylint: disable=broad-except
        error = error or err
    return error


class Preemption:
  """Records SIGTERM or SIGINT so that the loop can save and exit cleanly.

  ``requested`` is then the signal's name. A second Ctrl-C (SIGINT) is a
  KeyboardInterrupt at once, as usual.

  With several processes all must stop at the same step, whichever of them
  saw the signal (on several hosts a Ctrl-C may reach only some), so jax's
  own preemption sync (`jax.distributed.initialize` installs it, with its
  SIGTERM handler) decides the step: SIGTERM is left to it, and a first
  SIGINT is handed to it as a SIGTERM to this process, whose notice the
  coordination service passes on to every process. `stop_signal` asks that
  sync at each step; it costs no collective until a signal came.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self, enabled: bool = True):
    self.requested: str | None = None
    self.enabled = enabled
    self._previous = {}
    self._several = jax.process_count() > 1

  def __enter__(self):
    if not self.enabled:
      return self
    signals = self.SIGNALS
    if self._several:
      # Without jax's preemption service nothing would agree on a step (and
      # a SIGTERM to this process would kill it): Ctrl-C stays a
      # KeyboardInterrupt.
      signals = (signal.SIGINT,) if _preemption_service() else ()
    try:
      for sig in signals:
        self._previous[sig] = signal.signal(sig, self._handle)
    except ValueError:  # not the main thread
      pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.requested = self.requested or signal.Signals(signum).name
    if signum == signal.SIGINT:  # a second Ctrl-C interrupts at once
      signal.signal(
          signum, self._previous.get(signum) or signal.default_int_handler
      )
      if self._several:
        os.kill(os.getpid(), signal.SIGTERM)

  def stop_signal(self, ckpt: Checkpointer, step: int) -> str | None:
    """The signal that stops the run at `step` (None: go on).

    With several processes it is the same step on all; there, and only
    there, one collective tells them all whether any saw a SIGINT (then
    'SIGINT': 130 and 'Interrupted' everywhere) or none did ('SIGTERM').
    """
    if not self._several:
      return self.requested
    if not ckpt.reached_preemption(step):
      return None
    interrupted = distributed.any_process(self.requested == 'SIGINT')
    return 'SIGINT' if interrupted else 'SIGTERM'

  def __exit__(self, *exc):
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)
    self._previous = {}
    return False


def _preemption_service() -> bool:
  """jax's preemption sync runs (with its SIGTERM handler installed)."""
  return jax.distributed.is_initialized() and bool(
      jax.config.jax_enable_preemption_service
  )


@dataclasses.dataclass(frozen=True)
class LoadedRun:
  """A run's config, data, model and one restored checkpoint.

  Attributes:
    config: The run's config (config.json).
    builder: The prepared tfds builder.
    info: Its `DatasetInfo`.
    experiment: The `state.Experiment` (model, optimizer...).
    state: The restored `TrainState`, on the first local device.
    step: Its step.
    stored_accuracy: The eval_split accuracy it was saved with (or None).
  """

  config: Any
  builder: Any
  info: input_pipeline.DatasetInfo
  experiment: state_lib.Experiment
  state: state_lib.TrainState
  step: int
  stored_accuracy: float | None

  @property
  def model(self):
    return self.experiment.model


def load_run(
    workdir: str, checkpoint: str = 'latest', log: Callable[[str], None] = print
) -> LoadedRun:
  """Restores a checkpoint ('latest', 'best' or a step) of a run.

  An unreadable checkpoint is skipped with a one-line message (`log`) and the
  next one in the same order is tried (older for 'latest', next best for
  'best'); nothing is moved or written.

  Raises:
    FileNotFoundError: `workdir` holds no run or no checkpoint.
    ValueError: No such step, or no checkpoint could be read.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  path = workdir_lib.require_run(workdir)
  with open(path) as f:
    config = config_lib.from_json(json.load(f))
  config_lib.validate(config)
  builder, info = input_pipeline.prepare_dataset(config, workdir)
  num_steps, _ = state_lib.num_train_steps(config, info)
  exp = state_lib.build(config, info, num_steps)
  ckpt = Checkpointer(workdir, config.keep_best, read_only=True)
  for step, found in sorted(ckpt.damaged.items(), reverse=True):
    if checkpoint in ('latest', 'best') or str(step) == str(checkpoint):
      log(
          f'Checkpoint at step {step} in {ckpt.directory} is unreadable '
          f'({found}); trying the next one.'
      )
  candidates = ckpt.ranked_steps(checkpoint)
  if not candidates:
    raise FileNotFoundError(f'No checkpoint in {ckpt.directory}.')
  abstract = exp.abstract_state(
      jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  )
  try:
    for step in candidates:
      try:
        state = ckpt.restore_state(step, abstract)
      except Exception as err:  # pylint: disable=broad-except
        log(
            f'Checkpoint at step {step} in {ckpt.directory} is unreadable '
            f'({short(err)}); trying the next one.'
        )
        continue
      return LoadedRun(
          config, builder, info, exp, state, step, ckpt.stored_accuracy(step)
      )
  finally:
    ckpt.close()
  raise ValueError(
      f'No checkpoint of {candidates} in {ckpt.directory} could be read.'
  )
