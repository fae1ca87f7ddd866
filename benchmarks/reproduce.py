"""Reproduction studies: gated against plain cells on real data, same budget.

  python -m benchmarks.reproduce --study nucla_dev [--seeds 3] [--quick]
      [--protocol two_way] [--jobs 2] [--workdir runs/reproduce]
      [--docs docs] [--override KEY=VALUE ...]

Studies (`STUDIES`):

* ``nucla_dev``: N-UCLA development protocol (view 1 trains, view 2 tests),
  ``rnn eleatt_rnn lstm eleatt_lstm gru eleatt_gru``, with and without
  augmentation, and ``rnn_matched``: the plain sRNN widened to the
  EleAtt-sRNN's parameter count (`Study.matched`), which separates capacity
  from attention.
* ``nucla_gate_layers``: EleAtt-GRU with the gate on the first 0..3 of 3
  layers (the paper's ablation), on the same protocol.
* ``smnist``: row-wise (28 x 28) and pixel-wise (784 x 1) sequential MNIST
  from the 5,000 embedded digits, ``gru eleatt_gru lstm eleatt_lstm``.
* ``basicmotions``: UEA BasicMotions as sequence-npz, ``gru eleatt_gru``.
* ``small_nucla`` and ``small_basicmotions``: small data with the
  sequence-npz defaults (npz.py's network and budget): N-UCLA with 5
  sequences of each action of view 1 (``data.train_per_class``, a seeded draw
  per seed; view 2 tests) and UEA BasicMotions (36 training sequences).
  ``gru eleatt_gru``; the gate's bias starting near pass-through
  (``model.gate_bias_init=3``), AdamW weight decay, both; ``rnn eleatt_rnn
  rnn_matched``; on N-UCLA also dropout 0.5 and batches of 16 (3x the
  steps).
* ``moving_digits``: videos of moving / turning embedded MNIST digits, a
  per-frame CNN trained end to end with ``gru eleatt_gru``.
* ``nucla_tune``: the N-UCLA recipe candidates (input streams, moving
  average of the weights, label smoothing, AdamW, gate on 2 layers,
  bidirectional layers) against the shipped recipe (``base``).
* ``smnist_row_long``: row-wise sequential MNIST to a plateau of the
  validation curve (8x the steps of ``smnist``), all six cells;
  ``smnist_pixel_long``: pixel-wise, 5x the steps, ``gru eleatt_gru``.

Protocols (``--protocol``, the N-UCLA studies): ``one_way`` (the default)
runs the study's config as it is (``nucla_dev``: view 1 trains, view 2
tests); ``two_way`` runs every variant and seed in both directions (view 1 ->
view 2 with ``nucla/dev``, view 2 -> view 1 with ``nucla/dev_reverse``; each
direction's validation split is subject 9 of its own training view) and
reports, per variant, the mean +- std over seeds of the two directions'
mean accuracy, beside each direction's own mean +- std.

Within a study every variant runs the same experiment config with the same
budget; a variant changes only the keys it names (the cell, the gate layers,
the augmentation). Each run is ``train.train_and_evaluate`` in
``WORKDIR/STUDY/VARIANT/seed_N`` (a finished run is read back, not re-run);
its checkpoint is the last one (fixed schedule), so the test split is touched
once, at the end. ``--jobs N`` trains N runs at a time in separate processes
(small recurrent models use a CPU core poorly; two runs on two cores take
about the time of one). Prints one JSON line per run and one per variant (mean and
std over seeds of the test accuracy, of the validation accuracy of the
evaluated checkpoint, which is what decisions may use, wall time,
parameters; for a matched variant its widths and both parameter counts). With ``--docs``
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
    directions: The ``two_way`` protocol's directions: name -> the keys that
      set it up (empty: the study runs ``one_way`` only).
    matched: Variant -> the variant whose parameter count it matches: its
      layers are all widened to the one width that brings its parameters
      closest to that variant's (computed from the run's config and data,
      `matched_hidden_sizes`), e.g. a plain sRNN as large as the EleAtt-sRNN.
    pairs: ``(variant, baseline)`` pairs whose difference is reported per
      seed (the same seed: the same data order and random draws): the
      paired gain, whose spread is smaller than the variants' own.
    curves: Whether the study reports its validation curves (a chart of
      them, and how much the last quarter of the evaluations gained over
      the quarter before: near zero on a plateau).
  """

  config: str
  variants: Mapping[str, Mapping[str, Any]]
  budget: Mapping[str, Any]
  quick: Mapping[str, Any]
  data: str | None = None
  data_keys: Mapping[str, str] = dataclasses.field(default_factory=dict)
  paper: Mapping[str, str] = dataclasses.field(default_factory=dict)
  directions: Mapping[str, Mapping[str, Any]] = dataclasses.field(
      default_factory=dict
  )
  matched: Mapping[str, str] = dataclasses.field(default_factory=dict)
  pairs: Sequence[tuple[str, str]] = ()
  curves: bool = False


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

