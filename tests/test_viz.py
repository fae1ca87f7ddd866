"""eleatt_jax.viz: each plot has the expected axes and writes a non-blank PNG."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from eleatt_jax import viz

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def agg_backend():
  matplotlib = pytest.importorskip('matplotlib')
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  yield
  plt.close('all')


def assert_png_not_blank(path):
  from PIL import Image  # pylint: disable=g-import-not-at-top  (matplotlib's dep)

  image = np.asarray(Image.open(path).convert('RGB'), np.float32)
  assert image.shape[0] > 50 and image.shape[1] > 50
  assert image.std() > 5.0, f'{path} looks blank'
  background = image[0, 0]
  not_background = np.any(np.abs(image - background) > 30, axis=-1)
  assert not_background.mean() > 0.01, f'{path} is almost all background'


def save(fig, tmp_path, name):
  path = viz.save_figure(fig, tmp_path / 'sub' / f'{name}.png', dpi=60)
  assert os.path.getsize(path) > 1000
  assert_png_not_blank(path)
  return path


def walking_skeleton(num_frames=12, num_joints=25, bodies=1, seed=0):
  """A skeleton-like sequence: a random pose that drifts."""
  rng = np.random.default_rng(seed)
  pose = rng.uniform(-0.5, 0.5, (bodies, num_joints, 3)).astype(np.float32)
  drift = np.linspace(0, 0.3, num_frames, dtype=np.float32)[:, None, None, None]
  return pose[None] + drift


def test_topologies_are_consistent():
  for num_joints, bones, names in (
      (25, viz.NTU_BONES, viz.NTU_JOINT_NAMES),
      (20, viz.KINECT_V1_BONES, viz.KINECT_V1_JOINT_NAMES),
      (22, viz.HAND_BONES, viz.HAND_JOINT_NAMES),
  ):
    assert len(names) == num_joints
    assert viz.skeleton_topology(num_joints) == (names, bones)
    # A tree over all joints: J - 1 bones, every joint reached, no repeats.
    assert len(bones) == num_joints - 1
    assert len(set(bones)) == len(bones)
    assert {j for bone in bones for j in bone} == set(range(num_joints))
  # The Kinect v1 skeleton is the first 20 Kinect v2 joints, same places.
  assert viz.NTU_JOINT_NAMES[:4] == ('spine_base', 'spine_mid', 'neck', 'head')
  assert viz.KINECT_V1_JOINT_NAMES[4] == 'shoulder_left'
  assert viz.NTU_JOINT_NAMES[4] == 'shoulder_left'
  with pytest.raises(ValueError, match='no built-in skeleton topology'):
    viz.skeleton_topology(17)


def test_joint_attention_reduces_xyz():
  a = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)  # 2 joints
  np.testing.assert_allclose(
      viz.joint_attention(a), a.reshape(2, 5, 2, 3).mean(-1)
  )
  np.testing.assert_allclose(
      viz.joint_attention(a, reduce='max'), a.reshape(2, 5, 2, 3).max(-1)
  )
  with pytest.raises(ValueError, match='joints x 3'):
    viz.joint_attention(np.zeros((3, 7)))
  with pytest.raises(ValueError, match='reduce'):
    viz.joint_attention(a, reduce='median')


def test_plot_skeleton_two_bodies(tmp_path):
  x = walking_skeleton(bodies=2)
  x[:, 1] = 0  # a missing second actor is not drawn
  fig = viz.plot_skeleton(x, frames=[0, 5, 11], title='NTU-like')
  assert len(fig.axes) == 3
  assert [ax.get_title() for ax in fig.axes] == [
      'frame 0',
      'frame 5',
      'frame 11',
  ]
  # 24 bones of the one present body per frame.
  assert len(fig.axes[0].lines) == len(viz.NTU_BONES)
  save(fig, tmp_path, 'skeleton')


def test_plot_skeleton_default_frames_and_bad_frames():
  x = walking_skeleton(num_frames=3, num_joints=20)[:, 0]  # [T, J, 3]
  fig = viz.plot_skeleton(x)
  assert len(fig.axes) == 3  # at most 4, at most T
  with pytest.raises(ValueError, match='frames'):
    viz.plot_skeleton(x, frames=[3])


def test_plot_skeleton_attention(tmp_path):
  x = walking_skeleton(num_frames=10, num_joints=20)[:, 0]
  a = np.random.default_rng(1).uniform(size=(10, 60))  # [T, J*3]
  fig = viz.plot_skeleton_attention(x, a, frames=[0, 4, 9])
  assert len(fig.axes) == 4  # three frames and the colorbar
  assert [ax.get_title() for ax in fig.axes[:3]] == [
      'frame 0',
      'frame 4',
      'frame 9',
  ]
  assert 'mean over x, y, z' in fig.axes[3].get_ylabel()
  # The joints' colours are the per-joint means.
  colours = fig.axes[0].collections[-1].get_array()
  np.testing.assert_allclose(colours, viz.joint_attention(a)[0], rtol=1e-6)
  save(fig, tmp_path, 'skeleton_attention')


def test_animate_skeleton(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  x = walking_skeleton(num_frames=5, num_joints=20)[:, 0]
  per_joint = np.random.default_rng(2).uniform(size=(5, 20))
  path = viz.animate_skeleton(
      x,
      tmp_path / 'a' / 'skeleton.gif',
      fps=5,
      joint_values=per_joint,
      title='t',
  )
  with Image.open(path) as gif:
    assert gif.format == 'GIF'
    assert gif.n_frames == 5
    gif.seek(2)
    frame = np.asarray(gif.convert('RGB'), np.float32)
  assert frame.std() > 5.0


def test_plot_attention_heatmap(tmp_path):
  a = np.random.default_rng(3).uniform(size=(30, 20))
  fig = viz.plot_attention_heatmap(
      a,
      length=25,
      feature_labels=viz.KINECT_V1_JOINT_NAMES,
      ylabel='joint',
      title='heat',
  )
  assert len(fig.axes) == 2  # heat map and colorbar
  ax = fig.axes[0]
  assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
      'time step t',
      'joint',
      'heat',
  )
  assert ax.images[0].get_array().shape == (20, 25)  # features x valid steps
  assert [t.get_text() for t in ax.get_yticklabels()][:2] == [
      'hip_center',
      'spine',
  ]
  save(fig, tmp_path, 'heatmap')
  with pytest.raises(ValueError, match='feature_labels'):
    viz.plot_attention_heatmap(a, feature_labels=['a'])


def test_attention_heatmap_rows_are_whole_joints_named():
  """Issue 10 item 8: N-UCLA's heat map had ticks at 2.5, 7.5 and no names."""
  a = np.random.default_rng(4).uniform(size=(30, 20 * 3))  # N-UCLA: J=20, xyz
  per_joint = viz.joint_attention(a)
  ax = viz.plot_attention_heatmap(
      per_joint, feature_labels=viz.joint_labels(per_joint.shape[-1])
  ).axes[0]
  np.testing.assert_array_equal(ax.get_yticks(), np.arange(20))
  assert [t.get_text() for t in ax.get_yticklabels()] == list(
      viz.KINECT_V1_JOINT_NAMES
  )
  # Two NTU bodies: names per body; an unknown skeleton: row indices.
  assert viz.joint_labels(50, 25)[24:26] == ['0: thumb_right', '1: spine_base']
  assert viz.joint_labels(14) == [str(i) for i in range(14)]
  # Without labels, the ticks still fall on rows, never between them.
  ticks = viz.plot_attention_heatmap(per_joint).axes[0].get_yticks()
  assert len(ticks) > 2 and np.all(ticks == np.round(ticks)), ticks


