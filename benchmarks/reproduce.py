"""Reproduction studies: gated against plain cells on real data, same budget.

  python -m benchmarks.reproduce --study nucla_dev [--seeds 3] [--quick]
      [--jobs 2] [--workdir runs/reproduce] [--docs docs]
      [--override KEY=VALUE ...]

Studies (`STUDIES`):

* ``nucla_dev``: N-UCLA development protocol (view 1 trains, view 2 tests),
  ``rnn eleatt_rnn lstm eleatt_lstm gru eleatt_gru``, with and without
  augmentation.
* ``nucla_gate_layers``: EleAtt-GRU with the gate on the first 0..3 of 3
  layers (the paper's ablation), on the same protocol.
* ``smnist``: row-wise (28 x 28) and pixel-wise (784 x 1) sequential MNIST
  from the 5,000 embedded digits, ``gru eleatt_gru lstm eleatt_lstm``.
* ``basicmotions``: UEA BasicMotions as sequence-npz, ``gru eleatt_gru``.

Within a study every variant runs the same experiment config with the same
budget; a variant changes only the keys it names (the cell, the gate layers,
the augmentation). Each run is ``train.train_and_evaluate`` in
``WORKDIR/STUDY/VARIANT/seed_N`` (a finished run is read back, not re-run);
its checkpoint is the last one (fixed schedule), so the test split is touched
once, at the end. ``--jobs N`` trains N runs at a time in separate processes
(small recurrent models use a CPU core poorly; two runs on two cores take
about the time of one). Prints one JSON line per run and one per variant (mean and
std over seeds of the test accuracy, wall time, parameters). With ``--docs``
it also writes ``DOCS/results/STUDY/*.json`` (each run's eval_results.json
without its confusion matrix), ``DOCS/results/STUDY.md`` (the table) and
``DOCS/img/study_STUDY.png`` (the bar chart).

Real data comes from ``$ELEATT_SHARED_DATA`` (default ``../shared/data``
beside the repository); a study whose data is absent stops with a message
saying where it looked.
"""

from __future__ import annotations

import ast
import concurrent.futures
import dataclasses
import datetime
import importlib
import json
import multiprocessing
import os
import pathlib
import platform
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eleatt_jax import cli

REPO = pathlib.Path(__file__).resolve().parent.parent

CELLS = ('rnn', 'eleatt_rnn', 'lstm', 'eleatt_lstm', 'gru', 'eleatt_gru')


@dataclasses.dataclass(frozen=True)
class Study:
  """One comparison.

  Attributes:
    config: Module of `train.configs` every variant starts from.
    variants: Variant name -> the config keys it changes.
    budget: Keys set for every variant (steps, evaluation cadence).
    quick: Keys that shrink the budget for ``--quick``.
    data: Sub-folder of the shared data that the study reads, or None.
    data_keys: Config keys set to paths below that folder.
    paper: Variant -> the paper's accuracy (%) where it has one, and on what.
  """

  config: str
  variants: Mapping[str, Mapping[str, Any]]
  budget: Mapping[str, Any]
  quick: Mapping[str, Any]
  data: str | None = None
  data_keys: Mapping[str, str] = dataclasses.field(default_factory=dict)
  paper: Mapping[str, str] = dataclasses.field(default_factory=dict)


_FIXED = {
    'final_checkpoint': 'latest',
    'plots': False,
    'tensorboard': False,
    'progress': 'none',
    'keep_best': 1,
}

_NUCLA_PAPER = (
    '90.7 (full protocol, views 1+2 -> 3, EleAtt-GRU aug.; not '
    'the development protocol)'
)

