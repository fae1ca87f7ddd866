"""The recipe options of issue 17, each at toy size.

Input streams (velocities, bone vectors), test-time averaging over temporal
samplings and rotations, label smoothing, a moving average of the weights
for evaluation, and their config checks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eleatt_jax.datasets import pipeline
from eleatt_jax.datasets import preprocessing as pp
from eleatt_jax.datasets import skeletons
from eleatt_jax.models import StackedRNNClassifier
from train import config_lib
from train import state as state_lib
from train import steps
from train.configs import default


def _example(t=7, j=20, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(t, j, 3)).astype(np.float32)
  return {'skeleton': x, 'length': t, 'label': 3}


def test_velocities_are_frame_differences_zero_where_missing():
  x = np.random.default_rng(0).normal(size=(5, 2, 4, 3)).astype(np.float32)
  x[3, 1] = 0  # body 1 missing in frame 3
  v = pp.velocities(x, length=4)
  np.testing.assert_allclose(v[1:4, 0], x[1:4, 0] - x[:3, 0], rtol=1e-6)
  assert not v[0].any() and not v[4].any()  # first frame, padding
  assert not v[3, 1].any() and not v[4, 1].any()  # body 1 missing
  np.testing.assert_allclose(v[2, 1], x[2, 1] - x[1, 1], rtol=1e-6)


def test_bone_vectors_are_joint_minus_parent():
  x = _example()['skeleton']
  b = pp.bone_vectors(x, skeletons.KINECT_V1_BONES)
  assert not b[:, 0].any()  # the root (hip centre) has no parent
  for parent, child in skeletons.KINECT_V1_BONES:
    np.testing.assert_allclose(b[:, child], x[:, child] - x[:, parent])
  with pytest.raises(ValueError, match='outside 0..19'):
    pp.bone_vectors(x, ((0, 25),))


def test_streams_concatenate_positions_velocities_bones():
  ex = _example()
  one = pipeline.SkeletonPreprocess(num_frames=4, center_joint=1)(ex)
  three = pipeline.SkeletonPreprocess(
      num_frames=4, center_joint=1, streams=('position', 'velocity', 'bone')
  )(ex)
  assert one['x'].shape == (4, 60) and three['x'].shape == (4, 180)
  np.testing.assert_array_equal(three['x'][:, :60], one['x'])
  pos = one['x'].reshape(4, 20, 3)
  np.testing.assert_allclose(
      three['x'][:, 60:120].reshape(4, 20, 3),
      pp.velocities(pos),
      atol=1e-6,
  )
  with pytest.raises(ValueError, match='streams'):
    pipeline.SkeletonPreprocess(num_frames=4, streams=('speed',))


def test_temporal_crop_keeps_a_random_window_in_training_only():
  x = np.arange(20, dtype=np.float32)[:, None, None] * np.ones((1, 20, 3))
  ex = {'skeleton': x, 'length': 20, 'label': 0}
  rng = np.random.default_rng(0)
  for _ in range(20):
    window, kept = pp.temporal_crop(x, 20, 0.5, rng)
    assert 10 <= kept <= 20 and len(window) == kept
    frames = window[:, 0, 0]  # frame numbers: one contiguous run
    np.testing.assert_array_equal(
        frames, np.arange(frames[0], frames[0] + kept)
    )
  crop = pipeline.SkeletonPreprocess(
      num_frames=5, center_joint=None, temporal_crop=0.5
  )
  whole = pipeline.SkeletonPreprocess(num_frames=5, center_joint=None)
  # Evaluation (no rng) never crops: the centred sampling of all 20 frames.
  np.testing.assert_array_equal(crop(ex)['x'], whole(ex)['x'])
  # Training: the sampled frames span at most the window, somewhere in 0..19.
  spans = []
  for seed in range(30):
    frames = crop(ex, np.random.default_rng(seed))['x'].reshape(5, 20, 3)
    spans.append(frames[-1, 0, 0] - frames[0, 0, 0])
  assert min(spans) < 10 <= max(spans) < 20
  with pytest.raises(ValueError, match='temporal_crop'):
    pipeline.SkeletonPreprocess(num_frames=5, temporal_crop=0.0)


def test_test_time_versions_are_clips_and_rotations():
  ex = _example(t=20)
  plain = pipeline.SkeletonPreprocess(num_frames=4, center_joint=1)
  tta = pipeline.SkeletonPreprocess(
      num_frames=4, center_joint=1, test_clips=2, test_yaws=(0.5,)
  )
  out = tta(ex)
  assert out['x'].shape == (4, 4, 60) and tta.num_test_views == 4
  # Clip k samples segment offsets (k + 0.5) / 2, then its rotation follows.
  x = pp.translate(ex['skeleton'], 1)
  for k, offset in enumerate((0.25, 0.75)):
    clip = pp.temporal_sample(x, 20, 4, offset=offset)
    np.testing.assert_allclose(out['x'][2 * k], pp.flatten(clip), atol=1e-6)
    turned = pp.rotate(clip, pp.rotation_matrix(0.0, 0.5, 0.0))
    np.testing.assert_allclose(
        out['x'][2 * k + 1], pp.flatten(turned), atol=1e-6
    )
  # Training ignores them: one augmented version.
  assert tta(ex, np.random.default_rng(0))['x'].shape == (4, 60)
  assert plain(ex)['x'].shape == (4, 60)
  with pytest.raises(ValueError, match='temporal'):
    pipeline.SkeletonPreprocess(num_frames=4, temporal='pad', test_clips=2)


def _model_and_batch(k=None):
  model = StackedRNNClassifier(
      num_classes=5, cell='eleatt_gru', hidden_sizes=(6,), dropout_rate=0.0
  )
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 4, 8)).astype(np.float32)
  params = model.init(
      jax.random.key(0), jnp.asarray(x), jnp.full((3,), 4, jnp.int32)
  )['params']
  batch = {
      'x': x,
      'length': np.full((3,), 4, np.int32),
      'label': np.array([0, 1, 2], np.int32),
      'mask': np.array([True, True, False]),
  }
  return model, params, batch


@pytest.mark.slow  # 25 s; test_reproduce's nucla_tune runs test_averaging
def test_eval_step_averages_probabilities_of_the_versions():
  model, params, batch = _model_and_batch()
  rng = np.random.default_rng(2)
  other = rng.normal(size=batch['x'].shape).astype(np.float32)
  one = steps.eval_step(params, batch, model=model, num_classes=5)
  # K copies of the same version: the same as one.
  same = dict(batch, x=np.stack([batch['x']] * 3, axis=1))
  many = steps.eval_step(params, same, model=model, num_classes=5)
  for key in one:
    np.testing.assert_allclose(many[key], one[key], rtol=1e-5, atol=1e-6)
  # Two versions: the loss is -log of the mean probability.
  two = dict(batch, x=np.stack([batch['x'], other], axis=1))
  out = steps.eval_step(params, two, model=model, num_classes=5)
  p = [
      jax.nn.softmax(model.apply({'params': params}, x, batch['length']))
      for x in (batch['x'], other)
  ]
  mean_p = np.asarray((p[0] + p[1]) / 2)
  nll = -np.log(mean_p[np.arange(3), batch['label']])
  np.testing.assert_allclose(out['loss_sum'], nll[:2].sum(), rtol=1e-5)
  assert out['count'] == 2


def test_label_smoothing_of_the_training_loss():
  logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
  labels = jnp.array([0, 2])
  plain = steps._smoothed_cross_entropy(logits, labels, 0.0)
  np.testing.assert_allclose(
      plain, optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  )
  smooth = steps._smoothed_cross_entropy(logits, labels, 0.3)
  log_p = jax.nn.log_softmax(logits)
  targets = 0.7 * jax.nn.one_hot(labels, 3) + 0.1
  np.testing.assert_allclose(smooth, -(targets * log_p).sum(-1), rtol=1e-6)


def test_ema_of_params_tracks_the_parameters_after_each_step():
  tx = optax.chain(optax.sgd(0.5), state_lib.ema_of_params(0.9))
  params = {'w': jnp.array([1.0, -2.0])}
  opt_state = tx.init(params)
  ema = np.asarray(params['w'])
  for g in ([1.0, 0.0], [0.0, 2.0], [1.0, 1.0]):
    updates, opt_state = tx.update({'w': jnp.array(g)}, opt_state, params)
    params = optax.apply_updates(params, updates)
    ema = 0.9 * ema + 0.1 * np.asarray(params['w'])
    np.testing.assert_allclose(opt_state[-1].ema['w'], ema, rtol=1e-6)
  config = default.get_config()
  assert state_lib.eval_params_fn(config)(_State(params, opt_state)) is params
  config.optim.ema_decay = 0.9
  got = state_lib.eval_params_fn(config)(_State(params, opt_state))
  np.testing.assert_allclose(got['w'], ema, rtol=1e-6)


class _State:

  def __init__(self, params, opt_state):
    self.params, self.opt_state = params, opt_state


@pytest.mark.parametrize(
    'key, value, match',
    [
        ('data.streams', 'position+speed', 'data.streams'),
        ('data.streams', 'velocity+velocity', 'data.streams'),
        ('data.test_clips', 0, 'data.test_clips'),
        ('data.temporal_crop', 0.0, 'data.temporal_crop'),
        ('data.temporal_crop', 1.5, 'data.temporal_crop'),
        ('data.test_yaws', (0.5, 'x'), 'data.test_yaws'),
        ('optim.label_smoothing', 1.0, 'optim.label_smoothing'),
        ('optim.ema_decay', -0.1, 'optim.ema_decay'),
    ],
)
def test_bad_option_values_are_named(key, value, match):
  config = default.get_config()
  section, leaf = key.split('.')
  config[section][leaf] = value
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.validate(config)


def test_options_that_do_not_go_together_are_named():
  config = default.get_config()
  config.optim.ema_decay = 0.99
  config.optim.schedule = 'plateau'
  with pytest.raises(config_lib.ConfigError, match='plateau'):
    config_lib.validate(config)
  config = default.get_config()
  config.data.test_clips = 3
  config.data.temporal = 'pad'
  with pytest.raises(config_lib.ConfigError, match='test_clips'):
    config_lib.validate(config)
  config.data.temporal = 'sample'
  config.data.streams = 'position+velocity+bone'
  config_lib.validate(config)
