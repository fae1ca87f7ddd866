"""Tests of train/: configs, the pure step, data parallelism, evaluation, the
loop's outputs, resume, eval and attention tools (tiny models, few steps)."""

from __future__ import annotations

import ast
import functools
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train_support as sup
from train import config_lib
from train import input_pipeline
from train import main as train_main
from train import parallel
from train import state as state_lib
from train import steps
from train import train
from train.configs import default

CONFIG_DIR = sup.REPO / 'train' / 'configs'
EXPERIMENTS = sup.config_names()
ISSUE_CONFIGS = {
    'smnist',
    'smnist_pixel',
    'pmnist',
    'ntu:xsub60',
    'ntu:xview60',
    'ntu:xsub120',
    'ntu:xset120',
    'nucla',
    'nucla_dev',
    'sysu',
    'dhg14',
    'dhg28',
    'shrec14',
    'shrec28',
    'npz',
}


# Module-scoped fixtures shared by the train test modules.
from train_support import _jax_cache, data_dir, npz_dir  # noqa: E402, F401  # pylint: disable=unused-import

# ---------------------------------------------------------------- configs --


def test_every_issue_config_exists():
  assert ISSUE_CONFIGS <= set(EXPERIMENTS), ISSUE_CONFIGS - set(EXPERIMENTS)


def _load(name):
  return sup.load_config(name)


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_config_is_valid_and_only_changes_values(name):
  config = _load(name)
  config_lib.validate(config)  # no unknown or missing key, valid enums
  assert config.model.cell == 'eleatt_gru'
  schema = config_lib.valid_keys()
  assert sorted(config_lib.flatten(config)) == schema


def test_every_default_field_has_a_comment():
  """Each assignment in default.py has a comment on its line or above it."""
  path = CONFIG_DIR / 'default.py'
  lines = path.read_text().splitlines()
  tree = ast.parse(path.read_text())
  uncommented = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Assign):
      target = node.targets[-1]
      if isinstance(target, ast.Attribute):
        line = lines[node.lineno - 1]
        above = lines[node.lineno - 2].strip()
        if 'ConfigDict()' in line:
          continue
        if '#' not in line and not above.startswith('#'):
          uncommented.append(line.strip())
  assert not uncommented, uncommented
  assert len(config_lib.valid_keys()) > 40


def test_unknown_key_from_the_command_line_lists_valid_keys():
  msg = train_main.unknown_config_keys(
      ['main', '--config=train/configs/smnist.py', '--config.model.cel=gru']
  )
  assert "Unknown config key 'model.cel'" in msg
  assert "did you mean 'model.cell'" in msg
  for key in ('cell', 'hidden_sizes', 'gate_layers', 'dropout_rate'):
    assert key in msg
  msg = train_main.unknown_config_keys(
      ['main', '--config', 'train/configs/npz.py', '--config.bogus=1']
  )
  assert "'bogus'" in msg and 'batch_size' in msg and 'data' in msg
  assert (
      train_main.unknown_config_keys([
          'main',
          '--config=train/configs/npz.py',
          '--config.model.cell=gru',
          '--config.data.path=/x',
      ])
      is None
  )
  # And the real CLI exits with it (status 2) before importing jax.
  proc = sup.run([
      sys.executable,
      '-m',
      'train.main',
      '--config=train/configs/smnist.py',
      '--workdir=/tmp/x',
      '--config.optim.learnig_rate=1',
  ])
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "Unknown config key 'optim.learnig_rate'" in proc.stderr
  assert 'learning_rate' in proc.stderr and 'grad_clip_norm' in proc.stderr


def test_unknown_key_in_python_lists_valid_keys():
  config = default.get_config()
  config.model.celll = 'gru'
  with pytest.raises(
      KeyError, match=r"'model.celll'.*model.cell, .*model.dropout_rate"
  ):
    config_lib.validate(config)
  config = default.get_config()
  config.parallel = 'pjit'
  with pytest.raises(ValueError, match='config.parallel must be one of'):
    config_lib.validate(config)