STUDIES: dict[str, Study] = {
    'nucla_dev': Study(
        config='nucla_dev',
        variants={
            f'{cell}{suffix}': {'model.cell': cell, 'data.augment': aug}
            for cell in CELLS
            for suffix, aug in (('', True), ('_noaug', False))
        },
        budget={},  # the config's own budget: what nucla_dev.py ships
        quick={'num_train_steps': 60, 'eval_every_steps': 30},
        data='nucla',
        data_keys={'data.manual_dir': 'nucla'},
        paper={'eleatt_gru': _NUCLA_PAPER},
    ),
    'nucla_gate_layers': Study(
        config='nucla_dev',
        variants={
            f'gate_first_{k}': {
                'model.cell': 'eleatt_gru',
                'model.gate_layers': str(k),
            }
            for k in range(4)
        },
        budget={},
        quick={'num_train_steps': 60, 'eval_every_steps': 30},
        data='nucla',
        data_keys={'data.manual_dir': 'nucla'},
    ),
    'smnist': Study(
        config='smnist',
        variants={
            f'{mode}_{cell}': {
                'data.name': f'sequential_mnist/mnist5k_{mode}',
                'model.cell': cell,
            }
            for mode in ('row', 'pixel')
            for cell in ('gru', 'eleatt_gru', 'lstm', 'eleatt_lstm')
        },
        budget={
            'model.hidden_sizes': (64,),
            'batch_size': 64,
            'num_train_steps': 300,
            'eval_every_steps': 100,
            'log_every_steps': 100,
            'eval_batch_size': 500,
        },
        quick={'num_train_steps': 30, 'eval_every_steps': 30},
    ),
    'basicmotions': Study(
        config='npz',
        variants={cell: {'model.cell': cell} for cell in ('gru', 'eleatt_gru')},
        budget={
            'optim.schedule': 'cosine',
            'num_train_steps': 300,
            'eval_every_steps': 50,
            'batch_size': 16,
            'eval_batch_size': 40,
        },
        quick={'num_train_steps': 30, 'eval_every_steps': 30},
        data='basicmotions',
        data_keys={'data.path': 'basicmotions'},
    ),
}


def shared_data_dir() -> pathlib.Path:
  return pathlib.Path(
      os.environ.get('ELEATT_SHARED_DATA', REPO.parent / 'shared' / 'data')
  )


def parse_override(text: str) -> tuple[str, Any]:
  """``'model.hidden_sizes=(4,)'`` -> ``('model.hidden_sizes', (4,))``."""
  key, sep, value = text.partition('=')
  if not sep or not key:
    raise ValueError(
        f'--override {text!r}: expected KEY=VALUE, e.g. num_train_steps=10'
    )
  try:
    return key, ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key, value  # a plain string such as adamw


def set_keys(config, values: Mapping[str, Any]) -> None:
  """Sets dotted keys; an unknown key is an error naming it."""
  for key, value in values.items():
    *path, leaf = key.split('.')
    node = config
    for part in path:
      node = node[part]
    if leaf not in node:
      raise KeyError(
          f'Unknown config key {key!r} (see train/configs/default.py).'
      )
    node[leaf] = value


def make_config(
    study: Study,
    variant: str,
    seed: int,
    *,
    quick: bool,
    data_dir: str,
    overrides: Mapping[str, Any],
):
  """The experiment config of one run."""
  config = importlib.import_module(f'train.configs.{study.config}').get_config()
  values = dict(_FIXED, **study.budget)
  if quick:
    values.update(study.quick)
  values.update(study.variants[variant])
  values['seed'] = seed
  values['data.data_dir'] = data_dir
  if study.data is not None:
    root = shared_data_dir()
    for key, sub in study.data_keys.items():
      values[key] = os.fspath(root / sub)
  values.update(overrides)
  set_keys(config, values)
  return config


def dataset_builders(
    study: Study, runs: Sequence[tuple[str, int]], **kwargs
) -> list[tuple[str, int]]:
  """The first run of each dataset (its `data.name`) among `runs`, in order."""
  first = {}
  for variant, seed in runs:
    config = make_config(study, variant, seed, **kwargs)
    first.setdefault(config.data.name, (variant, seed))
  return list(first.values())


