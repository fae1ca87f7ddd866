r"""Re-evaluates a checkpoint of a training run.

  python -m train.eval --workdir=runs/demo [--split=test] [--checkpoint=best]
      [--test_clips=5 --test_yaws=-0.5,0.5 --output=FILE]

Reads WORKDIR/config.json and the checkpoint (``latest`` by default, ``best``
by eval_split accuracy, or a step number), evaluates the whole split (the last
batch padded and masked) and writes ``WORKDIR/eval_results.json`` (for the
config's test split) or ``WORKDIR/eval_results_<split>.json`` (other splits),
with ``confusion_matrix[_<split>].png`` beside it.

  python -m train.eval --pretrained=NAME [--manual_dir=DIR] [--data_dir=DIR]
      [--split=SPLIT] [--output=FILE]

evaluates a model of ``eleatt_jax.pretrained`` instead, on the data set of its
card (built in ``--data_dir`` from ``--manual_dir`` on first use; N-UCLA needs
the folder of its JSON files), and prints the accuracy beside the card's.

``--test_clips`` and ``--test_yaws`` evaluate the same parameters with
another test-time averaging than the run's config (``data.test_clips``,
``data.test_yaws``): averaging is evaluation only, so its effect is measured
on the very checkpoint without training again.
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
  flags.DEFINE_integer(
      'test_clips',
      None,
      "Temporal samplings averaged (default: the config's data.test_clips).",
  )
  flags.DEFINE_list(
      'test_yaws',
      None,
      'Rotations (rad) about the vertical axis averaged besides the'
      " unrotated one, e.g. -0.5,0.5; 'none' for none (default: the"
      " config's data.test_yaws).",
  )
  flags.DEFINE_string(
      'pretrained', None, 'A model of eleatt_jax.pretrained (not --workdir).'
  )
  flags.DEFINE_string(
      'manual_dir', None, "--pretrained: the data set's source files."
  )
  flags.DEFINE_string('data_dir', None, '--pretrained: the tfds data_dir.')
  flags.mark_flags_as_mutual_exclusive(['workdir', 'pretrained'], required=True)


def evaluate_pretrained(
    name: str,
    split: str | None = None,
    manual_dir: str | None = None,
    data_dir: str | None = None,
    output: str | None = None,
) -> dict:
  """Evaluates pretrained model ``name`` on ``split`` (default: the card's
  test split, validation for N-UCLA); returns the results (written to
  ``output`` as JSON if given)."""
  # pylint: disable=g-import-not-at-top
  import json
  from train import pretrained_run
  from train import workdir as workdir_lib
  # pylint: enable=g-import-not-at-top
  run = pretrained_run.load(name, manual_dir, data_dir)
  split = split or run.config.data.test_split
  res = pretrained_run.evaluate(run, split)
  stated = (
      pretrained_run.pretrained.card(name)['accuracy'].get(split) or {}
  ).get('value')
  out = {'pretrained': name, 'split': split, **res}
  if output:
    workdir_lib.write_atomically(output, json.dumps(out, indent=2))
  print(
      f'{name} on {run.info.name} {split}: accuracy '
      f'{100 * res["accuracy"]:.2f}% on {res["num_examples"]} examples, '
      f'loss {res["loss"]:.4f}'
      + (f' (its card: {100 * stated:.2f}%)' if stated is not None else '')
      + (f'.\nWrote {output}.' if output else '.'),
      flush=True,
  )
  return out


def evaluate_checkpoint(
    workdir: str,
    split: str | None = None,
    checkpoint: str = 'latest',
    output: str | None = None,
    test_clips: int | None = None,
    test_yaws: tuple[float, ...] | None = None,
) -> dict:
  """Evaluates a checkpoint of the run in `workdir`; returns the results.

  An unreadable checkpoint is reported in one line and the next one (older
  for 'latest', next best for 'best') is evaluated instead. `test_clips` and
  `test_yaws` (None: the run's) set the test-time averaging.
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
  if test_clips is not None:
    config.data.test_clips = int(test_clips)
  if test_yaws is not None:
    config.data.test_yaws = tuple(float(a) for a in test_yaws)
  from train import config_lib  # pylint: disable=g-import-not-at-top

  config_lib.validate(config)
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
  if FLAGS.pretrained:
    evaluate_pretrained(
        FLAGS.pretrained,
        FLAGS.split,
        FLAGS.manual_dir,
        FLAGS.data_dir,
        FLAGS.output,
    )
    return
  yaws = FLAGS.test_yaws
  if yaws is not None:
    yaws = () if yaws == ['none'] else tuple(float(a) for a in yaws)
  evaluate_checkpoint(
      FLAGS.workdir,
      FLAGS.split,
      FLAGS.checkpoint,
      FLAGS.output,
      test_clips=FLAGS.test_clips,
      test_yaws=yaws,
  )


if __name__ == '__main__':
  define_flags()
  cli.run_absl(main)
