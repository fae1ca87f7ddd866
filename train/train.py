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

import functools
import os
import sys
from typing import Any

import jax
import ml_collections
import numpy as np

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
  with workdir_lib.WorkdirLock(workdir), workdir_lib.stop_if_disk_full(workdir):
    workdir_lib.check_previous_run(config, workdir)
    builder, info = input_pipeline.prepare_dataset(config, workdir)
    num_steps, steps_per_epoch = state_lib.num_train_steps(config, info)
    exp = state_lib.build(config, info, num_steps)
    par = parallel.create(config.parallel, exp, info.num_classes)
    par.check_batch_size(config.batch_size, 'config.batch_size')
    par.check_batch_size(config.eval_batch_size, 'config.eval_batch_size')

    ckpt = checkpoints.Checkpointer(workdir, config.keep_best)
    abstract = exp.abstract_state(par.state_sharding())
    state, train_it = ckpt.restore_latest(
        abstract,
        functools.partial(input_pipeline.train_iterator, config, builder, info),
        log,
    )
    if state is None:
      state = jax.jit(exp.init_fn, out_shardings=par.state_sharding())()
      log(reporting.param_table(state.params))
    start_step = int(jax.device_get(state.step))
    if distributed.is_primary():
      workdir_lib.write_atomically(
          os.path.join(workdir, 'config.json'),
          config.to_json_best_effort(indent=2),
      )
    log(
        f'{info.name}: {info.splits[config.data.train_split]} training '
        f'examples ({config.data.train_split}), {info.num_classes} classes, '
        f'input [T={info.num_frames}, D={info.input_dim}]; {num_steps} steps '
        f'of {config.batch_size} ({num_steps / steps_per_epoch:.1f} epochs); '
        f'parallel={config.parallel} over {par.num_shards} device(s), '
        f'{jax.process_count()} process(es).'
    )

    evaluate = lambda dstate, split: steps.evaluate(  # pylint: disable=g-long-lambda
        par,
        dstate,
        input_pipeline.eval_batches(config, builder, info, split),
        info.num_classes,
    )
    reporter = reporting.Reporter(
        config,
        workdir,
        num_steps=num_steps,
        start_step=start_step,
        primary=distributed.is_primary(),
        last_checkpoint=functools.partial(_describe_latest, ckpt),
    )
    try:
      dstate, step, stopped_by = _train_loop(
          config,
          info,
          par,
          exp,
          ckpt,
          reporter,
          evaluate,
          par.device_state(state),
          train_it,
          num_steps,
      )
      if stopped_by:
        what = 'Preempted' if stopped_by == 'SIGTERM' else 'Interrupted'
        log(
            f'{what} ({stopped_by}) at step {step}: saved a checkpoint in '
            f'{ckpt.directory}; run the same command to resume.'
        )
        out = {'preempted': True, 'signal': stopped_by, 'step': step}
      else:
        out = _final_evaluation(
            config,
            workdir,
            info,
            par,
            ckpt,
            reporter,
            evaluate,
            dstate,
            step,
            abstract,
            log,
        )
      reporter.close()
      ckpt.close()
    except BaseException as err:
      _stop_after_error(err, workdir, reporter, ckpt)
      raise
    return out


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


def _train_loop(
    config,
    info,
    par,
    exp,
    ckpt,
    reporter,
    evaluate,
    dstate,
    train_it,
    num_steps: int,
):
  """Steps from the state's step to `num_steps`, evaluating and saving.

  Returns:
    ``(device state, step, None or the signal that stopped the run)``.
  """
  eval_every = state_lib.eval_every_steps(config, info)
  ckpt_every = int(config.checkpoint_every_steps) or eval_every
  split = config.data.eval_split
  drng = par.device_rng(exp.dropout_rng)
  step = int(jax.device_get(par.host_state(dstate).step))
  with checkpoints.Preemption(enabled=jax.process_count() == 1) as preemption:
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
        res = evaluate(dstate, split)
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
      if not last and (preemption.requested or ckpt.reached_preemption(step)):
        reporter.flush(step)
        if ckpt.latest_step() != step:
          ckpt.save(step, par.host_state(dstate), train_it, None)
        ckpt.wait_until_finished()
        reporter.progress.close()
        return dstate, step, preemption.requested or 'SIGTERM'
  ckpt.wait_until_finished()
  reporter.progress.close()
  return dstate, step, None


def _final_evaluation(
    config,
    workdir,
    info,
    par,
    ckpt,
    reporter,
    evaluate,
    dstate,
    step,
    abstract,
    log,
) -> dict[str, Any]:
  """Evaluates the final (or best) parameters on the test split: its only
  use in the run. Writes eval_results.json and the plots."""
  chosen = {'step': step, 'chosen_by': 'latest: the final parameters'}
  best = ckpt.best_step()
  if config.final_checkpoint == 'best' and best is not None:
    dstate = par.device_state(ckpt.restore_state(best, abstract))
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
  split = config.data.test_split
  res = evaluate(dstate, split)
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
    reporter.writer.write(
        chosen['step'], {f'final_{split}/accuracy': res['accuracy']}
    )
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
  log(
      f'Final {split} accuracy: {100 * res["accuracy"]:.2f}% on '
      f'{res["num_examples"]} examples (step {chosen["step"]}).'
  )
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
  log('\n'.join(f'  {k + ":":<13}{v}' for k, v in outputs))
  return out