def test_the_schema_takes_the_model_vocabulary_of_the_library():
  """model.cell, model.readout and model.gate_layers are checked against
  eleatt_jax.classifier, the words the classifier itself takes."""
  from eleatt_jax import classifier  # pylint: disable=g-import-not-at-top

  for key, words in (
      ('cell', classifier.CELLS),
      ('readout', classifier.READOUTS),
      ('gate_layers', ('all', 'none', '2')),
  ):
    for word in words:
      config = default.get_config()
      setattr(config.model, key, word)
      config_lib.validate(config)
    config = default.get_config()
    setattr(config.model, key, 'some')
    with pytest.raises(config_lib.ConfigError, match=f'config.model.{key}'):
      config_lib.validate(config)
  config = default.get_config()
  config.model.gate_layers = '1'  # as a command line gives it
  assert state_lib.create_model(config, 3).gate_layers == 1


# ------------------------------------------------------------- optimizer --


def test_schedules():
  config = default.get_config()
  config.optim.learning_rate = 1.0
  config.optim.schedule = 'cosine'
  f = state_lib.make_schedule(config, 100)
  assert (
      float(f(0)) == pytest.approx(1.0)
      and float(f(100)) == pytest.approx(0.0, abs=1e-6)
      and float(f(50)) == pytest.approx(0.5, abs=1e-6)
  )
  config.optim.schedule = 'step'
  config.optim.decay_steps = (10, 20)
  f = state_lib.make_schedule(config, 100)
  assert [float(f(s)) for s in (9, 10, 19, 20)] == pytest.approx(
      [1.0, 0.1, 0.1, 0.01]
  )
  config.optim.schedule = 'constant'
  config.optim.warmup_steps = 4
  f = state_lib.make_schedule(config, 100)
  assert [float(f(s)) for s in (0, 2, 4, 50)] == pytest.approx(
      [0.0, 0.5, 1.0, 1.0]
  )


@pytest.mark.parametrize(
    'optimizer,weight_decay',
    [('adam', 0.0), ('adam', 0.1), ('adamw', 0.1), ('sgd', 0.1)],
)
def test_optimizers_and_weight_decay(optimizer, weight_decay):
  config = default.get_config()
  config.optim.optimizer = optimizer
  config.optim.weight_decay = weight_decay
  config.optim.learning_rate = 0.1
  config.optim.schedule = 'constant'
  tx = state_lib.make_optimizer(config, 10)
  params = {'w': jnp.ones((3,))}
  state = tx.init(params)
  zero = {'w': jnp.zeros((3,))}
  updates, _ = tx.update(zero, state, params)
  moved = float(jnp.abs(updates['w']).max())
  # With zero gradients only weight decay moves the parameters (towards 0).
  if weight_decay:
    assert moved > 0 and float(updates['w'][0]) < 0
  else:
    assert moved == 0


# ------------------------------------------------------------------ steps --


def _setup(mode, dropout=0.0, batch=8, seed=0, num_classes=3, plateau=False):
  config = default.get_config()
  config.model.hidden_sizes = (6,)
  config.model.dropout_rate = dropout
  config.optim.learning_rate = 0.05
  config.optim.schedule = 'plateau' if plateau else 'constant'
  config.optim.plateau_patience = 1
  info = input_pipeline.DatasetInfo(
      name='toy',
      num_classes=num_classes,
      class_names=('a', 'b', 'c'),
      input_dim=3,
      num_frames=7,
      splits={'train': 64},
      data_dir='',
  )
  exp = state_lib.build(config, info, 10)
  par = parallel.create(mode, exp, num_classes)
  rng = np.random.default_rng(seed)
  batches = []
  for _ in range(3):
    batches.append({
        'x': rng.standard_normal((batch, 7, 3)).astype(np.float32),
        'length': rng.integers(2, 8, batch).astype(np.int32),
        'label': rng.integers(0, num_classes, batch).astype(np.int32),
        'mask': np.ones(batch, bool),
        'index': np.arange(batch, dtype=np.int32),
    })
  return config, exp.model, exp.tx, exp.schedule, exp.init_fn, par, batches