def count_params(config, workdir: str) -> int:
  """Parameters of the run's model (shapes only, nothing is computed)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from train import input_pipeline  # pylint: disable=g-import-not-at-top
  from train import state  # pylint: disable=g-import-not-at-top

  _, info = input_pipeline.prepare_dataset(config, workdir)
  model = state.create_model(config, info.num_classes)
  x = jnp.zeros((1, info.num_frames, info.input_dim), jnp.float32)
  shapes = jax.eval_shape(
      model.init, jax.random.key(0), x, jnp.ones((1,), jnp.int32)
  )
  return int(sum(np.prod(s.shape) for s in jax.tree_util.tree_leaves(shapes)))


def run_one(
    name: str,
    variant: str,
    seed: int,
    workdir: pathlib.Path,
    *,
    quick: bool,
    data_dir: str,
    overrides: Mapping[str, Any],
) -> dict:
  """Trains (or reads back) one run of study `name`; returns its row."""
  from train import train  # pylint: disable=g-import-not-at-top

  config = make_config(
      STUDIES[name],
      variant,
      seed,
      quick=quick,
      data_dir=data_dir,
      overrides=overrides,
  )
  results_path = workdir / 'eval_results.json'
  timing_path = workdir / 'wall_seconds.json'
  if results_path.exists() and timing_path.exists():
    results = json.loads(results_path.read_text())
    seconds = json.loads(timing_path.read_text())['seconds']
  else:
    start = time.perf_counter()
    train.train_and_evaluate(config, os.fspath(workdir))
    seconds = time.perf_counter() - start
    timing_path.write_text(json.dumps({'seconds': seconds}))
    results = json.loads(results_path.read_text())
  return {
      'variant': variant,
      'seed': seed,
      'accuracy': results['accuracy'],
      'split': results['split'],
      'step': results['step'],
      'seconds': round(seconds, 1),
      'params': count_params(config, os.fspath(workdir)),
      'results': results,
  }


def summarize(rows: Sequence[Mapping[str, Any]], study: Study) -> list[dict]:
  """Mean and std (over seeds) per variant, in the study's order."""
  out = []
  for variant in study.variants:
    mine = [r for r in rows if r['variant'] == variant]
    if not mine:
      continue
    acc = np.array([r['accuracy'] for r in mine])
    out.append({
        'variant': variant,
        'seeds': len(mine),
        'mean': float(acc.mean()),
        'std': float(acc.std(ddof=0)),
        'accuracies': [float(a) for a in acc],
        'seconds': float(np.mean([r['seconds'] for r in mine])),
        'params': mine[0]['params'],
        'paper': study.paper.get(variant, ''),
    })
  return out


def markdown_table(
    name: str, summary: Sequence[Mapping[str, Any]], command: str
) -> str:
  """The study's table for docs/RESULTS.md."""
  split = 'test split of the study'
  lines = [
      f'### {name}',
      '',
      (
          f'Command: `{command}`; {datetime.date.today().isoformat()}, '
          f'{platform.machine()} CPU, {os.cpu_count()} cores. Accuracy on the '
          f'{split}, mean +- std over seeds (population std).'
      ),
      '',
      '| variant | accuracy % | seeds | params | s / run | paper |',
      '|---|---|---|---|---|---|',
  ]
  for s in summary:
    lines.append(
        f"| {s['variant']} | {100 * s['mean']:.1f} +- {100 * s['std']:.1f} | "
        f"{s['seeds']} | {s['params']:,} | {s['seconds']:.0f} | "
        f"{s['paper']} |"
    )
  return '\n'.join(lines) + '\n'


def bar_chart(name: str, summary: Sequence[Mapping[str, Any]], path: str):
  """Mean accuracy per variant with std error bars, as a PNG."""
  from eleatt_jax import viz  # pylint: disable=g-import-not-at-top
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  names = [s['variant'] for s in summary]
  fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(names) + 1.5), 3.2))
  colors = [
      'tab:orange' if 'eleatt' in n or 'gate_first' in n else 'tab:blue'
      for n in names
  ]
  ax.bar(
      range(len(names)),
      [100 * s['mean'] for s in summary],
      yerr=[100 * s['std'] for s in summary],
      color=colors,
      capsize=3,
  )
  ax.set_xticks(range(len(names)), names, rotation=45, ha='right')
  ax.set_ylabel('accuracy (%)')
  ax.set_title(f'{name} (mean +- std over seeds)')
  low = min(100 * (s['mean'] - s['std']) for s in summary)
  ax.set_ylim(max(0.0, low - 10), 100)
  fig.tight_layout()
  viz.save_figure(fig, path)
  plt.close(fig)


def write_docs(name: str, rows, summary, docs: pathlib.Path, command: str):
  """Per-run JSON, the markdown table and the chart under `docs`."""
  out = docs / 'results' / name
  out.mkdir(parents=True, exist_ok=True)
  for r in rows:
    small = {k: v for k, v in r['results'].items() if k != 'confusion_matrix'}
    small['wall_seconds'] = r['seconds']
    (out / f"{r['variant']}_seed{r['seed']}.json").write_text(
        json.dumps(small, indent=1)
    )
  (docs / 'results' / f'{name}.md').write_text(
      markdown_table(name, summary, command)
  )
  (docs / 'img').mkdir(parents=True, exist_ok=True)
  bar_chart(name, summary, os.fspath(docs / 'img' / f'study_{name}.png'))