def test_plot_mnist_attention(tmp_path):
  rng = np.random.default_rng(4)
  x = np.zeros((28, 28), np.float32)
  x[8:20, 12:16] = 1.0  # a "1"
  a = rng.uniform(size=(28, 28))
  fig = viz.plot_mnist_attention(x, a, title='digit')
  assert len(fig.axes) == 4  # input, gate, gated input, colorbar
  assert [ax.get_title() for ax in fig.axes[:3]] == [
      'input x',
      'gate a_t',
      'gated input a_t * x_t',
  ]
  np.testing.assert_allclose(
      fig.axes[2].images[0].get_array(), a * x, rtol=1e-6
  )
  save(fig, tmp_path, 'mnist')
  # Pixel-wise sequences map back to the image.
  fig = viz.plot_mnist_attention(
      x.reshape(784, 1), a.reshape(784, 1), mode='pixel'
  )
  np.testing.assert_allclose(fig.axes[0].images[0].get_array(), x)


def test_plot_training_curves(tmp_path):
  runs = {
      'EleAtt-GRU train': {
          'step': [10, 20, 30],
          'loss': [2.0, 1.0, 0.5],
          'accuracy': [0.3, 0.6, 0.8],
      },
      'GRU train': {
          'step': [10, 20, 30],
          'loss': [2.1, 1.4, 0.9],
          'accuracy': [0.2, 0.5, 0.7],
      },
      'test only loss': {'step': [30], 'loss': [0.7]},
  }
  fig = viz.plot_training_curves(
      runs, styles={'GRU train': {'linestyle': '--'}}
  )
  assert len(fig.axes) == 2
  assert [ax.get_title() for ax in fig.axes] == ['loss', 'accuracy']
  assert [ax.get_xlabel() for ax in fig.axes] == ['step', 'step']
  assert len(fig.axes[0].lines) == 3 and len(fig.axes[1].lines) == 2
  assert fig.axes[0].lines[1].get_linestyle() == '--'
  save(fig, tmp_path, 'curves')