def test_train_step_is_pure_uses_fold_in_and_clips():
  config, model, tx, schedule, init_fn, _, batches = _setup('jit', 0.3)
  step = jax.jit(
      functools.partial(steps.train_step, model=model, tx=tx, schedule=schedule)
  )
  state = jax.jit(init_fn)()
  rng = jax.random.key(1)
  batch = {k: jnp.asarray(v) for k, v in batches[0].items()}
  s1, m1 = step(state, batch, rng)
  s2, m2 = step(state, batch, rng)  # same inputs, same outputs
  chex.assert_trees_all_equal(s1, s2)
  chex.assert_trees_all_equal(m1, m2)
  assert int(s1.step) == 1 and set(m1) == {
      'loss',
      'accuracy',
      'grad_norm',
      'learning_rate',
      'params_finite',
  }
  assert bool(m1['params_finite'])
  # The dropout key is fold_in(rng, step): at step 1 the same parameters and
  # batch give another dropout mask, hence another loss.
  _, m3 = step(state.replace(step=s1.step), batch, rng)
  assert float(m3['loss']) != float(m1['loss'])
  # Clipping by global norm (1.0): inputs x100 still move each parameter by
  # at most ~lr on Adam's first step, and the reported norm is pre-clipping.
  big = dict(batch, x=batch['x'] * 100.0)
  new, metrics = step(state, big, rng)
  delta = jax.tree_util.tree_map(
      lambda a, b: jnp.max(jnp.abs(a - b)), new.params, state.params
  )
  assert max(float(d) for d in jax.tree_util.tree_leaves(delta)) <= 0.05 * 1.01
  assert np.isfinite(float(metrics['grad_norm']))
  assert float(config.optim.grad_clip_norm) == 1.0


def test_jit_sharded_and_single_device_agree():
  """Two devices by jit+NamedSharding and one device: the same parameters.

  With dropout: the masks of the global batch do not depend on its sharding.

  (pmap against jit: `test_pmap_run_matches_jit_run`.)"""
  assert jax.device_count() == 2, 'conftest sets two host devices'
  results = {}
  for mode in ('jit', 'single'):
    _, model, tx, schedule, init_fn, par, batches = _setup('jit', 0.3)
    rng = jax.random.key(0)
    if mode == 'single':
      step = jax.jit(
          functools.partial(
              steps.train_step, model=model, tx=tx, schedule=schedule
          )
      )
      state = jax.jit(init_fn)()
      for b in batches:
        state, metrics = step(
            state,
            {k: jnp.asarray(v) for k, v in b.items() if k != 'index'},
            rng,
        )
    else:
      state = par.device_state(
          jax.jit(init_fn, out_shardings=par.state_sharding())()
      )
      drng = par.device_rng(rng)
      for b in batches:
        state, metrics = par.train_step(state, par.device_batch(b), drng)
      if mode == 'jit':  # the batch really is split over the two devices
        sharded = par.device_batch(batches[0])['x']
        assert len(sharded.addressable_shards) == 2
        assert sharded.addressable_shards[0].data.shape[0] == 4
      state = par.host_state(state)
    results[mode] = (jax.device_get(state.params), float(metrics['loss']))
  for mode in ('single',):
    chex.assert_trees_all_close(
        results[mode][0], results['jit'][0], atol=2e-6, rtol=2e-5
    )
    assert results[mode][1] == pytest.approx(results['jit'][1], rel=1e-5)


def test_plateau_reduces_learning_rate_after_patience():
  _, _, _, _, init_fn, par, batches = _setup('jit', plateau=True)
  state = jax.jit(init_fn, out_shardings=par.state_sharding())()
  scales = []
  for loss in (1.0, 0.5, 0.6, 0.7, 0.8):
    state = par.plateau_update(state, loss)
    scales.append(float(state.plateau.scale))
  # patience 1: a second evaluation without improvement multiplies by 0.1.
  assert scales[:2] == [1.0, 1.0] and scales[-1] < 1.0
  # The step applies the scale: the lr metric shows it.
  _, metrics = par.train_step(
      state, par.device_batch(batches[0]), par.device_rng(jax.random.key(0))
  )
  assert float(metrics['learning_rate']) == pytest.approx(0.05 * scales[-1])