PROTOCOLS = ('one_way', 'two_way')

# The two directions of the N-UCLA development protocol (views 1 and 2; view 3
# is never touched).
_NUCLA_DIRECTIONS = {
    'view1_to_2': {'data.name': 'nucla/dev'},
    'view2_to_1': {'data.name': 'nucla/dev_reverse'},
}


def _plus_keys() -> dict[str, Any]:
  """The keys that `train/configs/_skeleton.apply_plus_recipe` changes."""
  from train.configs import _skeleton  # pylint: disable=g-import-not-at-top
  from train.configs import default  # pylint: disable=g-import-not-at-top

  def flat(config):
    return {
        f'{section}.{k}': v
        for section in ('data', 'model', 'optim')
        for k, v in config[section].items()
    }

  before = flat(default.get_config())
  after = flat(_skeleton.apply_plus_recipe(default.get_config()))
  return {k: v for k, v in after.items() if before[k] != v}


# Candidates of the N-UCLA recipe, each against `base` (the shipped recipe),
# and `plus`, the plus recipe (nucla_plus.py) on the development protocol.
_NUCLA_TUNE_VARIANTS = {
    'base': {},
    'velocity': {'data.streams': 'position+velocity'},
    'bone': {'data.streams': 'position+bone'},
    'velocity_bone': {'data.streams': 'position+velocity+bone'},
    'ema': {'optim.ema_decay': 0.99},
    'temporal_crop': {'data.temporal_crop': 0.8},
    'label_smoothing': {'optim.label_smoothing': 0.1},
    'adamw': {'optim.optimizer': 'adamw', 'optim.weight_decay': 0.05},
    'gate_first_2': {'model.gate_layers': '2'},
    # Beyond the paper's network (a candidate for the plus recipe only): each
    # layer reads the sequence both ways, 2 x 100 features a step.
    'velocity_bidirectional': {
        'data.streams': 'position+velocity',
        'model.bidirectional': True,
    },
    'test_averaging': {
        'data.test_clips': 5,
        'data.test_yaws': (-1.0, -0.5, 0.5, 1.0),
    },
    'plus': _plus_keys(),
}

# Small data: EleAtt-GRU against GRU, and what might close the gap of the
# gate on few sequences: its bias starting near pass-through (3: a = 0.95),
# decoupled weight decay, both; the sRNN with and without the gate and a
# plain sRNN as large as the gated one.
_SMALL_DATA_VARIANTS = {
    'gru': {'model.cell': 'gru'},
    'eleatt_gru': {'model.cell': 'eleatt_gru'},
    'eleatt_gru_bias3': {
        'model.cell': 'eleatt_gru',
        'model.gate_bias_init': 3.0,
    },
    'gru_wd': {
        'model.cell': 'gru',
        'optim.optimizer': 'adamw',
        'optim.weight_decay': 0.05,
    },
    'eleatt_gru_wd': {
        'model.cell': 'eleatt_gru',
        'optim.optimizer': 'adamw',
        'optim.weight_decay': 0.05,
    },
    'eleatt_gru_bias3_wd': {
        'model.cell': 'eleatt_gru',
        'model.gate_bias_init': 3.0,
        'optim.optimizer': 'adamw',
        'optim.weight_decay': 0.05,
    },
    'rnn': {'model.cell': 'rnn'},
    'eleatt_rnn': {'model.cell': 'eleatt_rnn'},
    'rnn_matched': {'model.cell': 'rnn'},
}

