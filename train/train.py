"""Training and evaluation loop: `train_and_evaluate(config, workdir)`.

The parts live in their own modules: `config_lib` (the one validation),
`state` (model, optimizer, `TrainState`), `steps` (the pure step functions),
`parallel` (jit over a `Mesh`, or pmap), `checkpoints` (orbax, best-k,
restore, preemption), `workdir` (lock, previous run), `distributed`,
`input_pipeline` and `reporting`. This file puts them together:

* a checkpoint every ``checkpoint_every_steps`` and at the end, each one
  evaluated on eval_split first; the best ``keep_best`` by that accuracy and
  the latest are kept; a run resumes from the latest readable checkpoint in
  WORKDIR; SIGTERM or a first Ctrl-C (SIGINT) saves and exits;
* fail fast: a non-finite loss stops the run and names the step and the last
  (finite) checkpoint, which is left intact;
* outputs in WORKDIR: ``checkpoints/``, ``config.json``, ``metrics.jsonl`` (a
  line per logged step and per evaluation), ``tensorboard/`` event files,
  ``eval_results.json``, ``confusion_matrix.png``, ``curves.png``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
from typing import Any

import jax
import ml_collections
import numpy as np

from eleatt_jax import cli
from train import checkpoints
from train import config_lib
from train import distributed
from train import input_pipeline
from train import parallel
from train import reporting
from train import state as state_lib
from train import steps
from train import workdir as workdir_lib


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str
) -> dict[str, Any]:
  """Trains, checkpoints and evaluates; resumes from WORKDIR when possible.

  Args:
    config: An experiment config (see train/configs/default.py).
    workdir: Where checkpoints, logs and results go.

  Returns:
    The final evaluation (what eval_results.json holds), plus ``preempted``
    (and ``signal``: 'SIGTERM' or 'SIGINT' when it is True).

  Raises:
    reporting.NonFiniteLossError: the loss became NaN or infinite (the
      message names the step and the last checkpoint, left intact).
    KeyError, config_lib.ConfigError: an unknown key or a value out of range.
    workdir.WorkdirError: another trainer holds WORKDIR, or WORKDIR holds a
      run with another model or data.
    workdir.DiskFullError: a write failed for want of space; what was
      written before is intact and a rerun resumes.
  """
  config_lib.validate(config)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  log = reporting.Logger(distributed.is_primary())
  log(f'Workdir: {workdir}\n{input_pipeline.data_location(config, workdir)}')
  new_workdir = not os.path.isdir(workdir)
  try:
    with (
        workdir_lib.WorkdirLock(workdir),
        workdir_lib.stop_if_disk_full(workdir),
        workdir_lib.undo_failed_start(workdir),
    ):
      return _train_and_evaluate(config, workdir, log)
  finally:
    if new_workdir and distributed.is_primary():
      with contextlib.suppress(OSError):
        os.rmdir(workdir)  # only if a failed start left it empty


def _train_and_evaluate(config, workdir: str, log: reporting.Logger):
  """`train_and_evaluate` in its workdir, holding the lock."""
  workdir_lib.check_previous_run(config, workdir)
  run = _setup(config, workdir, log)
  state, train_it = _restore_or_initialize(run)
  _check_not_beyond(run, int(jax.device_get(state.step)))
  if distributed.is_primary():
    workdir_lib.write_atomically(
        os.path.join(workdir, 'config.json'),
        config.to_json_best_effort(indent=2),
    )
  workdir_lib.write_data_source(config, workdir)
  log(_describe_run(run))

  reporter = reporting.Reporter(
      config,
      workdir,
      num_steps=run.num_steps,
      start_step=int(jax.device_get(state.step)),
      primary=distributed.is_primary(),
      last_checkpoint=functools.partial(_describe_latest, run.ckpt),
  )
  try:
    dstate, step, stopped_by = _train_loop(
        run, reporter, run.par.device_state(state), train_it
    )
    if stopped_by:
      out = _stopped_by_signal(run, step, stopped_by)
    else:
      out = _final_evaluation(run, reporter, dstate, step)
    reporter.close()
    run.ckpt.close()
  except BaseException as err:
    if isinstance(err, Exception) and jax.process_count() > 1:
      # Before waiting on the checkpoint writes (which may wait on the other
      # processes): they stop as soon as they read it.
      full = workdir_lib.disk_full_error(err, workdir)
      distributed.announce_fatal(cli.message(full or err))
    _stop_after_error(err, workdir, reporter, run.ckpt)
    raise
  return out


@dataclasses.dataclass(frozen=True)
class _Run:
  """The parts of a run that `_setup` puts together.

  Attributes:
    config: The experiment config.
    workdir: The run's directory (absolute).
    log: Prints a line on the primary process.
    builder: The dataset's tfds builder.
    info: What the trainer knows of the dataset.
    num_steps: Training steps of the whole run.
    exp: The model, optimizer and state initializer.
    par: How the steps run over the devices.
    ckpt: The run's checkpoints.
    abstract: The state's shapes, dtypes and shardings (for restoring).
  """

  config: ml_collections.ConfigDict
  workdir: str
  log: reporting.Logger
  builder: Any
  info: input_pipeline.DatasetInfo
  num_steps: int
  exp: state_lib.Experiment
  par: parallel.DataParallel
  ckpt: checkpoints.Checkpointer
  abstract: state_lib.TrainState

  def evaluate(self, dstate, split: str) -> dict[str, Any]:
    """Metrics of the device state `dstate` on one pass over `split`."""
    return steps.evaluate(
        self.par,
        dstate,
        input_pipeline.eval_batches(
            self.config, self.builder, self.info, split
        ),
        self.info.num_classes,
    )


def _setup(config, workdir: str, log: reporting.Logger) -> _Run:
  """Prepares the dataset, model, optimizer, devices and checkpointer."""
  builder, info = input_pipeline.prepare_dataset(config, workdir)
  num_steps, _ = state_lib.num_train_steps(config, info)
  exp = state_lib.build(config, info, num_steps)
  par = parallel.create(config.parallel, exp, info.num_classes)
  par.check_batch_size(config.batch_size, 'config.batch_size')
  par.check_batch_size(config.eval_batch_size, 'config.eval_batch_size')
  ckpt = checkpoints.Checkpointer(workdir, config.keep_best)
  return _Run(
      config=config,
      workdir=workdir,
      log=log,
      builder=builder,
      info=info,
      num_steps=num_steps,
      exp=exp,
      par=par,
      ckpt=ckpt,
      abstract=exp.abstract_state(par.state_sharding()),
  )


def _restore_or_initialize(run: _Run):
  """``(state, training iterator)`` of the latest readable checkpoint, or
  new parameters (whose table is logged) and a fresh iterator."""
  state, train_it = run.ckpt.restore_latest(
      run.abstract,
      functools.partial(
          input_pipeline.train_iterator, run.config, run.builder, run.info
      ),
      run.log,
  )
  if state is None:
    state = jax.jit(run.exp.init_fn, out_shardings=run.par.state_sharding())()
    run.log(reporting.param_table(state.params))
  return state, train_it


def _check_not_beyond(run: _Run, step: int) -> None:
  """Refuses a run whose checkpoint is past its num_train_steps: it would
  evaluate the checkpoint as if it were the shorter run's."""
  if step > run.num_steps:
    raise config_lib.ConfigError(
        f'{run.ckpt.directory} holds step {step}, beyond the '
        f'{run.num_steps} training steps of this config '
        f'(num_train_steps={run.config.num_train_steps}, num_epochs='
        f'{run.config.num_epochs}): the run would stop at once and report '
        f'step {step}. Give at least --config.num_train_steps={step} to go '
        'on, evaluate a checkpoint with python -m train.eval --checkpoint=N, '
        'or give another --workdir.'
    )


