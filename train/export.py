r"""Exports a trained run to serialized StableHLO that runs with JAX alone.

  python -m train.export --workdir=runs/demo [--checkpoint=best] [--output=DIR]

Restores the checkpoint (``final`` by default, ``latest``, ``best`` by
eval_split accuracy, or a step) and writes ``WORKDIR/export/`` (or ``--output``):

* ``sequence.jax_exported``: ``(x <f32>[b, t, D], lengths <i32>[b]) ->
  logits [b, C]``, ``b`` and ``t`` symbolic;
* ``initialize_carry.jax_exported`` and ``step.jax_exported``: the streaming
  step, ``(carry, x_t [b, D]) -> (carry, logits_t, probabilities_t)``;
* ``step_valid.jax_exported``: the same with ``valid <bool>[b]``, for streams
  of different lengths stepped together (False: that stream stays as it was);
* ``model_card.json``: classes, input layout ``(T, D)``, the preprocessing
  settings of the config, the test accuracy of ``eval_results.json`` (if it
  was measured on the exported checkpoint), the checkpoint, versions, each
  file's signature, SHA-256 and shapes, and the card's own SHA-256.

By default the checkpoint is that of ``eval_results.json`` (the run's final
model: the latest or, with ``final_checkpoint='best'``, the best).

Then prints how to load it (``jax.export.deserialize``; no Flax, no eleatt_jax).
"""

from __future__ import annotations

import json
import os
import platform

from absl import flags

from eleatt_jax import cli

FLAGS = flags.FLAGS

# config.data keys that locate files on the training machine, not preprocessing.
_PATH_KEYS = ('data_dir', 'manual_dir', 'path', 'num_threads', 'prefetch')


def define_flags() -> None:
  flags.DEFINE_string('workdir', None, "The training run's --workdir.")
  flags.DEFINE_string(
      'checkpoint',
      'final',
      "'final' (the checkpoint of eval_results.json: the run's final model, "
      "as its final_checkpoint chose; else the latest), 'latest', 'best' or "
      'a step.',
  )
  flags.DEFINE_string(
      'output', None, 'Directory to write (default: WORKDIR/export).'
  )
  flags.mark_flag_as_required('workdir')


def usage(directory: str) -> str:
  """How to load an export directory, as printed after exporting."""
  return f"""To run it (JAX alone; no flax, no eleatt_jax):

  import json, jax, numpy as np
  d = {directory!r}
  load = lambda n: jax.export.deserialize(
      bytearray(open(f'{{d}}/{{n}}.jax_exported', 'rb').read()))
  card = json.load(open(f'{{d}}/model_card.json'))
  sequence, init, step = load('sequence'), load('initialize_carry'), load('step')
  logits = sequence.call(x, lengths)          # x <f32>[B, T, D], lengths <i32>[B]
  step_fn = jax.jit(step.call)                # jit: a bare .call is ~3x slower
  carry = init.call(x[:, 0])                  # streaming, frame by frame:
  carry, logits_t, probs_t = step_fn(carry, x[:, t])
  card['classes'][int(np.argmax(probs_t[0]))]
  # Streams of different lengths together: valid <bool>[B], False once ended.
  step_valid = jax.jit(load('step_valid').call)
  carry, logits_t, probs_t = step_valid(carry, x[:, t], valid)

With eleatt_jax installed, eleatt_jax.export.load_callables(d) checks the files
against the card and returns them jitted, step(carry, x_t, valid=None).

Or `python -m train.stream --workdir=WORKDIR` to replay a test sequence."""


def _final_results(workdir: str) -> dict | None:
  """The run's eval_results.json (None: the run has none)."""
  try:
    with open(os.path.join(workdir, 'eval_results.json')) as f:
      return json.load(f)
  except FileNotFoundError:
    return None


def export_run(
    workdir: str, checkpoint: str = 'final', output: str | None = None
) -> dict:
  """Exports a checkpoint of the run in ``workdir``; returns the model card.

  The card's ``accuracy`` is that of eval_results.json only if it was
  measured on the exported checkpoint; otherwise the card has none (a
  warning says how to measure it).
  """
  # pylint: disable=g-import-not-at-top
  import flax
  import jax
  import jaxlib
  import eleatt_jax
  from eleatt_jax import export as export_lib
  from train import checkpoints
  from train import reporting
  # pylint: enable=g-import-not-at-top
  workdir = os.path.abspath(os.path.expanduser(workdir))
  results = _final_results(workdir)
  if checkpoint == 'final':
    checkpoint = str(results['step']) if results else 'latest'
  run = checkpoints.load_run(workdir, checkpoint, log=reporting.warn)
  config, info = run.config, run.info
  output = output or os.path.join(workdir, 'export')
  functions = export_lib.export_classifier(
      run.model, {'params': jax.device_get(run.state.params)}, info.input_dim
  )
  data = json.loads(config.data.to_json_best_effort())
  card = {
      'dataset': info.name,
      'classes': list(info.class_names),
      'num_classes': info.num_classes,
      'input': {
          'layout': '[batch, time, D]',
          'T': info.num_frames,
          'D': info.input_dim,
          'dtype': 'float32',
          'note': 'right-padded; lengths <int32>[batch] in [1, time]',
      },
      'preprocessing': {k: v for k, v in data.items() if k not in _PATH_KEYS},
      'model': json.loads(config.model.to_json_best_effort()),
      'checkpoint': {
          'workdir': workdir,
          'step': run.step,
          'chosen_by': f'--checkpoint={checkpoint}',
          'selection_split': config.data.eval_split,
          'selection_accuracy': run.stored_accuracy,
      },
      'versions': {
          'jax': jax.__version__,
          'jaxlib': jaxlib.__version__,
          'flax': flax.__version__,
          'eleatt_jax': eleatt_jax.__version__,
          'python': platform.python_version(),
      },
  }
  res = results
  if res is not None and res.get('step') != run.step:
    reporting.warn(
        f'eval_results.json is of step {res.get("step")}, not of the '
        f'exported step {run.step}: the card has no accuracy (measure it with '
        f'python -m train.eval --workdir={workdir} --checkpoint={run.step}).'
    )
    res = None
  if res is not None:
    card['accuracy'] = {
        'split': res.get('split'),
        'value': res.get('accuracy'),
        'step': res.get('step'),
        'num_examples': res.get('num_examples'),
    }
  card = export_lib.save(functions, output, card)
  print(
      f'Exported {info.name} ({info.num_classes} classes, D={info.input_dim})'
      f' at step {run.step} to {output}/: '
      + ', '.join(sorted(card['artifacts']))
      + ' and model_card.json.\n'
      + usage(output),
      flush=True,
  )
  return card


def main(argv):
  from train import reporting  # pylint: disable=g-import-not-at-top

  reporting.start_command(argv)
  export_run(FLAGS.workdir, FLAGS.checkpoint, FLAGS.output)


if __name__ == '__main__':
  define_flags()
  cli.run_absl(main)