def test_curves_from_records():
  records = [
      {'step': 100, 'train/loss': 1.0, 'train/accuracy': 0.5},
      {'step': 200, 'train/loss': 0.5, 'test/loss': 0.7, 'test/accuracy': 0.6},
  ]
  runs = viz.curves_from_records(records)
  assert runs['train']['step'] == [100, 200]
  assert runs['train']['loss'] == [1.0, 0.5]
  assert runs['train']['accuracy'][0] == 0.5
  assert runs['test'] == {'step': [200], 'loss': [0.7], 'accuracy': [0.6]}
  assert np.isnan(runs['train']['accuracy'][1])
  fig = viz.plot_training_curves(runs)
  assert len(fig.axes[1].lines[0].get_xdata()) == 1  # the NaN is skipped


def test_plot_confusion_matrix(tmp_path):
  labels = np.repeat(np.arange(4), 5)
  predictions = labels.copy()
  predictions[::3] = 0
  confusion = viz.confusion_matrix(labels, predictions, 4)
  assert confusion.sum() == 20 and confusion[1, 0] > 0
  fig = viz.plot_confusion_matrix(confusion, ['a', 'b', 'c', 'd'])
  assert len(fig.axes) == 2  # the matrix and its colorbar
  ax = fig.axes[0]
  assert (ax.get_xlabel(), ax.get_ylabel()) == ('predicted', 'true')
  accuracy = 100 * np.trace(confusion) / 20
  assert ax.get_title() == f'accuracy {accuracy:.1f}% (20)'
  assert [t.get_text() for t in ax.get_xticklabels()] == ['a', 'b', 'c', 'd']
  save(fig, tmp_path, 'confusion')
  with pytest.raises(ValueError, match='class_names'):
    viz.plot_confusion_matrix(confusion, ['a'])


def test_matplotlib_is_optional_and_lazy():
  """`import eleatt_jax` (and `eleatt_jax.viz`) leave matplotlib unimported."""
  code = (
      'import sys, eleatt_jax; assert "matplotlib" not in sys.modules; '
      'import eleatt_jax.viz; assert "matplotlib" not in sys.modules'
  )
  subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)


def test_topologies_live_once_in_the_datasets_package():
  """viz re-exports `eleatt_jax.datasets.skeletons`; importing it loads no tfds."""
  code = (
      'import sys, eleatt_jax.viz as viz; '
      'assert "tensorflow_datasets" not in sys.modules; '
      'from eleatt_jax.viz import NTU_BONES; '
      'from eleatt_jax.datasets import skeletons as sk, preprocessing as pp; '
      'assert NTU_BONES is sk.NTU_BONES; '
      'assert viz.HAND_JOINT_NAMES is sk.HAND_JOINT_NAMES; '
      'assert viz.KINECT_V1_BONES is sk.KINECT_V1_BONES; '
      'assert viz.skeleton_topology(20) == sk.skeleton_topology(20); '
      'assert (pp.SPINE, pp.LEFT_HIP, pp.PALM) == (sk.SPINE, sk.LEFT_HIP, '
      'sk.PALM); '
      'assert "matplotlib" not in sys.modules'
  )
  subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)
  with pytest.raises(AttributeError, match='NO_SUCH_NAME'):
    viz.NO_SUCH_NAME  # pylint: disable=pointless-statement
