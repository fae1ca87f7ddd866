"""Input pipeline of the trainer: tfds data sources batched with grain.

Builds on `eleatt_jax.datasets` (the tfds builders and their preprocessing):

* `prepare_dataset` finds (or builds, on first use, from ``manual_dir``) the
  dataset named by ``config.data`` and describes it (`DatasetInfo`).
* `train_iterator` is an endless, shuffled, augmented stream of batches with a
  checkpointable state (``get_state()`` / ``set_state()``, saved with the
  model by `grain.checkpoint.CheckpointSave`).
* `eval_batches` is one ordered pass over a split; the last batch is padded
  and its padding rows have ``mask`` False, so that no example is dropped or
  counted twice.

Both are `eleatt_jax.datasets.make_pipeline`, whose batches are *global-batch
consistent*: the stream of global batches (all hosts together) does not depend
on the number of processes. Process ``p`` of ``P`` reads rows
``[p * B/P, (p+1) * B/P)`` of each global batch of ``B`` rows (each host reads
and preprocesses only its shard), and per-example augmentation is seeded by
the example's position in the global stream. So a run on two hosts sees
exactly the batches of a run on one.

Each batch is a dict of NumPy arrays of this process's rows (and the source's
integer ids, such as ``subject``)::

  x       <float32>[b, T, D] (evaluation with test-time averaging:
          <float32>[b, K, T, D], K versions of each example)
  length  <int32>[b]     valid frames of each row
  label   <int32>[b]
  mask    <bool>[b]      False for padding rows (evaluation only)
  index   <int32>[b]     the example's position in its split (-1: padding)
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterator, Mapping

import jax
import numpy as np

from eleatt_jax.datasets import pipeline
from eleatt_jax.datasets import preprocessing


class DatasetNotBuiltError(FileNotFoundError):
  """The dataset is not built where the config says, and cannot be built."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the trainer needs to know about a dataset.

  Attributes:
    name: tfds name ``builder/config``.
    num_classes: C.
    class_names: C names.
    input_dim: D, features of each frame after preprocessing.
    num_frames: T of every batch.
    splits: split name -> number of examples.
    data_dir: where the dataset is built.
    frame_shape: ``(H, W, C)`` of a video frame (preprocess 'video'; then
      input_dim is H*W*C), else ``()``.
    train_indices: With ``data.train_per_class``, the examples of the
      training split that training reads (sorted indices); ``()``: all.
  """

  name: str
  num_classes: int
  class_names: tuple[str, ...]
  input_dim: int
  num_frames: int
  splits: Mapping[str, int]
  data_dir: str
  frame_shape: tuple[int, ...] = ()
  train_indices: tuple[int, ...] = ()

  def num_train(self, train_split: str) -> int:
    """Examples that training reads from `train_split`."""
    return len(self.train_indices) or self.splits[train_split]


def _train_indices(config, builder) -> tuple[int, ...]:
  """``data.train_per_class`` examples of each class, drawn with the seed.

  ``()`` when it is 0 (the whole training split).
  """
  count = int(config.data.train_per_class)
  if count <= 0:
    return ()
  source = builder.as_data_source(config.data.train_split)
  labels = [int(source[i]['label']) for i in range(len(source))]
  return tuple(
      int(i) for i in pipeline.per_class_subset(labels, count, config.seed)
  )


def _data_dir(config, workdir: str) -> str | None:
  if config.data.data_dir:
    return os.path.expanduser(config.data.data_dir)
  if config.data.name.split('/')[0] == 'sequence_npz':
    return os.path.join(workdir, 'tfds')
  return None


def data_location(config, workdir: str) -> str:
  """Where ``config.data`` is read from (built there on first use), and why
  there: a line for the start of a run."""
  data_dir = _data_dir(config, workdir)
  if config.data.data_dir:
    why = 'from --config.data.data_dir'
  elif data_dir:
    why = 'sequence_npz data are built in the workdir'
  else:
    # tfds' own default (tfds.core.constants.get_default_data_dir).
    data_dir = os.environ.get('TFDS_DATA_DIR') or os.path.join(
        os.path.expanduser('~'), 'tensorflow_datasets'
    )
    why = (
        'the tfds default, $TFDS_DATA_DIR or ~/tensorflow_datasets; '
        'another: --config.data.data_dir=D, or make demo DATA_DIR=D'
    )
  return (
      f'Data:    {config.data.name} in {os.path.abspath(data_dir)} '
      f'(built there on first use; {why})'
  )


def _manual_dir(config) -> str | None:
  manual, path = config.data.manual_dir, config.data.path
  if manual and path and os.path.abspath(manual) != os.path.abspath(path):
    raise ValueError(
        f'config.data.manual_dir={manual!r} and config.data.path={path!r} '
        'differ; give one of them.'
    )
  chosen = manual or path
  return os.path.expanduser(chosen) if chosen else None


def get_builder(config, workdir: str):
  """The tfds builder of ``config.data``, built on first use.

  With several processes, process 0 builds first; the others then build only
  if they do not see the result (a data_dir local to each host).

  Args:
    config: The experiment config.
    workdir: The run's directory (the default data_dir of sequence_npz).

  Returns:
    A prepared `tfds.core.DatasetBuilder`.
  """
  name = config.data.name
  data_dir = _data_dir(config, workdir)
  manual_dir = _manual_dir(config)
  if name.split('/')[0] == 'sequence_npz' and not manual_dir:
    raise ValueError(
        'config.data.path is empty: sequence_npz needs --config.data.path=DIR,'
        ' the folder with train.npz and test.npz.'
    )
  if manual_dir and not os.path.isdir(manual_dir):
    raise FileNotFoundError(
        f'config.data.manual_dir / path {manual_dir!r} is not a directory.'
    )
  builder = _tfds_builder(name, data_dir)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    if jax.process_index() == 0:
      _build(builder, name, data_dir, manual_dir)
    multihost_utils.sync_global_devices(f'dataset {name} built')
    builder = _tfds_builder(name, data_dir)
  _build(builder, name, data_dir, manual_dir)
  return builder


# The builders of eleatt_jax.datasets, named in the error of an unknown name.
_OUR_BUILDERS = (
    'ntu_rgbd60',
    'ntu_rgbd120',
    'nucla',
    'sysu3d',
    'dhg',
    'shrec17',
    'sequential_mnist',
    'sequence_npz',
    'video_folder',
    'moving_digits',
    'nucla_render',
)


def _tfds_builder(name: str, data_dir: str | None):
  """``tfds.builder(name)``, or a ValueError that names the known ones."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import eleatt_jax.datasets  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import  # registers builders

  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    ours = list(_OUR_BUILDERS)
    close = difflib.get_close_matches(name.split('/')[0], ours, n=1)
    raise ValueError(
        f'config.data.name={name!r} is not a known dataset'
        + (f' (did you mean {close[0]!r}?)' if close else '')
        + f'; the eleatt_jax.datasets builders are {ours} (tfds name '
        "'builder/config', e.g. 'nucla/xview')."
    ) from None
  except ValueError as err:  # an unknown builder config
    raise ValueError(f'config.data.name={name!r}: {err}') from None