def test_evaluate_counts_each_example_once(npz_dir, data_dir):
  """Padding rows of the last batch are masked; the sums match NumPy."""
  config = sup.tiny_config(npz_dir, data_dir)
  builder, info = input_pipeline.prepare_dataset(config, str(data_dir))
  n = info.splits['test']
  assert n % config.eval_batch_size != 0  # 21 = 3 * 6 + 3
  exp = state_lib.build(config, info, 6)
  par = parallel.create('jit', exp, info.num_classes)
  state = jax.jit(exp.init_fn, out_shardings=par.state_sharding())()
  res = steps.evaluate(
      par,
      state,
      input_pipeline.eval_batches(config, builder, info, 'test'),
      info.num_classes,
  )
  assert res['num_examples'] == n
  # Reference: all examples in one unpadded batch, no masking.
  rows = [
      input_pipeline.get_example(config, builder, info, 'test', i)[0]
      for i in range(n)
  ]
  whole = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
  logits = jax.jit(exp.model.apply)(
      {'params': state.params}, whole['x'], whole['length']
  )
  pred = np.asarray(logits).argmax(-1)
  correct = int((pred == whole['label']).sum())
  confusion = np.zeros((3, 3), int)
  np.add.at(confusion, (whole['label'], pred), 1)
  assert res['accuracy'] == pytest.approx(correct / n)
  np.testing.assert_array_equal(res['confusion_matrix'], confusion)
  assert res['per_class_accuracy'] == pytest.approx(
      [confusion[c, c] / confusion[c].sum() for c in range(3)]
  )
  # Two processes' shards of each global batch cover the split exactly once.
  seen = []
  for p in range(2):
    for b in input_pipeline.eval_batches(
        config, builder, info, 'test', process_index=p, process_count=2
    ):
      assert len(b['mask']) == 3
      seen += b['index'][b['mask']].tolist()
  assert sorted(seen) == list(range(n))


def test_training_batches_do_not_depend_on_process_count(npz_dir, data_dir):
  config = sup.tiny_config(npz_dir, data_dir)
  builder, info = input_pipeline.prepare_dataset(config, str(data_dir))
  one = input_pipeline.train_iterator(
      config, builder, info, process_index=0, process_count=1
  )
  halves = [
      input_pipeline.train_iterator(
          config, builder, info, process_index=p, process_count=2
      )
      for p in range(2)
  ]
  for _ in range(8):  # more than an epoch (48 examples / 8)
    whole = next(one)
    parts = [next(h) for h in halves]
    for k in ('x', 'label', 'length', 'index'):
      np.testing.assert_array_equal(
          whole[k], np.concatenate([parts[0][k], parts[1][k]])
      )


def test_train_per_class_reads_a_seeded_subset_of_each_class(npz_dir, data_dir):
  """data.train_per_class=k: training reads k examples of each class only."""
  config = sup.tiny_config(
      npz_dir, data_dir, **{'data.train_per_class': 3, 'batch_size': 3}
  )
  builder, info = input_pipeline.prepare_dataset(config, str(data_dir))
  source = builder.as_data_source('train')
  labels = np.array([int(source[i]['label']) for i in range(len(source))])
  chosen = np.array(info.train_indices)
  assert len(source) > 9 and np.bincount(labels[chosen]).tolist() == [3, 3, 3]
  assert info.num_train('train') == 9
  assert state_lib.num_train_steps(config, info)[1] == 3  # 9 / 3 per epoch
  # The draw follows the seed (the same subset for the same seed).
  assert input_pipeline.prepare_dataset(config, str(data_dir))[1] == info
  config.seed = 1
  assert input_pipeline.prepare_dataset(config, str(data_dir))[1] != info
  config.seed = 0
  # An epoch of training batches is the subset, each example once.
  it = input_pipeline.train_iterator(config, builder, info)
  batches = [next(it) for _ in range(3)]
  positions = np.concatenate([b['index'] for b in batches])  # in the subset
  assert sorted(positions.tolist()) == list(range(9))
  for b in batches:
    for row, position in enumerate(b['index']):
      example = input_pipeline.get_example(
          config, builder, info, 'train', int(chosen[position])
      )[0]
      np.testing.assert_array_equal(b['x'][row], example['x'][0])
      assert b['label'][row] == example['label'][0]
  # Off by default: the whole split.
  whole = sup.tiny_config(npz_dir, data_dir)
  assert whole.data.train_per_class == 0
  _, info = input_pipeline.prepare_dataset(whole, str(data_dir))
  assert info.train_indices == () and info.num_train('train') == len(source)


# ------------------------------------------------------------ end to end --


