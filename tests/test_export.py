"""eleatt_jax.export and python -m train.export: StableHLO that runs alone.

A tiny trained run is exported; a fresh subprocess that imports neither flax
nor eleatt_jax deserializes it and runs the sequence and step functions on
shapes other than the traced ones; its outputs equal the in-process model's.
Damaged or mismatched artifacts give clear errors.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train_support as sup
from train_support import _jax_cache, data_dir, npz_dir  # noqa: F401  # pylint: disable=unused-import

pytest.importorskip('flatbuffers', reason='jax.export serialization needs it')

from eleatt_jax import StackedRNNClassifier  # pylint: disable=g-import-not-at-top
from eleatt_jax import export as export_lib  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope='module')
def exported_run(npz_dir, data_dir, tmp_path_factory):
  from train import export as train_export  # pylint: disable=g-import-not-at-top
  from train import train  # pylint: disable=g-import-not-at-top

  workdir = tmp_path_factory.mktemp('run')
  config = sup.tiny_config(npz_dir, data_dir, keep_best=3)  # 2, 4 and 6
  train.train_and_evaluate(config, str(workdir))
  # The default checkpoint: that of eval_results.json (the final one).
  card = train_export.export_run(str(workdir))
  return workdir, card


@functools.cache
def in_process_model(workdir):
  from train import checkpoints  # pylint: disable=g-import-not-at-top

  run = checkpoints.load_run(str(workdir), 'latest')
  return run.model, {'params': run.state.params}


SUBPROCESS = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    d = sys.argv[1]
    load = lambda n: jax.export.deserialize(
        bytearray(open(f'{d}/{n}.jax_exported', 'rb').read()))
    inputs = np.load(sys.argv[2])
    x, lengths = inputs['x'], inputs['lengths']
    sequence, init, step = load('sequence'), load('initialize_carry'), load('step')
    logits = sequence.call(x, lengths)
    carry = init.call(x[:, 0])
    steps = []
    for t in range(x.shape[1]):
      carry, logits_t, probs_t = step.call(carry, x[:, t])
      steps.append(np.asarray(logits_t))
    # Streams of different lengths, stepped together.
    step_valid = jax.jit(load('step_valid').call)
    ends = inputs['ends']
    carry = init.call(x[:, 0])
    for t in range(x.shape[1]):
      carry, valid_logits, _ = step_valid(carry, x[:, t], t < ends)
    assert 'flax' not in sys.modules and 'eleatt_jax' not in sys.modules, [
        m for m in sys.modules if 'flax' in m or 'eleatt' in m]
    np.savez(sys.argv[3], logits=logits, steps=np.stack(steps, 1),
             probs=probs_t, valid_logits=valid_logits)
""")


def test_card_describes_the_run(exported_run):
  workdir, card = exported_run
  export_dir = workdir / 'export'
  with open(export_dir / 'model_card.json') as f:
    assert json.load(f) == card
  assert card['classes'] == ['up', 'down', 'flat']
  assert card['input']['D'] == 3 and card['input']['T'] == 10
  assert card['preprocessing']['preprocess'] == 'sequence'
  assert 'path' not in card['preprocessing']
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert card['accuracy']['value'] == results['accuracy']
  assert {'jax', 'jaxlib', 'flax', 'eleatt_jax'} <= set(card['versions'])
  assert set(card['artifacts']) == set(export_lib.FUNCTIONS)
  assert card['artifacts']['sequence']['inputs'][0]['shape'] == ['b', 't', '3']
  step_valid = card['artifacts']['step_valid']
  assert step_valid['signature'].startswith(
      'step_valid(carry, x_t [b, D], valid <bool>[b])'
  )
  assert step_valid['inputs'][-1] == {'shape': ['b'], 'dtype': 'bool'}
  assert card['artifacts']['step']['signature'].startswith('step(carry, x_t')
  for entry in card['artifacts'].values():
    assert (export_dir / entry['file']).exists()