def run_study(
    name: str,
    *,
    seeds: int = 3,
    quick: bool = False,
    workdir: str = 'runs/reproduce',
    data_dir: str = '',
    overrides: Mapping[str, Any] | None = None,
    variants: Sequence[str] | None = None,
    jobs: int = 1,
    docs: str | None = None,
    command: str = '',
) -> list[dict]:
  """Runs every variant and seed of study `name`; returns the summary."""
  if name not in STUDIES:
    raise ValueError(f'--study {name!r}: the studies are {sorted(STUDIES)}.')
  study = STUDIES[name]
  if study.data is not None and not (shared_data_dir() / study.data).is_dir():
    raise FileNotFoundError(
        f'Study {name} reads {shared_data_dir() / study.data}, which does not '
        'exist: set ELEATT_SHARED_DATA to the folder that holds '
        f'{study.data}/.'
    )
  unknown = set(variants or ()) - set(study.variants)
  if unknown:
    raise ValueError(
        f'--variants {sorted(unknown)}: {name} has {list(study.variants)}.'
    )
  root = pathlib.Path(workdir).expanduser().resolve() / name
  data_dir = data_dir or os.fspath(root / 'tfds')
  runs = [
      (variant, seed)
      for variant in variants or study.variants
      for seed in range(seeds)
  ]
  kwargs = dict(quick=quick, data_dir=data_dir, overrides=dict(overrides or {}))
  if jobs > 1:
    # The first run of each dataset builds it, alone; the others then only
    # read it (two processes building one tfds dataset collide on its folder).
    builders = dataset_builders(study, runs, **kwargs)
    done = {
        run: run_one(name, *run, root / run[0] / f'seed_{run[1]}', **kwargs)
        for run in builders
    }
    context = multiprocessing.get_context('spawn')  # no forked jax state
    with concurrent.futures.ProcessPoolExecutor(jobs, context) as pool:
      futures = {
          (v, s): pool.submit(
              run_one, name, v, s, root / v / f'seed_{s}', **kwargs
          )
          for v, s in runs
          if (v, s) not in done
      }
      rows = [done[r] if r in done else futures[r].result() for r in runs]
  else:
    rows = [
        run_one(name, v, s, root / v / f'seed_{s}', **kwargs) for v, s in runs
    ]
  for row in rows:
    print(
        json.dumps({k: v for k, v in row.items() if k != 'results'}), flush=True
    )
  summary = summarize(rows, study)
  for s in summary:
    print(json.dumps({'study': name, **s}), flush=True)
  (root / 'summary.json').write_text(json.dumps(summary, indent=1))
  if docs:
    write_docs(name, rows, summary, pathlib.Path(docs), command)
  return summary


def main(argv: Sequence[str] | None = None) -> list[dict]:
  parser = cli.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--study', required=True, choices=sorted(STUDIES))
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument(
      '--quick',
      action='store_true',
      help='a short budget, for a look in minutes',
  )
  parser.add_argument(
      '--jobs',
      type=int,
      default=1,
      help='runs trained at a time, in separate processes',
  )
  parser.add_argument('--workdir', default='runs/reproduce')
  parser.add_argument(
      '--data_dir',
      default='',
      help='tfds data_dir (default WORKDIR/STUDY/tfds)',
  )
  parser.add_argument(
      '--variants', default='', help='comma-separated subset of the variants'
  )
  parser.add_argument(
      '--docs',
      default='',
      help='write results, table and chart under this folder',
  )
  parser.add_argument(
      '--override',
      action='append',
      default=[],
      help='KEY=VALUE config override for every run',
  )
  args = parser.parse_args(argv)
  if args.seeds < 1 or args.jobs < 1:
    parser.error(
        f'--seeds and --jobs must be >= 1, got {args.seeds} and {args.jobs}'
    )
  command = 'python -m benchmarks.reproduce ' + ' '.join(
      argv if argv is not None else __import__('sys').argv[1:]
  )
  return run_study(
      args.study,
      seeds=args.seeds,
      quick=args.quick,
      workdir=args.workdir,
      data_dir=args.data_dir,
      overrides=dict(parse_override(o) for o in args.override),
      variants=[v for v in args.variants.split(',') if v] or None,
      jobs=args.jobs,
      docs=args.docs or None,
      command=command,
  )


if __name__ == '__main__':
  cli.run_plain(main)