def test_train_and_evaluate_writes_everything(
    npz_dir, data_dir, tmp_path, capsys
):
  workdir = tmp_path / 'run'
  config = sup.tiny_config(
      npz_dir,
      data_dir,
      tensorboard=True,
      plots=True,
      num_train_steps=8,
      keep_best=1,
  )
  out = train.train_and_evaluate(config, str(workdir))
  log = capsys.readouterr().out
  # Where, parameter table, progress lines, evaluations, final line.
  assert log.startswith(
      f'Workdir: {workdir}\nData:    sequence_npz in '
      f'{data_dir} (built there on first use; from '
      '--config.data.data_dir)\n'
  ), log[:500]
  assert 'total' in log and 'layer_0/cell/gate/input_kernel' in log
  assert 'step 2/8  loss' in log and 'examples/s' in log
  assert 'step 3: validation accuracy' in log and 'Final test accuracy' in log
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert {
      'step',
      'split',
      'accuracy',
      'per_class_accuracy',
      'num_examples',
      'config',
  } <= set(results)
  assert results['step'] == 8 and results['split'] == 'test'
  assert results['num_examples'] == 21
  assert len(results['per_class_accuracy']) == sup.NUM_CLASSES
  assert results['config']['model']['hidden_sizes'] == [8]
  assert np.sum(results['confusion_matrix']) == 21
  assert out['accuracy'] == results['accuracy']
  lines = [
      json.loads(l)
      for l in (workdir / 'metrics.jsonl').read_text().splitlines()
  ]
  train_steps = [l['step'] for l in lines if 'train/loss' in l]
  assert train_steps == [2, 3, 4, 6, 8]  # and before each evaluation
  assert [l['step'] for l in lines if 'validation/accuracy' in l] == [
      2,
      3,
      4,
      6,
      8,
  ]
  assert all(np.isfinite(l['train/loss']) for l in lines if 'train/loss' in l)
  assert list((workdir / 'tensorboard').glob('events.out.tfevents.*'))
  for png in ('curves.png', 'confusion_matrix.png'):
    assert (workdir / png).read_bytes()[:4] == b'\x89PNG'
  # Best 1 by validation accuracy plus the latest: at most two checkpoints remain,
  # and the latest (8) is one of them.
  steps = sorted(
      int(p.name)
      for p in (workdir / 'checkpoints').iterdir()
      if p.name.isdigit()
  )
  assert 8 in steps and len(steps) <= 2
  best = max(
      (l['validation/accuracy'], l['step'])
      for l in lines
      if 'validation/accuracy' in l and l['step'] % 2 == 0
  )
  assert best[1] in steps

  # Resume: the same workdir with more steps continues from step 8.
  config.unlock()
  config.num_train_steps = 10
  train.train_and_evaluate(config, str(workdir))
  log = capsys.readouterr().out
  assert 'Resuming from checkpoint step 8' in log
  assert 'step 10/10' in log and 'step 2/10' not in log
  params, step = sup.final_params(workdir)
  assert step == 10

  # train.eval re-evaluates (the same numbers as the end of training) and
  # train.attention plots a_t of one example.
  from train import attention  # pylint: disable=g-import-not-at-top
  from train import eval as train_eval  # pylint: disable=g-import-not-at-top

  final = json.loads((workdir / 'eval_results.json').read_text())
  again = train_eval.evaluate_checkpoint(str(workdir))
  assert again['accuracy'] == final['accuracy'] and again['step'] == 10
  assert again['confusion_matrix'] == final['confusion_matrix']
  train_eval.evaluate_checkpoint(str(workdir), split='train')
  other = json.loads((workdir / 'eval_results_train.json').read_text())
  assert other['split'] == 'train' and other['num_examples'] == 42
  png = attention.plot_attention(str(workdir), index=4)
  assert pathlib.Path(png).read_bytes()[:4] == b'\x89PNG'
  values = np.load(os.path.splitext(png)[0] + '.npz')
  a = values['attention']
  assert a.shape == (int(values['x'].shape[0]), 3)
  assert np.all((a >= 0) & (a <= 1))
  with pytest.raises(IndexError, match='out of range.*21 examples'):
    attention.plot_attention(str(workdir), index=21)


def test_pmap_run_matches_jit_run(npz_dir, data_dir, tmp_path):
  """--config.parallel=pmap trains the same parameters as the jit default."""
  params = {}
  for mode in ('jit', 'pmap'):
    config = sup.tiny_config(
        npz_dir, data_dir, parallel=mode, **{'model.dropout_rate': 0.0}
    )
    train.train_and_evaluate(config, str(tmp_path / mode))
    params[mode], _ = sup.final_params(tmp_path / mode)
  chex.assert_trees_all_close(
      params['pmap'], params['jit'], atol=2e-6, rtol=2e-5
  )