# On N-UCLA also: more dropout (0.5 instead of npz.py's 0.2), and batches of
# 16 instead of 32 (3 steps an epoch instead of 1: 300 steps, not 100).
_SMALL_NUCLA_VARIANTS = {
    **_SMALL_DATA_VARIANTS,
    'gru_drop5': {'model.cell': 'gru', 'model.dropout_rate': 0.5},
    'eleatt_gru_drop5': {'model.cell': 'eleatt_gru', 'model.dropout_rate': 0.5},
    'gru_b16': {'model.cell': 'gru', 'batch_size': 16},
    'eleatt_gru_b16': {'model.cell': 'eleatt_gru', 'batch_size': 16},
}

# The sequence-npz defaults (npz.py: 2 x 100, dropout 0.2, batch 32, cosine
# over 100 epochs), on N-UCLA as a small set: 5 sequences of each action of
# view 1 (50; a seeded draw per seed), no augmentation; validation: subject 9
# of view 1; test: view 2.
_SMALL_NUCLA_BUDGET = {
    'data.train_per_class': 5,
    'data.augment': False,
    'model.hidden_sizes': (100, 100),
    'model.dropout_rate': 0.2,
    'batch_size': 32,
    'num_epochs': 100,
    'eval_every_steps': 10,
}

# Sequential MNIST: one layer of 64, batches of 64, validation every 100 steps.
_SMNIST_BUDGET = {
    'model.hidden_sizes': (64,),
    'batch_size': 64,
    'num_train_steps': 300,
    'eval_every_steps': 100,
    'log_every_steps': 100,
    'eval_batch_size': 500,
}

