r"""Trains and evaluates an EleAtt-RNN classifier.

  python -m train.main --config=train/configs/smnist.py --workdir=runs/demo
  python -m train.main --config=train/configs/ntu.py:xsub60 \
      --workdir=runs/ntu60_xsub --config.data.data_dir=~/tensorflow_datasets \
      --config.model.cell=gru

Any config field can be overridden with ``--config.FIELD=VALUE``; a field that
does not exist is an error that lists the valid ones. Running the same command
again resumes from the latest checkpoint in ``--workdir``; SIGTERM or a first
Ctrl-C saves a checkpoint and exits (143 or 130). A full disk stops the run
with a one-line message; what it wrote before is intact and a rerun resumes.
Any error the user can fix ends with one ``FATAL:`` line naming the file, key
or value (exit status 2; other failures 1, `eleatt_jax.cli`); ``--verbose``
adds the traceback.
With ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID`` set (or under SLURM / Open MPI), the processes train
together (`jax.distributed`); an error on any of them stops all of them with
the same ``FATAL: Process N: ...`` line (`distributed.announce_fatal`).
"""

from __future__ import annotations

import os
import signal
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from eleatt_jax import cli

FLAGS = flags.FLAGS

flags.DEFINE_string(
    'workdir',
    None,
    'Directory for checkpoints, logs and results; a run resumes from it.',
)
config_flags.DEFINE_config_file(
    'config',
    None,
    'Experiment config file (train/configs/*.py); its keys '
    'and values are checked by train.config_lib.validate.',
    lock_config=False,
)
flags.mark_flags_as_required(['config', 'workdir'])


def unknown_config_keys(argv: list[str]) -> str | None:
  """A message naming the first ``--config.KEY`` that is not a field.

  absl cannot parse an override of a field that does not exist, so this runs
  first, with the schema's own message (`config_lib.unknown_key`).
  """
  from train import config_lib  # pylint: disable=g-import-not-at-top

  for arg in argv:
    if arg.startswith('--config.'):
      message = config_lib.unknown_key(arg[len('--config.') :].split('=', 1)[0])
      if message:
        return message
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl parsing, with an unknown config key reported with the valid keys
  and a config file that does not load named (absl loads it lazily)."""
  message = unknown_config_keys(argv)
  if message:
    raise KeyError(message)
  try:
    rest = FLAGS(argv)
    FLAGS.config.keys()  # config_flags loads the file on first use
  except OSError as err:
    # config_flags' message is a dozen lines of search paths.
    path = next(
        (a.split('=', 1)[1] for a in argv if a.startswith('--config=')),
        '?',
    )
    cause = str(err).strip().splitlines()[-1].strip()
    raise FileNotFoundError(
        f'--config={path} could not be loaded ({cause}); give a file of '
        'train/configs/, e.g. --config=train/configs/smnist.py.'
    ) from err
  return rest


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    # orbax logs a failed background write with its traceback, from each of
    # its threads; for a full disk the one-line FATAL below says it all.
    logging.get_absl_handler().addFilter(_not_disk_full)
    # orbax logs a Ctrl-C that interrupts its wait with the traceback; the
    # one line of eleatt_jax.cli says it.
    logging.get_absl_handler().addFilter(_not_interrupt)
    # After such a failure orbax closes its event loop while tensorstore
    # still completes the other writes: each callback is one more traceback.
    sys.unraisablehook = _unless_loop_closed(sys.unraisablehook)
  # pylint: disable=g-import-not-at-top
  import jax
  from train import distributed
  from train import train
  # pylint: enable=g-import-not-at-top
  distributed.initialize()
  distributed.watch_fatal()
  try:
    result = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except Exception as err:  # pylint: disable=broad-except
    if jax.process_count() == 1:
      raise
    # Several processes: the others learn it within a second and stop with
    # the same line; this one exits at once, not at jax's shutdown barrier.
    line = distributed.announce_fatal(cli.message(err))
    print(f'FATAL: {line}', file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    distributed.wait_until_heard()
    os._exit(cli.exit_status(err))  # pylint: disable=protected-access
  if result.get('preempted'):
    # 128 + the signal (143: SIGTERM, 130: SIGINT): the job did not finish;
    # rerun to resume.
    sys.exit(128 + signal.Signals[result.get('signal', 'SIGTERM')].value)


def _unless_loop_closed(hook):
  def unraisable(args):
    if not (
        isinstance(args.exc_value, RuntimeError)
        and str(args.exc_value) == 'Event loop is closed'
    ):
      hook(args)

  return unraisable


def _not_interrupt(record) -> bool:
  """False for a log record of a KeyboardInterrupt (Ctrl-C)."""
  return not (
      record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt)
  )


def _not_disk_full(record) -> bool:
  """False for a log record of a write that failed for want of space."""
  from train import workdir  # pylint: disable=g-import-not-at-top

  return not workdir.disk_full_errno(
      record.exc_info[1] if record.exc_info else record.getMessage()
  )


def interrupted() -> str:
  """The line of a Ctrl-C outside the training loop (set-up, the final
  evaluation): the checkpoints are whole and a rerun goes on from them."""
  return (
      f'Interrupted (SIGINT): the checkpoints in {FLAGS.workdir} are intact; '
      'run the same command to resume.'
  )


if __name__ == '__main__':
  cli.run_absl(main, flags_parser=parse_flags, interrupted=interrupted)