def test_gate_less_model_has_no_attention():
  from train import attention  # pylint: disable=g-import-not-at-top
  from eleatt_jax import StackedRNNClassifier  # pylint: disable=g-import-not-at-top

  x = jnp.ones((1, 4, 3))
  lengths = jnp.array([4])
  batch = {'x': x, 'length': lengths}
  gated = StackedRNNClassifier(3, hidden_sizes=(4, 4), gate_layers=1)
  params = jax.jit(gated.init)(jax.random.key(0), x, lengths)['params']
  a, logits = attention.gate_values(gated, params, batch, 0)
  assert a.shape == (1, 4, 3) and logits.shape == (1, 3)
  with pytest.raises(
      ValueError,
      match=r'Layer 1 has no EleAtt gate.*'
      r"layers with a gate: \['layer_0'\]",
  ):
    attention.gate_values(gated, params, batch, 1)
  plain = StackedRNNClassifier(3, cell='gru', hidden_sizes=(4,))
  params = jax.jit(plain.init)(jax.random.key(0), x, lengths)['params']
  with pytest.raises(ValueError, match="no EleAtt gate \\(cell='gru'"):
    attention.gate_values(plain, params, batch, 0)


def test_reporting_bar_lines_table_and_resumed_metrics(tmp_path, capsys):
  from train import reporting  # pylint: disable=g-import-not-at-top

  metrics = {
      'loss': 0.5,
      'accuracy': 0.75,
      'learning_rate': 0.01,
      'examples_per_sec': 1234.0,
  }
  bar = reporting.Progress('bar', total=10, initial=0, primary=True)
  bar.tick(3)
  bar.update(4, metrics)
  bar.message('an evaluation')
  bar.close()
  out = capsys.readouterr().out
  assert '4/10' in out and 'loss=0.5000' in out and 'acc=0.750' in out
  assert 'ex_s=1234' in out and 'an evaluation' in out
  lines = reporting.Progress('lines', total=10, initial=0, primary=True)
  lines.update(4, metrics)
  # Without a terminal the lines tell the elapsed time and an ETA.
  assert re.fullmatch(
      r'step 4/10  loss 0.5000  accuracy 0.7500  lr 0.01  1234 examples/s  '
      r'elapsed 0:00:\d\d  eta 0:\d\d:\d\d\n',
      capsys.readouterr().out,
  )
  assert lines.timing(4, now=lines.start + 40.0) == (
      'elapsed 0:00:40  eta 0:01:00'
  )
  reporting.Progress('lines', 10, 0, primary=False).update(4, metrics)
  assert capsys.readouterr().out == ''  # only process 0 prints
  table = reporting.param_table(
      {'dense': {'kernel': np.zeros((3, 4)), 'bias': np.zeros(4)}}
  )
  assert 'dense/kernel' in table and '3x4' in table and table.endswith('16')
  # A resumed run drops the lines the interrupted run wrote after its last
  # checkpoint (and a line cut by the crash).
  w = reporting.MetricWriter(str(tmp_path), True, tensorboard=False)
  for step in (1, 2, 3, 4):
    w.write(step, {'train/loss': 1.0 / step})
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 5, "train/lo')
  reporting.MetricWriter(str(tmp_path), True, False, truncate_after=2)
  steps = [
      r['step'] for r in reporting.read_metrics(str(tmp_path / 'metrics.jsonl'))
  ]
  assert steps == [1, 2]
  png = reporting.plot_curves(
      str(tmp_path / 'metrics.jsonl'), str(tmp_path / 'curves.png')
  )
  assert pathlib.Path(png).read_bytes()[:4] == b'\x89PNG'


@pytest.mark.parametrize('mode', ['row', 'pixel', 'pmnist'])
def test_attention_puts_mnist_sequences_back_into_images(mode):
  from eleatt_jax import viz  # pylint: disable=g-import-not-at-top
  from eleatt_jax.datasets import sequential_mnist  # pylint: disable=g-import-not-at-top
  from train import attention  # pylint: disable=g-import-not-at-top

  image = np.random.default_rng(0).integers(0, 256, (1, 28, 28), np.uint8)
  seq = sequential_mnist.to_sequence(image, mode)[0]
  np.testing.assert_allclose(
      viz.mnist_image(seq, mode), image[0] / 255.0, rtol=1e-6
  )
  assert attention._mnist_mode(f'sequential_mnist/mnist5k_{mode}') == mode