STUDIES: dict[str, Study] = {
    'nucla_dev': Study(
        config='nucla_dev',
        variants={
            **{
                f'{cell}{suffix}': {'model.cell': cell, 'data.augment': aug}
                for cell in CELLS
                for suffix, aug in (('', True), ('_noaug', False))
            },
            # A plain sRNN as large as the EleAtt-sRNN: capacity, not
            # attention, if it closes the gap.
            'rnn_matched': {'model.cell': 'rnn', 'data.augment': True},
        },
        budget={},  # the config's own budget: what nucla_dev.py ships
        quick={'num_train_steps': 60, 'eval_every_steps': 30},
        data='nucla',
        data_keys={'data.manual_dir': 'nucla'},
        paper={'eleatt_gru': _NUCLA_PAPER},
        directions=_NUCLA_DIRECTIONS,
        matched={'rnn_matched': 'eleatt_rnn'},
        pairs=(
            *(
                (f'eleatt_{cell}{suffix}', f'{cell}{suffix}')
                for cell in ('rnn', 'lstm', 'gru')
                for suffix in ('', '_noaug')
            ),
            ('eleatt_rnn', 'rnn_matched'),
        ),
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
        directions=_NUCLA_DIRECTIONS,
    ),
    'nucla_tune': Study(
        config='nucla_dev',
        variants=_NUCLA_TUNE_VARIANTS,
        budget={},
        quick={'num_train_steps': 60, 'eval_every_steps': 30},
        data='nucla',
        data_keys={'data.manual_dir': 'nucla'},
        directions=_NUCLA_DIRECTIONS,
        pairs=tuple((v, 'base') for v in _NUCLA_TUNE_VARIANTS if v != 'base'),
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
        budget=_SMNIST_BUDGET,
        quick={'num_train_steps': 30, 'eval_every_steps': 30},
    ),
    # Row-wise to a plateau of the validation curve: the same network as
    # `smnist`, 8x the steps (43 epochs of the 3,600 training digits).
    'smnist_row_long': Study(
        config='smnist',
        variants={
            f'row_{cell}': {
                'data.name': 'sequential_mnist/mnist5k_row',
                'model.cell': cell,
            }
            for cell in CELLS
        },
        budget={**_SMNIST_BUDGET, 'num_train_steps': 2400},
        quick={'num_train_steps': 30, 'eval_every_steps': 10},
        pairs=tuple(
            (f'row_eleatt_{c}', f'row_{c}') for c in ('rnn', 'lstm', 'gru')
        ),
        curves=True,
    ),
    # Pixel-wise (784 steps of one pixel) as far as a CPU budget goes: 5x the
    # steps of `smnist`; not a plateau (its curves say how far from one).
    'smnist_pixel_long': Study(
        config='smnist',
        variants={
            f'pixel_{cell}': {
                'data.name': 'sequential_mnist/mnist5k_pixel',
                'model.cell': cell,
            }
            for cell in ('gru', 'eleatt_gru')
        },
        budget={**_SMNIST_BUDGET, 'num_train_steps': 1500},
        quick={'num_train_steps': 20, 'eval_every_steps': 10},
        pairs=(('pixel_eleatt_gru', 'pixel_gru'),),
        curves=True,
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
    'small_nucla': Study(
        config='nucla_dev',
        variants=_SMALL_NUCLA_VARIANTS,
        budget=_SMALL_NUCLA_BUDGET,
        quick={'num_train_steps': 20, 'eval_every_steps': 10},
        data='nucla',
        data_keys={'data.manual_dir': 'nucla'},
        matched={'rnn_matched': 'eleatt_rnn'},
    ),
    'small_basicmotions': Study(
        config='npz',
        variants=_SMALL_DATA_VARIANTS,
        budget={'eval_batch_size': 40},  # npz.py's own budget otherwise
        quick={'num_train_steps': 20, 'eval_every_steps': 10},
        data='basicmotions',
        data_keys={'data.path': 'basicmotions'},
        matched={'rnn_matched': 'eleatt_rnn'},
    ),
    'moving_digits': Study(
        config='moving_digits',
        variants={cell: {'model.cell': cell} for cell in ('gru', 'eleatt_gru')},
        budget={},  # the config's own budget: what moving_digits.py ships
        quick={'num_train_steps': 30, 'eval_every_steps': 30},
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
    direction: str | None = None,
):
  """The experiment config of one run (`direction`: of ``two_way``)."""
  config = importlib.import_module(f'train.configs.{study.config}').get_config()
  values = dict(_FIXED, **study.budget)
  if quick:
    values.update(study.quick)
  if direction is not None:
    values.update(study.directions[direction])
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
    study: Study, runs: Sequence[tuple[str, str | None, int]], **kwargs
) -> list[tuple[str, str | None, int]]:
  """The first run of each dataset (its `data.name`) among `runs`, in order.

  A run is ``(variant, direction or None, seed)``.
  """
  first = {}
  for variant, direction, seed in runs:
    config = make_config(study, variant, seed, direction=direction, **kwargs)
    first.setdefault(config.data.name, (variant, direction, seed))
  return list(first.values())


def count_params(config, workdir: str, info=None) -> int:
  """Parameters of the run's model (shapes only, nothing is computed).

  `info`: the `DatasetInfo` of ``config.data`` if known (else prepared here).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from train import input_pipeline  # pylint: disable=g-import-not-at-top
  from train import state  # pylint: disable=g-import-not-at-top

  if info is None:
    _, info = input_pipeline.prepare_dataset(config, workdir)
  model = state.create_model(config, info.num_classes, info.frame_shape)
  x = jnp.zeros((1, info.num_frames, info.input_dim), jnp.float32)
  shapes = jax.eval_shape(
      model.init, jax.random.key(0), x, jnp.ones((1,), jnp.int32)
  )
  return int(sum(np.prod(s.shape) for s in jax.tree_util.tree_leaves(shapes)))


def matched_hidden_sizes(
    config, reference, workdir: str
) -> tuple[tuple[int, ...], int, int]:
  """Widths that give `config`'s model as many parameters as `reference`'s.

  Every layer of `config` gets the same width w, the one whose parameter
  count is closest to the reference model's (the count grows with w, so a
  bisection finds it); both models are counted on `config`'s data.

  Returns:
    ``(hidden_sizes, its parameters, the reference's parameters)``.
  """
  from train import input_pipeline  # pylint: disable=g-import-not-at-top

  _, info = input_pipeline.prepare_dataset(config, workdir)
  target = count_params(reference, workdir, info)
  layers = len(config.model.hidden_sizes)

  def params(width: int) -> int:
    widened = config.copy_and_resolve_references()
    widened.model.hidden_sizes = (width,) * layers
    return count_params(widened, workdir, info)

  low, high = 1, 2
  while params(high) < target:
    low, high = high, 2 * high
  while high - low > 1:  # params(low) < target <= params(high)
    mid = (low + high) // 2
    if params(mid) < target:
      low = mid
    else:
      high = mid
  width = min((low, high), key=lambda w: (abs(params(w) - target), w))
  return (width,) * layers, params(width), target


def run_dir(
    root: pathlib.Path, variant: str, direction: str | None, seed: int
) -> pathlib.Path:
  """``ROOT/VARIANT[/DIRECTION]/seed_N``."""
  base = root / variant
  if direction is not None:
    base = base / direction
  return base / f'seed_{seed}'


def run_one(
    name: str,
    variant: str,
    direction: str | None,
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
      direction=direction,
  )
  matched = None
  study = STUDIES[name]
  if variant in study.matched:
    reference = make_config(
        study,
        study.matched[variant],
        seed,
        quick=quick,
        data_dir=data_dir,
        overrides=overrides,
        direction=direction,
    )
    sizes, params, target = matched_hidden_sizes(
        config, reference, os.fspath(workdir)
    )
    config.model.hidden_sizes = sizes
    matched = {
        'variant': study.matched[variant],
        'hidden_sizes': list(sizes),
        'params': params,
        'reference_params': target,
    }
    print(
        json.dumps({
            'study': name,
            'variant': variant,
            'seed': seed,
            'hidden_sizes': list(sizes),
            'params': params,
            'matched_to': study.matched[variant],
            'its_params': target,
        }),
        flush=True,
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
  row = {
      'variant': variant,
      'direction': direction,
      'seed': seed,
      'accuracy': results['accuracy'],
      # The validation accuracy of the evaluated checkpoint: what decisions
      # between variants may use.
      'validation': results['checkpoint'].get('selection_accuracy'),
      'split': results['split'],
      'step': results['step'],
      'seconds': round(seconds, 1),
      'params': count_params(config, os.fspath(workdir)),
      'results': results,
  }
  if matched is not None:
    row['matched'] = matched
  if study.curves:
    row['validation_curve'] = validation_curve(workdir, config.data.eval_split)
  return row


def validation_curve(workdir: pathlib.Path, split: str) -> list[list[float]]:
  """``[[step, accuracy], ...]`` of `split` from the run's metrics.jsonl."""
  key = f'{split}/accuracy'
  curve = {}
  with open(workdir / 'metrics.jsonl') as f:
    for line in f:
      record = json.loads(line)
      if key in record:
        curve[record['step']] = record[key]  # a resumed run's last word
  return [[step, curve[step]] for step in sorted(curve)]


def plateau_gain(curve: Sequence[Sequence[float]]) -> float:
  """Mean accuracy of the last quarter of a curve's evaluations minus that
  of the quarter before: near zero where training has reached a plateau."""
  values = np.array([a for _, a in curve])
  quarter = max(1, len(values) // 4)
  if len(values) < 2 * quarter:
    raise ValueError(f'{len(values)} evaluations: too few for two quarters.')
  return float(
      values[-quarter:].mean() - values[-2 * quarter : -quarter].mean()
  )


def summarize(rows: Sequence[Mapping[str, Any]], study: Study) -> list[dict]:
  """Mean and std (over seeds) per variant, in the study's order.

  With directions (``two_way``), a seed's accuracy is the mean of its
  directions' accuracies (a seed counts only when it has all of them), and
  ``directions`` holds each direction's own mean and std over seeds.
  """
  out = []
  for variant in study.variants:
    mine = [r for r in rows if r['variant'] == variant]
    if not mine:
      continue
    directions = sorted({r.get('direction') for r in mine}, key=str)
    by_seed: dict[int, list[float]] = {}
    for r in mine:
      by_seed.setdefault(r['seed'], []).append(r['accuracy'])
    seeds = sorted(s for s, a in by_seed.items() if len(a) == len(directions))
    acc = np.array([np.mean(by_seed[s]) for s in seeds])
    entry = {
        'variant': variant,
        'protocol': 'one_way' if directions == [None] else 'two_way',
        'seeds': len(seeds),
        'seed_ids': seeds,
        'mean': float(acc.mean()),
        'std': float(acc.std(ddof=0)),
        'accuracies': [float(a) for a in acc],
        'seconds': float(np.mean([r['seconds'] for r in mine])),
        'params': mine[0]['params'],
        'paper': study.paper.get(variant, ''),
    }
    validation = [
        r['validation'] for r in mine if r.get('validation') is not None
    ]
    if len(validation) == len(mine):
      # Over every run (and direction): the checkpoints' own selection split.
      entry['validation_mean'] = float(np.mean(validation))
      entry['validation_std'] = float(np.std(validation))
    if 'matched' in mine[0]:
      entry['matched'] = mine[0]['matched']
    if study.curves:
      curves = [r['validation_curve'] for r in mine]
      gains = [plateau_gain(c) for c in curves]
      entry['plateau_gain_mean'] = float(np.mean(gains))
      entry['plateau_gain_std'] = float(np.std(gains))
      steps = sorted(set.intersection(*({s for s, _ in c} for c in curves)))
      entry['curve'] = [
          [s, float(np.mean([dict(c)[s] for c in curves]))] for s in steps
      ]
    if directions != [None]:
      entry['directions'] = {}
      for d in directions:
        a = np.array([r['accuracy'] for r in mine if r['direction'] == d])
        entry['directions'][d] = {
            'mean': float(a.mean()),
            'std': float(a.std(ddof=0)),
            'accuracies': [float(v) for v in a],
        }
    out.append(entry)
  return out


def paired_gains(
    summary: Sequence[Mapping[str, Any]], study: Study
) -> list[dict]:
  """Per `study.pairs`: variant minus baseline, seed by seed (same seeds)."""
  by_name = {s['variant']: s for s in summary}
  out = []
  for variant, baseline in study.pairs:
    if variant not in by_name or baseline not in by_name:
      continue
    a = dict(zip(by_name[variant]['seed_ids'], by_name[variant]['accuracies']))
    b = dict(
        zip(by_name[baseline]['seed_ids'], by_name[baseline]['accuracies'])
    )
    seeds = sorted(set(a) & set(b))
    if not seeds:
      continue
    gains = np.array([a[s] - b[s] for s in seeds])
    out.append({
        'variant': variant,
        'baseline': baseline,
        'seeds': len(seeds),
        'gains': [float(g) for g in gains],
        'mean': float(gains.mean()),
        'std': float(gains.std(ddof=0)),
        'positive': int((gains > 0).sum()),
    })
  return out


def _percent(mean: float, std: float) -> str:
  return f'{100 * mean:.1f} +- {100 * std:.1f}'


def markdown_table(
    name: str,
    summary: Sequence[Mapping[str, Any]],
    command: str,
    gains: Sequence[Mapping[str, Any]] = (),
) -> str:
  """The study's table for docs/RESULTS.md (it names its protocol), and
  the table of its paired `gains` if any."""
  two_way = any(s.get('protocol') == 'two_way' for s in summary)
  directions = sorted({d for s in summary for d in s.get('directions', {})})
  if two_way:
    what = (
        'Protocol: two_way (each seed: the mean of its directions '
        f"{', '.join(directions)}; test split of each direction). Accuracy, "
        'mean +- std over seeds (population std)'
    )
  else:
    what = (
        'Protocol: one_way. Accuracy on the test split of the study, '
        'mean +- std over seeds (population std)'
    )
  header = '| variant | accuracy % | seeds |'
  rule = '|---|---|---|'
  for d in directions:
    header += f' {d} % |'
    rule += '---|'
  with_validation = all('validation_mean' in s for s in summary)
  if with_validation:
    header += ' validation % |'
    rule += '---|'
  with_plateau = all('plateau_gain_mean' in s for s in summary)
  if with_plateau:
    header += ' last-quarter gain (points) |'
    rule += '---|'
  lines = [
      f'### {name}',
      '',
      (
          f'Command: `{command}`; {datetime.date.today().isoformat()}, '
          f'{platform.machine()} CPU, {os.cpu_count()} cores. {what}.'
      ),
      '',
      header + ' params | s / run | paper |',
      rule + '---|---|---|',
  ]
  for s in summary:
    cells = [s['variant'], _percent(s['mean'], s['std']), str(s['seeds'])]
    for d in directions:
      d_sum = s.get('directions', {}).get(d)
      cells.append(_percent(d_sum['mean'], d_sum['std']) if d_sum else '')
    if with_validation:
      cells.append(_percent(s['validation_mean'], s['validation_std']))
    if with_plateau:
      cells.append(_percent(s['plateau_gain_mean'], s['plateau_gain_std']))
    cells += [f"{s['params']:,}", f"{s['seconds']:.0f}", s['paper']]
    lines.append('| ' + ' | '.join(cells) + ' |')
  notes = [
      f"{s['variant']}: hidden_sizes {tuple(m['hidden_sizes'])}, "
      f"{m['params']:,} parameters against {m['reference_params']:,} of "
      f"{m['variant']} (the width closest to its count)."
      for s in summary
      if (m := s.get('matched'))
  ]
  if with_validation:
    notes.append(
        'validation: accuracy on the selection split (data.eval_split) of '
        'the evaluated checkpoint, mean +- std over runs.'
    )
  if with_plateau:
    notes.append(
        'last-quarter gain: validation accuracy over the last quarter of the '
        'evaluations minus that over the quarter before, mean +- std over '
        'runs (near zero on a plateau).'
    )
  if notes:
    lines += [''] + notes
  if gains:
    lines += [
        '',
        (
            'Paired by seed (the same seed: the same data order and random'
            ' draws), in points:'
        ),
        '',
        '| variant - baseline | mean +- std | positive | per seed |',
        '|---|---|---|---|',
    ]
    for g in gains:
      per_seed = ', '.join(f'{100 * v:+.1f}' for v in g['gains'])
      lines.append(
          f"| {g['variant']} - {g['baseline']} | "
          f"{100 * g['mean']:+.1f} +- {100 * g['std']:.1f} | "
          f"{g['positive']} of {g['seeds']} | {per_seed} |"
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


def curve_chart(name: str, summary: Sequence[Mapping[str, Any]], path: str):
  """Validation accuracy against training step, mean over runs, as a PNG."""
  from eleatt_jax import viz  # pylint: disable=g-import-not-at-top
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(5.5, 3.4))
  # A gated variant and its plain one share a colour: solid is gated.
  plain = sorted({s['variant'].replace('eleatt_', '') for s in summary})
  for s in summary:
    steps, accuracy = zip(*s['curve'])
    ax.plot(
        steps,
        [100 * a for a in accuracy],
        label=s['variant'],
        color=f"C{plain.index(s['variant'].replace('eleatt_', ''))}",
        linestyle='-' if 'eleatt' in s['variant'] else '--',
    )
  ax.set_xlabel('training step')
  ax.set_ylabel('validation accuracy (%)')
  ax.set_title(f'{name} (mean over seeds)')
  ax.legend(fontsize='small')
  fig.tight_layout()
  viz.save_figure(fig, path)
  plt.close(fig)


def write_docs(
    name: str, rows, summary, docs: pathlib.Path, command: str, gains=()
):
  """Per-run JSON, the markdown tables and the charts under `docs`."""
  out = docs / 'results' / name
  out.mkdir(parents=True, exist_ok=True)
  for r in rows:
    small = {k: v for k, v in r['results'].items() if k != 'confusion_matrix'}
    small['wall_seconds'] = r['seconds']
    direction = f"_{r['direction']}" if r.get('direction') else ''
    (out / f"{r['variant']}{direction}_seed{r['seed']}.json").write_text(
        json.dumps(small, indent=1)
    )
  # A page of its own on the docs site (the table is also pasted, as a
  # section, into docs/RESULTS.md): an orphan page with a title.
  table = markdown_table(name, summary, command, gains).replace('### ', '# ', 1)
  (docs / 'results' / f'{name}.md').write_text(
      f'---\norphan: true\n---\n\n{table}'
  )
  (docs / 'img').mkdir(parents=True, exist_ok=True)
  bar_chart(name, summary, os.fspath(docs / 'img' / f'study_{name}.png'))
  if all('curve' in s for s in summary):
    curve_chart(
        name, summary, os.fspath(docs / 'img' / f'study_{name}_curves.png')
    )


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
    protocol: str = 'one_way',
) -> list[dict]:
  """Runs every variant and seed of study `name`; returns the summary.

  With ``protocol='two_way'`` every variant and seed runs in each of the
  study's directions (``WORKDIR/STUDY/VARIANT/DIRECTION/seed_N``), and the
  summary, the table and the chart are ``STUDY_two_way``'s.
  """
  if name not in STUDIES:
    raise ValueError(f'--study {name!r}: the studies are {sorted(STUDIES)}.')
  study = STUDIES[name]
  if protocol not in PROTOCOLS:
    raise ValueError(f'--protocol {protocol!r}: one of {PROTOCOLS}.')
  if protocol == 'two_way' and not study.directions:
    raise ValueError(
        f'--protocol two_way: study {name} has no directions (the N-UCLA '
        f'studies have: {sorted(n for n, s in STUDIES.items() if s.directions)}'
        ').'
    )
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
  directions = list(study.directions) if protocol == 'two_way' else [None]
  # Seed by seed: a queue stopped early leaves whole seeds (every variant),
  # which are what the paired comparisons need.
  runs = [
      (variant, direction, seed)
      for seed in range(seeds)
      for variant in variants or study.variants
      for direction in directions
  ]
  kwargs = dict(quick=quick, data_dir=data_dir, overrides=dict(overrides or {}))
  if jobs > 1:
    # The first run of each dataset builds it, alone; the others then only
    # read it (two processes building one tfds dataset collide on its folder).
    builders = dataset_builders(study, runs, **kwargs)
    done = {
        run: run_one(name, *run, run_dir(root, *run), **kwargs)
        for run in builders
    }
    context = multiprocessing.get_context('spawn')  # no forked jax state
    with concurrent.futures.ProcessPoolExecutor(jobs, context) as pool:
      futures = {
          run: pool.submit(run_one, name, *run, run_dir(root, *run), **kwargs)
          for run in runs
          if run not in done
      }
      rows = [done[r] if r in done else futures[r].result() for r in runs]
  else:
    rows = [run_one(name, *r, run_dir(root, *r), **kwargs) for r in runs]
  for row in rows:
    print(
        json.dumps({
            k: v
            for k, v in row.items()
            if k not in ('results', 'validation_curve')
        }),
        flush=True,
    )
  summary = summarize(rows, study)
  gains = paired_gains(summary, study)
  label = name if protocol == 'one_way' else f'{name}_{protocol}'
  for s in summary:
    print(
        json.dumps(
            {'study': label, **{k: v for k, v in s.items() if k != 'curve'}}
        ),
        flush=True,
    )
  for g in gains:
    print(json.dumps({'study': label, 'paired_gain': g}), flush=True)
  summary_name = (
      'summary.json' if protocol == 'one_way' else f'summary_{protocol}.json'
  )
  (root / summary_name).write_text(json.dumps(summary, indent=1))
  if docs:
    write_docs(label, rows, summary, pathlib.Path(docs), command, gains)
  return summary


def main(argv: Sequence[str] | None = None) -> list[dict]:
  parser = cli.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--study', required=True, choices=sorted(STUDIES))
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument(
      '--protocol',
      default='one_way',
      choices=PROTOCOLS,
      help=(
          'two_way: every run in both directions of the N-UCLA development'
          ' protocol (view 1 -> 2 and view 2 -> 1), their mean per seed'
      ),
  )
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
      protocol=args.protocol,
  )


if __name__ == '__main__':
  cli.run_plain(main)