def _describe_run(run: _Run) -> str:
  """A line on the data, the steps and the devices of the run."""
  config, info, num_steps = run.config, run.info, run.num_steps
  _, steps_per_epoch = state_lib.num_train_steps(config, info)
  return (
      f'{info.name}: {info.num_train(config.data.train_split)} training '
      f'examples ({config.data.train_split}'
      + (
          f', {config.data.train_per_class} per class'
          if info.train_indices
          else ''
      )
      + f'), {info.num_classes} classes, '
      f'input [T={info.num_frames}, D={info.input_dim}]; {num_steps} steps '
      f'of {config.batch_size} ({num_steps / steps_per_epoch:.1f} epochs); '
      f'parallel={config.parallel} over {run.par.num_shards} device(s), '
      f'{jax.process_count()} process(es).'
  )


def _stopped_by_signal(run: _Run, step: int, signal: str) -> dict[str, Any]:
  """Says how to resume a run that a signal stopped; its result."""
  what = 'Preempted' if signal == 'SIGTERM' else 'Interrupted'
  message = (
      f'{what} ({signal}) at step {step}: saved a checkpoint in '
      f'{run.ckpt.directory}; run the same command to resume.'
  )
  if jax.process_count() > 1:
    # Every process says it: each exits 128 + the signal, and on several
    # hosts each terminal shows its own process only.
    print(
        f'Process {jax.process_index()} of {jax.process_count()}: {message}',
        flush=True,
    )
  else:
    run.log(message)
  return {'preempted': True, 'signal': signal, 'step': step}


