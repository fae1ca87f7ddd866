r"""Re-evaluates a checkpoint of a training run.

  python -m train.eval --workdir=runs/demo [--split=test] [--checkpoint=best]

Reads WORKDIR/config.json and the checkpoint (``latest`` by default, ``best``
by eval_split accuracy, or a step number), evaluates the whole split (the last
batch padded and masked) and writes ``WORKDIR/eval_results.json`` (for the
config's test split) or ``WORKDIR/eval_results_<split>.json`` (other splits),
with ``confusion_matrix[_<split>].png`` beside it.
"""

from __future__ import annotations

import os

from absl import flags

from eleatt_jax import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program)."""
  flags.DEFINE_string('workdir', None, "The training run's --workdir.")
  flags.DEFINE_string(
      'split',
      None,
      "Split to evaluate (default: the config's data.test_split).",
  )
  flags.DEFINE_string('checkpoint', 'latest', "'latest', 'best' or a step.")
  flags.DEFINE_string(
      'output', None, 'JSON file to write (default: in WORKDIR, see above).'
  )
  flags.mark_flag_as_required('workdir')


def evaluate_checkpoint(
    workdir: str,
    split: str | None = None,
    checkpoint: str = 'latest',
    output: str | None = None,
) -> dict:
  """Evaluates a checkpoint of the run in `workdir`; returns the results.

  An unreadable checkpoint is reported in one line and the next one (older
  for 'latest', next best for 'best') is evaluated instead.
  """
  # pylint: disable=g-import-not-at-top
  import jax
  import numpy as np
  from train import checkpoints
  from train import input_pipeline
  from train import parallel
  from train import reporting
  from train import steps
  # pylint: enable=g-import-not-at-top
  workdir = os.path.abspath(os.path.expanduser(workdir))
  run = checkpoints.load_run(workdir, checkpoint, log=reporting.warn)
  config, info = run.config, run.info
  split = split or config.data.test_split
  if split not in info.splits:
    raise ValueError(
        f'--split={split!r}: {info.name} has the splits {sorted(info.splits)}.'
    )
  par = parallel.create('jit', run.experiment, info.num_classes)
  # Evaluation batches must split evenly over the devices.
  n = par.num_shards
  config.eval_batch_size = -(-config.eval_batch_size // n) * n
  state = jax.device_put(run.state, par.replicated)
  res = steps.evaluate(
      par,
      state,
      input_pipeline.eval_batches(config, run.builder, info, split),
      info.num_classes,
  )
  suffix = '' if split == config.data.test_split else f'_{split}'
  output = output or os.path.join(workdir, f'eval_results{suffix}.json')
  chosen = {
      'step': run.step,
      'chosen_by': f'--checkpoint={checkpoint}',
      'selection_split': config.data.eval_split,
  }
  if run.stored_accuracy is not None:
    chosen['selection_accuracy'] = run.stored_accuracy
  out = reporting.write_eval_results(
      output,
      res,
      step=run.step,
      split=split,
      config=config,
      class_names=info.class_names,
      checkpoint=chosen,
  )
  png = os.path.join(os.path.dirname(output), f'confusion_matrix{suffix}.png')
  reporting.plot_confusion(
      png,
      np.asarray(res['confusion_matrix']),
      info.class_names,
      f'{info.name} {split}',
  )
  print(
      f'{info.name} {split} at step {run.step}: accuracy '
      f'{100 * res["accuracy"]:.2f}% on {res["num_examples"]} examples, '
      f'loss {res["loss"]:.4f}.\nWrote {output} and {png}.',
      flush=True,
  )
  return out


def main(argv):
  from train import reporting  # pylint: disable=g-import-not-at-top

  reporting.start_command(argv)
  evaluate_checkpoint(
      FLAGS.workdir, FLAGS.split, FLAGS.checkpoint, FLAGS.output
  )


if __name__ == '__main__':
  define_flags()
  cli.run_absl(main)