def test_round_trip_in_a_process_without_flax(exported_run, tmp_path):
  workdir, _ = exported_run
  # Shapes other than any traced one: B=5, T=13.
  rng = np.random.default_rng(0)
  x = rng.standard_normal((5, 13, 3)).astype(np.float32)
  lengths = np.full((5,), 13, np.int32)
  ends = np.array([4, 13, 13, 4, 4], np.int32)  # ends for the step_valid run
  np.savez(tmp_path / 'in.npz', x=x, lengths=lengths, ends=ends)
  script = tmp_path / 'load.py'
  script.write_text(SUBPROCESS)
  proc = subprocess.run(
      [
          sys.executable,
          str(script),
          str(workdir / 'export'),
          str(tmp_path / 'in.npz'),
          str(tmp_path / 'out.npz'),
      ],
      cwd=tmp_path,
      env=sup.subprocess_env(1),
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = np.load(tmp_path / 'out.npz')
  model, variables = in_process_model(workdir)
  expected = model.apply(variables, jnp.asarray(x), jnp.asarray(lengths))
  np.testing.assert_allclose(out['logits'], expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      out['steps'][:, -1], expected, rtol=1e-5, atol=1e-5
  )
  prefix = model.apply(
      variables, jnp.asarray(x[:, :4]), jnp.full((5,), 4, jnp.int32)
  )
  np.testing.assert_allclose(out['steps'][:, 3], prefix, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      out['probs'], jax.nn.softmax(expected), rtol=1e-5, atol=1e-6
  )
  # Streams that ended after frame 3 kept the logits of the prefix 0..3.
  np.testing.assert_allclose(
      out['valid_logits'],
      np.where((ends == 4)[:, None], prefix, expected),
      rtol=1e-5,
      atol=1e-5,
  )


def test_cli_prints_how_to_load(exported_run, tmp_path):
  workdir, _ = exported_run
  proc = sup.run(
      [
          sys.executable,
          '-m',
          'train.export',
          f'--workdir={workdir}',
          f'--output={tmp_path / "e"}',
      ],
      timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'jax.export.deserialize' in proc.stdout
  assert (tmp_path / 'e' / 'step.jax_exported').exists()


def test_damaged_or_mismatched_artifacts_raise(exported_run, tmp_path):
  workdir, _ = exported_run
  directory = tmp_path / 'export'
  shutil.copytree(workdir / 'export', directory)
  assert set(export_lib.load(str(directory))) == set(export_lib.FUNCTIONS)
  step = directory / 'step.jax_exported'
  good = step.read_bytes()
  step.write_bytes(good[: len(good) // 2])
  with pytest.raises(
      ValueError,
      match=r'step.jax_exported: SHA-256 .* damaged '
      'or comes from another export',
  ):
    export_lib.load(str(directory))
  # A file that is not an export, with the card updated to match.
  card = json.loads((directory / 'model_card.json').read_text())
  step.write_bytes(b'not a flatbuffer')
  import hashlib  # pylint: disable=g-import-not-at-top

  card['artifacts']['step']['sha256'] = hashlib.sha256(
      b'not a flatbuffer'
  ).hexdigest()
  card[export_lib.CARD_DIGEST] = export_lib.card_digest(card)
  (directory / 'model_card.json').write_text(json.dumps(card))
  with pytest.raises(ValueError, match='is not a serialized jax.export'):
    export_lib.load(str(directory), ('step',))
  # Another function's file under the step's name: the inputs differ.
  sequence = (directory / 'sequence.jax_exported').read_bytes()
  step.write_bytes(sequence)
  card['artifacts']['step']['sha256'] = hashlib.sha256(sequence).hexdigest()
  card[export_lib.CARD_DIGEST] = export_lib.card_digest(card)
  (directory / 'model_card.json').write_text(json.dumps(card))
  with pytest.raises(ValueError, match=r'step.jax_exported: inputs .* differ'):
    export_lib.load(str(directory), ('step',))
  with pytest.raises(FileNotFoundError, match='model_card.json does not exist'):
    export_lib.load(str(tmp_path))


def test_an_edited_model_card_is_refused(exported_run, tmp_path):
  """Classes reversed in model_card.json: the card's own SHA-256 no longer
  matches, and loading the export (train.stream's way) says so."""
  import shutil  # pylint: disable=g-import-not-at-top

  workdir, _ = exported_run
  directory = tmp_path / 'export'
  shutil.copytree(workdir / 'export', directory)
  card = json.loads((directory / 'model_card.json').read_text())
  card['classes'] = card['classes'][::-1]
  (directory / 'model_card.json').write_text(json.dumps(card, indent=2))
  with pytest.raises(ValueError, match='model_card.json was changed after'):
    export_lib.load_callables(str(directory), ('initialize_carry', 'step'))


def test_export_of_another_checkpoint_has_no_accuracy_of_the_final(
    exported_run, tmp_path, capsys
):
  """eval_results.json is of the final step: the card of another exported
  checkpoint does not borrow its accuracy (a final_checkpoint='best' run
  exported at its latest step, and the reverse)."""
  from train import export as train_export  # pylint: disable=g-import-not-at-top

  workdir, card = exported_run
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert card['checkpoint']['step'] == results['step']
  assert card['accuracy']['step'] == results['step']
  other = train_export.export_run(
      str(workdir), '2', output=str(tmp_path / 'export')
  )
  assert other['checkpoint']['step'] == 2
  assert 'accuracy' not in other
  assert 'not of the exported step 2' in capsys.readouterr().err


def test_exported_step_with_valid_is_the_in_process_step(exported_run):
  workdir, _ = exported_run
  functions = export_lib.load_callables(str(workdir / 'export'), ('step',))
  assert set(functions) == {'step', 'step_valid'}
  model, variables = in_process_model(workdir)
  step = jax.jit(
      lambda c, x_t, v: model.apply(variables, c, x_t, v, method='step')
  )
  # NumPy, so that nothing but the two steps compiles.
  x = np.random.default_rng(3).standard_normal((3, 4, 3)).astype(np.float32)
  ends = np.array([4, 1, 2])
  carry = model.initialize_carry(3)
  # Committed like the exported step's outputs: one compilation.
  exported_carry = jax.device_put(carry, jax.devices()[0])
  for t in range(4):
    valid = t < ends
    previous = jax.device_get(exported_carry)
    carry, logits, _ = step(carry, x[:, t], valid)
    exported_carry, exported_logits, probabilities = functions['step'](
        exported_carry, x[:, t], valid=valid
    )
    np.testing.assert_allclose(exported_logits, logits, rtol=1e-5, atol=1e-5)
    e = np.exp(np.asarray(logits) - np.max(logits, axis=-1, keepdims=True))
    np.testing.assert_allclose(
        probabilities, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6
    )
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
        exported_carry,
        carry,
    )
    # An ended stream's carry stays as it was.
    jax.tree_util.tree_map(
        lambda a, b, v=valid: np.testing.assert_array_equal(
            np.asarray(a)[~v], b[~v]
        ),
        exported_carry,
        previous,
    )
  assert not valid.all()
  # The call without valid is the step export, all frames valid.
  old = functions['step'](exported_carry, x[:, 0])
  new = functions['step'](exported_carry, x[:, 0], valid=np.ones((3,), bool))
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
      old,
      new,
  )


def test_an_export_without_step_valid_still_steps(exported_run, tmp_path):
  workdir, _ = exported_run
  directory = tmp_path / 'export'
  shutil.copytree(workdir / 'export', directory)
  card = json.loads((directory / 'model_card.json').read_text())
  # An export of an older version: no step_valid, no checksum of the card.
  del card['artifacts']['step_valid'], card[export_lib.CARD_DIGEST]
  (directory / 'model_card.json').write_text(json.dumps(card))
  (directory / 'step_valid.jax_exported').unlink()
  functions = export_lib.load_callables(str(directory))
  assert set(functions) == {'sequence', 'initialize_carry', 'step'}
  x_t = np.ones((2, 3), np.float32)
  carry = functions['initialize_carry'](x_t)
  _, logits, _ = functions['step'](carry, x_t)
  assert logits.shape == (2, 3)
  with pytest.raises(ValueError, match='has no step_valid function'):
    functions['step'](carry, x_t, valid=[True, False])
  with pytest.raises(FileNotFoundError, match='model_card.json does not exist'):
    export_lib.load_callables(str(tmp_path), ('step',))


def test_wrong_feature_size_at_call_names_the_shapes():
  model = StackedRNNClassifier(num_classes=2, hidden_sizes=(4,))
  variables = model.init(jax.random.key(0), jnp.ones((1, 3, 3)))
  functions = export_lib.export_classifier(
      model, variables, 3, names=('sequence',)
  )
  assert set(functions) == {'sequence'}
  sequence = jax.export.deserialize(functions['sequence'].serialize())
  with pytest.raises(ValueError, match=r'shape.*\(2, 5, 4\)|4.*3'):
    sequence.call(jnp.ones((2, 5, 4)), jnp.full((2,), 5, jnp.int32))


def test_bidirectional_exports_the_sequence_function_only():
  model = StackedRNNClassifier(
      num_classes=2, hidden_sizes=(4,), bidirectional=True
  )
  variables = model.init(jax.random.key(0), jnp.ones((1, 3, 3)))
  assert set(export_lib.export_classifier(model, variables, 3)) == {'sequence'}


def test_stream_replays_through_the_exported_step(exported_run, tmp_path):
  import io  # pylint: disable=g-import-not-at-top
  from train import stream  # pylint: disable=g-import-not-at-top

  workdir, _ = exported_run
  out = io.StringIO()
  png = tmp_path / 'p.png'
  result = stream.replay(str(workdir), index=2, plot=str(png), out=out)
  text = out.getvalue()
  num_frames = len(result['top'])
  assert text.count('\nframe ') == num_frames
  assert f'at frame {result["settled_frame"]} of {num_frames}' in text
  assert png.exists()
  # The last frame's probabilities are the full-sequence model's.
  model, variables = in_process_model(workdir)
  from train import config_lib, input_pipeline  # pylint: disable=g-import-not-at-top

  config = config_lib.from_json(
      json.loads((workdir / 'config.json').read_text())
  )
  builder, info = input_pipeline.prepare_dataset(config, str(workdir))
  batch, _ = input_pipeline.get_example(config, builder, info, 'test', 2)
  logits = model.apply(variables, batch['x'], batch['length'])
  np.testing.assert_allclose(
      result['probabilities'][-1],
      jax.nn.softmax(logits)[0],
      rtol=1e-5,
      atol=1e-6,
  )
  assert stream.settled_frame([0, 1, 1, 2, 2]) == 3
  assert stream.settled_frame([2, 2]) == 0