def test_missing_data_errors_say_what_to_do(tmp_path):
  from train.configs import npz, nucla  # pylint: disable=g-import-not-at-top

  config = nucla.get_config()
  config.data.data_dir = str(tmp_path / 'tfds')
  with pytest.raises(
      FileNotFoundError,
      match=r'nucla/xview is not built in .*'
      r'give --config.data.manual_dir=DIR',
  ):
    input_pipeline.prepare_dataset(config, str(tmp_path))
  config.data.manual_dir = str(tmp_path / 'nowhere')
  with pytest.raises(FileNotFoundError, match='nowhere.*is not a directory'):
    input_pipeline.prepare_dataset(config, str(tmp_path))
  config.data.manual_dir = ''
  config.data.name = 'nukla/xview'
  with pytest.raises(
      ValueError,
      match=r'not a known dataset \(did you mean '
      r"'nucla'\?\); the eleatt_jax.datasets builders are",
  ):
    input_pipeline.prepare_dataset(config, str(tmp_path))
  config = npz.get_config()
  with pytest.raises(ValueError, match='needs --config.data.path=DIR'):
    input_pipeline.prepare_dataset(config, str(tmp_path))


def test_demo_says_where_it_builds_its_data_and_honours_data_dir(
    tmp_path, monkeypatch
):
  """`make demo` builds the digits into tfds' default data_dir unless
  DATA_DIR=D: the trainer's first lines say where (without training)."""
  from train.configs import smnist  # pylint: disable=g-import-not-at-top

  config = smnist.get_config()
  monkeypatch.setenv('HOME', str(tmp_path))
  monkeypatch.delenv('TFDS_DATA_DIR', raising=False)
  default_line = (
      f'Data:    sequential_mnist/mnist5k_row in {tmp_path}/tensorflow_datasets'
      ' (built there on first use; the tfds default, $TFDS_DATA_DIR or '
      '~/tensorflow_datasets; another: --config.data.data_dir=D, or make '
      'demo DATA_DIR=D)'
  )
  assert input_pipeline.data_location(config, 'runs/demo') == default_line
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path / 'tfds_env'))
  assert f'in {tmp_path}/tfds_env (built' in input_pipeline.data_location(
      config, 'runs/demo'
  )
  config.data.data_dir = str(tmp_path / 'd')
  assert input_pipeline.data_location(config, 'runs/demo') == (
      f'Data:    sequential_mnist/mnist5k_row in {tmp_path}/d (built there on '
      'first use; from --config.data.data_dir)'
  )
  # The make variable reaches the trainer (a dry run: nothing is built).
  if shutil.which('make') is None:
    pytest.skip('no make')
  make = subprocess.run(
      ['make', '-n', '-o', '.venv/.installed-stamp', 'demo', 'DATA_DIR=/d d'],
      cwd=sup.REPO,
      capture_output=True,
      text=True,
      check=False,
  )
  assert make.returncode == 0, make.stderr
  assert (
      "--workdir=runs/demo \\\n  '--config.data.data_dir=/d d'" in make.stdout
  ), make.stdout


def test_bad_split_and_batch_size_errors_name_the_key(
    npz_dir, data_dir, tmp_path
):
  config = sup.tiny_config(npz_dir, data_dir, **{'data.eval_split': 'valid'})
  with pytest.raises(
      ValueError,
      match=r"config.data.eval_split='valid'.*"
      r"\['test', 'train', 'validation'\]",
  ):
    input_pipeline.prepare_dataset(config, str(data_dir))
  config = sup.tiny_config(npz_dir, data_dir, batch_size=64)
  builder, info = input_pipeline.prepare_dataset(config, str(data_dir))
  with pytest.raises(ValueError, match='batch_size=64 is larger than the 42'):
    input_pipeline.train_iterator(config, builder, info)
  config = sup.tiny_config(npz_dir, data_dir, batch_size=7)
  with pytest.raises(
      ValueError,
      match=r'batch_size=7 gives 7 rows, not ' r'divisible by the 2 devices',
  ):
    train.train_and_evaluate(config, str(tmp_path))