def _build(builder, name: str, data_dir: str | None, manual_dir: str | None):
  """Builds the dataset from ``manual_dir`` unless it is already prepared."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  if builder.is_prepared():
    return
  where = builder.data_dir
  print(
      f'Building {name} into {where} (first use)'
      + (f' from {manual_dir}' if manual_dir else '')
      + ' ...',
      flush=True,
  )
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
  except AssertionError as err:
    if 'manual' in str(err).lower() and not manual_dir:
      raise DatasetNotBuiltError(
          f'{name} is not built in {where} (the data_dir looked in: '
          f'{"--config.data.data_dir" if data_dir else "tfds default"}). '
          'If you built it elsewhere (`python -m eleatt_jax.datasets build '
          f'{name} --data_dir=D`), give --config.data.data_dir=D; otherwise '
          'give --config.data.manual_dir=DIR, the folder of your download, '
          'and it is built there on first use.'
      ) from None
    raise


def _feature_shape(builder, key: str) -> tuple[int | None, ...]:
  return tuple(builder.info.features[key].shape)


def prepare_dataset(config, workdir: str):
  """Returns ``(builder, DatasetInfo)`` for ``config.data``."""
  builder = get_builder(config, workdir)
  features = builder.info.features
  splits = {
      name: split.num_examples for name, split in builder.info.splits.items()
  }
  for field in ('train_split', 'eval_split', 'test_split'):
    split = config.data[field]
    if split not in splits:
      raise ValueError(
          f'config.data.{field}={split!r}: {config.data.name} has the splits '
          f'{sorted(splits)}.'
      )
  if 'label' not in features:
    raise ValueError(f'{config.data.name} has no "label" feature.')
  label = features['label']
  num_classes = int(label.num_classes)
  class_names = tuple(label.names)

  kind = config.data.preprocess
  frame_shape = ()
  if kind == 'video':
    if 'frames' not in features:
      raise ValueError(
          f'config.data.preprocess=video but {config.data.name} has no '
          '"frames" feature (video_folder and moving_digits have).'
      )
    shape = _feature_shape(builder, 'frames')
    frame_shape = tuple(int(s) for s in shape[1:])
    num_frames = int(config.data.num_frames or shape[0])
    input_dim = int(np.prod(frame_shape))
  elif kind == 'sequence':
    shape = _feature_shape(builder, 'x')
    if config.data.num_frames:
      num_frames = int(config.data.num_frames)
    elif shape[0] is not None:
      num_frames = int(shape[0])
    else:  # Variable lengths: pad to the longest sequence of the data.
      num_frames = max(
          int(np.max([int(e['length']) for e in builder.as_data_source(s)]))
          for s in {
              config.data.train_split,
              config.data.eval_split,
              config.data.test_split,
          }
      )
    if shape[-1] is not None:
      input_dim = int(shape[-1])
    else:
      first = builder.as_data_source(config.data.train_split)[0]
      input_dim = int(
          np.asarray(first['x']).reshape(int(first['length']), -1).shape[-1]
      )
  elif kind == 'skeleton':
    if 'skeleton' not in features:
      raise ValueError(
          'config.data.preprocess=skeleton but '
          f'{config.data.name} has no "skeleton" feature; use '
          "'sequence'."
      )
    if config.data.num_frames <= 0:
      raise ValueError(
          'config.data.num_frames must be > 0 for skeleton data, '
          f'got {config.data.num_frames}.'
      )
    num_frames = int(config.data.num_frames)
    input_dim = int(np.prod(_feature_shape(builder, 'skeleton')[1:])) * len(
        config.data.streams.split('+')
    )
  else:
    raise ValueError(
        "config.data.preprocess must be 'sequence', 'skeleton' or "
        f"'video', got {kind!r}."
    )
  info = DatasetInfo(
      name=config.data.name,
      num_classes=num_classes,
      class_names=class_names,
      input_dim=input_dim,
      num_frames=num_frames,
      splits=splits,
      data_dir=os.fspath(builder.data_dir),
      frame_shape=frame_shape,
      train_indices=_train_indices(config, builder),
  )
  return builder, info


def make_preprocess(config, info: DatasetInfo, test_time: bool = False):
  """The per-example preprocessing of ``config.data`` (eleatt_jax.datasets).

  `test_time`: the evaluation passes of the trainer, which average over
  ``data.test_clips`` and ``data.test_yaws`` (x <f>[K, T, D] per example);
  otherwise one version per example (x <f>[T, D]).
  """

  if config.data.temporal not in ('pad', 'sample'):
    raise ValueError(
        "config.data.temporal must be 'pad' or 'sample', got "
        f'{config.data.temporal!r}.'
    )
  if config.data.preprocess == 'sequence':
    return pipeline.SequencePreprocess(
        num_frames=info.num_frames, key='x', temporal=config.data.temporal
    )
  if config.data.preprocess == 'video':  # uint8 frames -> [T, H*W*C] in [0, 1]
    return pipeline.SequencePreprocess(
        num_frames=info.num_frames,
        key='frames',
        temporal=config.data.temporal,
        scale=1.0 / 255.0,
    )
  augment = None
  if config.data.augment:
    max_yaw = float(config.data.max_yaw)
    augment = preprocessing.Augment(
        max_angle=float(config.data.max_angle),
        max_scale=float(config.data.max_scale),
        jitter_sigma=float(config.data.jitter_sigma),
        max_yaw=max_yaw if max_yaw >= 0 else None,
    )
  alignments = {
      'none': None,
      'shoulders': (preprocessing.LEFT_SHOULDER, preprocessing.RIGHT_SHOULDER),
      'hips': (preprocessing.LEFT_HIP, preprocessing.RIGHT_HIP),
      'body': None,
  }
  align = config.data.align_view
  if align not in alignments:
    raise ValueError(
        'config.data.align_view must be one of '
        f'{sorted(alignments)}, got {align!r}.'
    )
  center = int(config.data.center_joint)
  return pipeline.SkeletonPreprocess(
      num_frames=info.num_frames,
      key='skeleton',
      center_joint=None if center < 0 else center,
      align_joints=alignments[align],
      body_frame=align == 'body',
      normalize_scale=bool(config.data.normalize_scale),
      temporal=config.data.temporal,
      augment=augment,
      streams=tuple(config.data.streams.split('+')),
      temporal_crop=float(config.data.temporal_crop),
      test_clips=int(config.data.test_clips) if test_time else 1,
      test_yaws=(
          tuple(float(a) for a in config.data.test_yaws) if test_time else ()
      ),
  )


def _check_batch(batch_size: int, what: str, process_count: int) -> int:
  if batch_size <= 0 or batch_size % process_count:
    raise ValueError(
        f'{what}={batch_size} must be a positive multiple of the '
        f'number of processes ({process_count}).'
    )
  return batch_size // process_count


def _pipeline(
    config,
    builder,
    info: DatasetInfo,
    split: str,
    *,
    train: bool,
    batch_size: int,
    what: str,
    process_index,
    process_count,
):
  """`eleatt_jax.datasets.make_pipeline` over `split`, for this process.

  Evaluation (not `train`) preprocesses with test-time averaging."""
  p = jax.process_index() if process_index is None else process_index
  n = jax.process_count() if process_count is None else process_count
  local = _check_batch(batch_size, what, n)
  source = builder.as_data_source(split)
  if train and info.train_indices:
    source = pipeline.Subset(source, info.train_indices)
  if train and len(source) < batch_size:
    raise ValueError(
        f'{what}={batch_size} is larger than the {len(source)} examples of '
        f'{info.name}/{split}'
        + (
            ' read in training (data.train_per_class)'
            if info.train_indices
            else ''
        )
        + '; lower it.'
    )
  ds = pipeline.make_pipeline(
      source,
      make_preprocess(config, info, test_time=not train),
      batch_size=local,
      train=train,
      seed=config.seed,
      shard_index=p,
      shard_count=n,
      num_threads=int(config.data.num_threads),
      prefetch_buffer_size=int(config.data.prefetch),
      index_key='index',
  )
  return iter(ds)


def train_iterator(
    config,
    builder,
    info: DatasetInfo,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
):
  """The endless, checkpointable stream of this process's training batches.

  Epoch after epoch the split is reshuffled (grain's per-epoch shuffle seeded
  by ``config.seed``) and augmented with per-example generators derived from
  the seed and the example's position in the global stream.

  Args:
    config: The experiment config (``data``, ``batch_size``, ``seed``).
    builder: The prepared tfds builder.
    info: Its `DatasetInfo`.
    process_index: This process (default `jax.process_index()`).
    process_count: Processes (default `jax.process_count()`).

  Returns:
    A `grain.DatasetIterator` of batches of ``batch_size / process_count``
    rows.
  """
  return _pipeline(
      config,
      builder,
      info,
      config.data.train_split,
      train=True,
      batch_size=config.batch_size,
      what='config.batch_size',
      process_index=process_index,
      process_count=process_count,
  )


def eval_batches(
    config,
    builder,
    info: DatasetInfo,
    split: str,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict]:
  """One ordered pass over `split`, in global batches of eval_batch_size.

  The split is padded to a whole number of global batches; padding rows are
  zeros with ``mask`` False, ``length`` 1 and ``index`` -1.

  Yields:
    Batches of ``eval_batch_size / process_count`` rows of this process.
  """
  return _pipeline(
      config,
      builder,
      info,
      split,
      train=False,
      batch_size=config.eval_batch_size,
      what='config.eval_batch_size',
      process_index=process_index,
      process_count=process_count,
  )


def get_example(config, builder, info: DatasetInfo, split: str, index: int):
  """Example `index` of `split`, preprocessed for evaluation.

  Returns:
    ``(batch of one row, raw example)``.
  """
  source = builder.as_data_source(split)
  if not 0 <= index < len(source):
    raise IndexError(
        f'--index {index} is out of range: {info.name}/{split} '
        f'has {len(source)} examples.'
    )
  raw = source[index]
  row = dict(
      make_preprocess(config, info)(raw, None),
      mask=np.bool_(True),
      index=np.int32(index),
  )
  return {k: np.asarray(v)[None] for k, v in row.items()}, raw
