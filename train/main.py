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
With ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID`` set (or under SLURM / Open MPI), the processes train
together (`jax.distributed`).
"""

from __future__ import annotations

import signal
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

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
  """absl parsing, with an unknown config key reported with the valid keys."""
  message = unknown_config_keys(argv)
  if message:
    print(f'FATAL: {message}', file=sys.stderr)
    sys.exit(2)
  return FLAGS(argv)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    # orbax logs a failed background write with its traceback, from each of
    # its threads; for a full disk the one-line FATAL below says it all.
    logging.get_absl_handler().addFilter(_not_disk_full)
    # After such a failure orbax closes its event loop while tensorstore
    # still completes the other writes: each callback is one more traceback.
    sys.unraisablehook = _unless_loop_closed(sys.unraisablehook)
  # pylint: disable=g-import-not-at-top
  from train import config_lib
  from train import distributed
  from train import input_pipeline
  from train import train
  from train import workdir
  # pylint: enable=g-import-not-at-top
  distributed.initialize()
  try:
    result = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (
      config_lib.ConfigError,
      workdir.WorkdirError,
      input_pipeline.DatasetNotBuiltError,
  ) as err:
    # A one-screen message (no traceback): what is wrong and what to do.
    print(f'FATAL: {err}', file=sys.stderr, flush=True)
    sys.exit(2 if isinstance(err, config_lib.ConfigError) else 1)
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


def _not_disk_full(record) -> bool:
  """False for a log record of a write that failed for want of space."""
  from train import workdir  # pylint: disable=g-import-not-at-top

  return not workdir.disk_full_errno(
      record.exc_info[1] if record.exc_info else record.getMessage()
  )


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
