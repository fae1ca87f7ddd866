r"""Trains and evaluates an EleAtt-RNN classifier.

  python -m train.main --config=train/configs/smnist.py --workdir=runs/demo
  python -m train.main --config=train/configs/ntu60_xsub.py \
      --workdir=runs/ntu60_xsub --config.data.data_dir=~/tensorflow_datasets \
      --config.model.cell=gru

Any config field can be overridden with ``--config.FIELD=VALUE``; a field that
does not exist is an error that lists the valid ones. Running the same command
again resumes from the latest checkpoint in ``--workdir``. With
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` set
(or under SLURM / Open MPI), the processes train together
(`jax.distributed`).
"""

from __future__ import annotations

import difflib
import os
import runpy
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS

flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and '
                    'results; a run resumes from it.')
config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file (train/configs/*.py).',
    lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def _config_path(argv: list[str]) -> tuple[str | None, str | None]:
  for i, arg in enumerate(argv):
    value = None
    if arg.startswith('--config='):
      value = arg.split('=', 1)[1]
    elif arg == '--config' and i + 1 < len(argv):
      value = argv[i + 1]
    if value:
      path, _, param = value.partition(':')
      return path, param or None
  return None, None


def unknown_config_keys(argv: list[str]) -> str | None:
  """A message naming the first ``--config.KEY`` that is not a field."""
  path, param = _config_path(argv)
  if path is None or not os.path.exists(path):
    return None
  get_config = runpy.run_path(path)['get_config']
  config = get_config(param) if param else get_config()
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    key = arg[len('--config.'):].split('=', 1)[0]
    node, walked = config, []
    for part in key.split('.'):
      children = list(node.keys()) if hasattr(node, 'keys') else []
      if part not in children:
        where = '.'.join(walked)
        close = difflib.get_close_matches(part, children, n=1)
        return (f'Unknown config key {key!r} in {path}'
                + (f' (did you mean {".".join(walked + close)!r}?)'
                   if close else '') + '. Valid keys'
                + (f' under {where!r}' if where else '') + ': '
                + ', '.join(sorted(children)))
      walked.append(part)
      node = node[part]
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
  # pylint: disable=g-import-not-at-top
  from train import train
  # pylint: enable=g-import-not-at-top
  train.initialize_distributed()
  result = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  if result.get('preempted'):
    sys.exit(143)  # 128 + SIGTERM: the job did not finish; rerun to resume


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