def _stop_after_error(err: BaseException, workdir: str, reporter, ckpt):
  """Lets pending checkpoint writes end, so that the last checkpoint named in
  an error is complete and intact (a failed one stays orbax's *-tmp folder);
  raises a `workdir.DiskFullError` if the disk filled up (in this thread or
  in orbax's)."""
  try:
    reporter.close()
  except Exception:  # pylint: disable=broad-except
    pass  # a full disk again: `err` says it
  pending = ckpt.close_after_error()
  for cause in (err, pending):
    full = (
        None if cause is None else workdir_lib.disk_full_error(cause, workdir)
    )
    if full is not None:
      raise full from err
  if pending is not None:  # `err` is the news; this one is said in a line
    print(
        f'A checkpoint write failed too: {checkpoints.short(pending)}',
        file=sys.stderr,
        flush=True,
    )


def _describe_latest(ckpt: checkpoints.Checkpointer) -> str:
  step = ckpt.latest_step()
  if step is None:
    return 'no checkpoint was written'
  return f'the last checkpoint is step {step} in {ckpt.directory} (left intact)'


def _train_loop(run: _Run, reporter: reporting.Reporter, dstate, train_it):
  """Steps from the state's step to `run.num_steps`, evaluating and saving.

  Returns:
    ``(device state, step, None or the signal that stopped the run)``.
  """
  config, par, ckpt, num_steps = run.config, run.par, run.ckpt, run.num_steps
  eval_every = state_lib.eval_every_steps(config, run.info)
  ckpt_every = int(config.checkpoint_every_steps) or eval_every
  split = config.data.eval_split
  drng = par.device_rng(run.exp.dropout_rng)
  step = int(jax.device_get(par.host_state(dstate).step))
  with checkpoints.Preemption() as preemption:
    while step < num_steps:
      batch = next(train_it)
      if step + 1 == config.inject_nan_at_step:
        batch = dict(batch, x=np.full_like(batch['x'], np.nan))
      dstate, metrics = par.train_step(dstate, par.device_batch(batch), drng)
      step += 1
      reporter.step(step, metrics)
      last = step == num_steps
      if step % config.log_every_steps == 0 or last:
        reporter.flush(step)
      save = step % ckpt_every == 0 or last
      if save or step % eval_every == 0:
        # Flushing first fails fast, before a non-finite state is saved.
        reporter.flush(step)
        res = run.evaluate(dstate, split)
        reporter.evaluation(step, split, res)
        if config.optim.schedule == 'plateau':
          dstate = par.plateau_update(dstate, res['loss'])
        if save:
          ckpt.save(
              step,
              par.host_state(dstate),
              train_it,
              {'accuracy': res['accuracy'], 'loss': res['loss']},
          )
        reporter.restart_clock()
      # At the last step too: a Ctrl-C there is not lost (the final
      # evaluation is left to the rerun).
      stopped_by = preemption.stop_signal(ckpt, step)
      if stopped_by:
        reporter.flush(step)
        if ckpt.latest_step() != step:
          ckpt.save(step, par.host_state(dstate), train_it, None)
        ckpt.wait_until_finished()
        reporter.progress.close()
        return dstate, step, stopped_by
  ckpt.wait_until_finished()
  reporter.progress.close()
  return dstate, step, None


def _final_evaluation(
    run: _Run, reporter: reporting.Reporter, dstate, step: int
) -> dict[str, Any]:
  """Evaluates the final (or best) parameters on the test split: its only
  use in the run. Writes eval_results.json and the plots."""
  config, info, workdir = run.config, run.info, run.workdir
  dstate, chosen = _choose_final_state(run, dstate, step)
  split = config.data.test_split
  res = run.evaluate(dstate, split)
  out = {'preempted': False}
  if distributed.is_primary():
    out.update(
        reporting.write_eval_results(
            os.path.join(workdir, 'eval_results.json'),
            res,
            step=chosen['step'],
            split=split,
            config=config,
            class_names=info.class_names,
            checkpoint=chosen,
        )
    )
    key = f'final_{split}/accuracy'
    if not reporter.writer.logged(chosen['step'], key):  # a rerun's
      reporter.writer.write(chosen['step'], {key: res['accuracy']})
  else:
    out.update(res, step=chosen['step'], split=split)
  if distributed.is_primary() and config.plots:
    reporting.plot_confusion(
        os.path.join(workdir, 'confusion_matrix.png'),
        np.asarray(res['confusion_matrix']),
        info.class_names,
        f'{info.name} {split}',
    )
    reporting.plot_curves(
        os.path.join(workdir, 'metrics.jsonl'),
        os.path.join(workdir, 'curves.png'),
    )
  run.log(
      f'Final {split} accuracy: {100 * res["accuracy"]:.2f}% on '
      f'{res["num_examples"]} examples (step {chosen["step"]}).'
  )
  run.log(_describe_outputs(config, workdir))
  return out


def _choose_final_state(run: _Run, dstate, step: int):
  """``(device state, how it was chosen)``: the final parameters, or the
  best kept checkpoint's with ``final_checkpoint='best'``."""
  config, ckpt = run.config, run.ckpt
  chosen = {'step': step, 'chosen_by': 'latest: the final parameters'}
  best = ckpt.best_step()
  if config.final_checkpoint == 'best' and best is not None:
    dstate = run.par.device_state(ckpt.restore_state(best, run.abstract))
    chosen = {
        'step': best,
        'chosen_by': (
            f'best: highest {config.data.eval_split} accuracy '
            'among the kept checkpoints'
        ),
    }
  chosen['selection_split'] = config.data.eval_split
  accuracy = ckpt.stored_accuracy(chosen['step'])
  if accuracy is not None:
    chosen['selection_accuracy'] = accuracy
  return dstate, chosen


def _describe_outputs(config, workdir: str) -> str:
  """Lines naming what the run wrote in WORKDIR."""
  outputs = [
      ('checkpoints', os.path.join(workdir, 'checkpoints')),
      ('results', os.path.join(workdir, 'eval_results.json')),
      ('metrics', os.path.join(workdir, 'metrics.jsonl')),
  ]
  if config.tensorboard:
    outputs.append(('tensorboard', os.path.join(workdir, 'tensorboard')))
  if config.plots:
    outputs += [
        ('curves', os.path.join(workdir, 'curves.png')),
        ('confusion', os.path.join(workdir, 'confusion_matrix.png')),
    ]
  return '\n'.join(f'  {k + ":":<13}{v}' for k, v in outputs)
