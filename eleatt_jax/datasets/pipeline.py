"""grain input pipelines over tfds `data_source`s (no TensorFlow).

A pipeline reads examples by index from a random-access source (what
`tfds.data_source` returns for our array_record builders, or any sequence of
dicts), shuffles with a seed and repeats for training, preprocesses each
example (with per-example random augmentation derived from the seed), gives
each process (`jax.process_index()`) its rows of every global batch, and
batches to fixed shapes:

  * ``x``: <float32>[batch, num_frames, features]
  * ``length``: <int32>[batch], valid frames of each row
  * ``label``: <int32>[batch]
  * ``mask``: <bool>[batch], False for the rows that pad the last evaluation
    batch (training batches are always full)
  * every integer id of the source (``subject``, ``view``...): <int32>[batch]

The iterator is checkpointable: ``state = it.get_state()`` then, in a fresh
pipeline, ``it.set_state(state)`` continues with the same next batch.

Example::

  source = tfds.data_source("nucla/dev", data_dir=data_dir)["train"]
  ds = make_pipeline(
      source, SkeletonPreprocess(num_frames=50, augment=Augment()),
      batch_size=32, train=True, seed=0)
  it = iter(ds)
  batch = next(it)          # batch["x"]: float32 [32, 50, 60]
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np

from eleatt_jax.datasets import preprocessing as pp
from eleatt_jax.datasets import skeletons

Element = Mapping[str, Any]

#: Feature streams of `SkeletonPreprocess`.
STREAMS = ("position", "velocity", "bone")


def _ids(element: Element, skip: Sequence[str]) -> dict[str, np.ndarray]:
  """The integer scalar fields of an element (labels and ids), as int32."""
  out = {}
  for k, v in element.items():
    if k in skip:
      continue
    arr = np.asarray(v)
    if arr.ndim == 0 and np.issubdtype(arr.dtype, np.integer):
      out[k] = arr.astype(np.int32)
  return out


@dataclasses.dataclass(frozen=True)
class SkeletonPreprocess:
  """Example -> fixed-shape skeleton features, with optional augmentation.

  Steps: translate (centre joint of body 0 in the first valid frame), optional
  view alignment (about the vertical axis, or into the body's own frame),
  optional scale normalisation, fixed-length sampling (``temporal="sample"``: uniform
  segments, random offsets in training, centred in evaluation; ``"pad"``: zero
  padding with ``length``), augmentation (training only; padding frames stay
  zero), then the feature streams (positions, frame differences, bone
  vectors; `preprocessing.velocities`, `preprocessing.bone_vectors`) each
  flattened and concatenated to <float32>[num_frames, S*M*J*3].

  Test-time averaging (``test_clips > 1`` or ``test_yaws``; evaluation only):
  the example becomes <float32>[K, num_frames, S*M*J*3], K = test_clips *
  (1 + len(test_yaws)) versions: clip k samples each segment at offset
  (k + 0.5) / test_clips, and each clip is also rotated about the vertical
  axis by every angle of `test_yaws`. The evaluation step averages the
  class probabilities of the K versions.

  Attributes:
    num_frames: Output frames T.
    key: Skeleton field of the source, <f>[T0, J, 3] or <f>[T0, M, J, 3].
    center_joint: 0-based joint moved to the origin (None: no translation).
    align_joints: (from, to) joints for `preprocessing.align_view`, or None.
    body_frame: Rotate into the body-centred frame of
      `preprocessing.body_frame` (hips and spine) instead.
    normalize_scale: Scale to a torso of 0.5 m (`preprocessing.normalize_scale`).
    temporal: ``"sample"`` or ``"pad"``.
    augment: Augmentation applied in training; None for none.
    streams: Feature streams, in order: ``"position"``, ``"velocity"``,
      ``"bone"``.
    bones: (parent, child) joint pairs of the ``"bone"`` stream (default:
      `skeletons.skeleton_topology` of the joint count).
    test_clips: Temporal samplings averaged in evaluation (``"sample"``
      only).
    test_yaws: Extra rotations (rad) about the vertical axis averaged in
      evaluation, beside the unrotated one.
    temporal_crop: Training only: before sampling, keep a random window of
      a fraction of the sequence drawn from [temporal_crop, 1]
      (`preprocessing.temporal_crop`); 1.0: the whole sequence.
  """

  num_frames: int
  key: str = "skeleton"
  center_joint: int | None = pp.SPINE
  align_joints: tuple[int, int] | None = None
  body_frame: bool = False
  normalize_scale: bool = False
  temporal: str = "sample"
  augment: pp.Augment | None = None
  streams: tuple[str, ...] = ("position",)
  bones: tuple[tuple[int, int], ...] | None = None
  test_clips: int = 1
  test_yaws: tuple[float, ...] = ()
  temporal_crop: float = 1.0

  def __post_init__(self):
    if self.temporal not in ("sample", "pad"):
      raise ValueError(
          f"temporal must be 'sample' or 'pad', got {self.temporal!r}"
      )
    unknown = set(self.streams) - set(STREAMS)
    if (
        not self.streams
        or unknown
        or len(set(self.streams)) < len(self.streams)
    ):
      raise ValueError(
          f"streams must be distinct names of {STREAMS}, got {self.streams!r}"
      )
    if not 0.0 < self.temporal_crop <= 1.0:
      raise ValueError(
          f"temporal_crop must be in (0, 1], got {self.temporal_crop}"
      )
    if self.test_clips < 1:
      raise ValueError(f"test_clips must be >= 1, got {self.test_clips}")
    if self.test_clips > 1 and self.temporal != "sample":
      raise ValueError(
          "test_clips > 1 needs temporal='sample' (clips are temporal"
          f" samplings), got temporal={self.temporal!r}"
      )

  @property
  def num_test_views(self) -> int:
    """K, the versions of an example averaged in evaluation."""
    return self.test_clips * (1 + len(self.test_yaws))

  def __call__(
      self, element: Element, rng: np.random.Generator | None = None
  ) -> dict[str, np.ndarray]:
    """Preprocesses one example; `rng` None means evaluation."""
    x = np.asarray(element[self.key], np.float32)
    length = int(element.get("length", len(x)))
    x = x[:length]
    if self.center_joint is not None:
      x = pp.translate(x, self.center_joint)
    if self.body_frame:
      x = pp.body_frame(x)
    elif self.align_joints is not None:
      x = pp.align_view(x, self.align_joints)
    if self.normalize_scale:
      x = pp.normalize_scale(x)
    out = _ids(element, skip=(self.key, "length"))
    if rng is None and self.num_test_views > 1:
      views = []
      for k in range(self.test_clips):
        clip, clip_length = self._sample(
            x, length, None, (k + 0.5) / self.test_clips
        )
        views.append(self._features(clip, clip_length))
        for yaw in self.test_yaws:
          turned = pp.rotate(clip, pp.rotation_matrix(0.0, yaw, 0.0))
          views.append(self._features(turned, clip_length))
      out.update(x=np.stack(views), length=np.int32(clip_length))
      return out
    if rng is not None and self.temporal_crop < 1.0:
      x, length = pp.temporal_crop(x, length, self.temporal_crop, rng)
    x, length = self._sample(x, length, rng)
    if rng is not None and self.augment is not None:
      # After sampling: the same per-sequence transform on fewer frames.
      x = self.augment(x, rng)
    out.update(x=self._features(x, length), length=np.int32(length))
    return out

  def _sample(self, x, length, rng, offset=0.5):
    """(<f>[num_frames, ...], valid length) by `temporal`."""
    if self.temporal == "sample":
      return (
          pp.temporal_sample(x, length, self.num_frames, rng, offset),
          self.num_frames,
      )
    return pp.pad_to(x, length, self.num_frames, rng)

  def _features(self, x: np.ndarray, length: int) -> np.ndarray:
    """The streams of `x` <f>[T, (M,) J, 3], as <f>[T, S*M*J*3]."""
    parts = []
    for stream in self.streams:
      if stream == "position":
        parts.append(x)
      elif stream == "velocity":
        parts.append(pp.velocities(x, length))
      else:
        bones = self.bones
        if bones is None:
          bones = skeletons.skeleton_topology(x.shape[-2])[1]
        parts.append(pp.bone_vectors(x, bones))
    return np.concatenate([pp.flatten(p) for p in parts], axis=-1)


@dataclasses.dataclass(frozen=True)
class SequencePreprocess:
  """Example -> fixed-shape sequence <float32>[num_frames, D] (no skeleton).

  For sequential MNIST and sequence-npz sources, and for video frames
  (``key="frames"``, <uint8>[T0, H, W, C], flattened to [T, H*W*C] and
  multiplied by ``scale=1/255``).

  Attributes:
    num_frames: Output frames; None keeps the source length (which must then
      be the same for every example, as in sequential MNIST).
    key: Sequence field of the source, <f>[T0, D] (or <f>[T0, ...]).
    temporal: ``"pad"`` (zero padding with ``length``) or ``"sample"``.
    scale: Multiplies the values (1/255 for uint8 frames).
  """

  num_frames: int | None = None
  key: str = "x"
  temporal: str = "pad"
  scale: float = 1.0

  def __call__(
      self, element: Element, rng: np.random.Generator | None = None
  ) -> dict[str, np.ndarray]:
    x = np.asarray(element[self.key], np.float32)
    length = int(element.get("length", len(x)))
    if self.num_frames is None:
      x = x[:length]
    elif self.temporal == "sample":
      x = pp.temporal_sample(x, length, self.num_frames, rng)
      length = self.num_frames
    else:
      x, length = pp.pad_to(x, length, self.num_frames, rng)
    out = _ids(element, skip=(self.key, "length"))
    x = x.reshape(x.shape[0], -1)
    if self.scale != 1.0:
      x = x * np.float32(self.scale)
    out.update(x=x, length=np.int32(length))
    return out


def _stack(rows: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Stacks equal-structure rows on a new leading (batch) axis."""
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def per_class_subset(
    labels: Sequence[int] | np.ndarray, count: int, seed: int
) -> np.ndarray:
  """Indices of `count` examples of each class, drawn with `seed`.

  A class with fewer than `count` examples keeps all of them. The draw is
  ``np.random.default_rng(seed)``'s permutation of each class's indices, so
  the same seed gives the same subset; a larger `count` adds examples to a
  smaller one's (for the same seed).

  Args:
    labels: <int>[N] class labels of a split.
    count: Examples per class, >= 1.
    seed: Seed of the draw.

  Returns:
    Sorted <int64> indices into `labels`.

  >>> labels = np.array([0] * 5 + [1] * 2 + [2] * 4)
  >>> idx = per_class_subset(labels, 3, seed=0)
  >>> np.bincount(labels[idx]).tolist()
  [3, 2, 3]
  """
  if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
    raise ValueError(f"count must be an integer >= 1, got {count!r}.")
  if count < 1:
    raise ValueError(f"count must be an integer >= 1, got {count}.")
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  chosen = [np.zeros(0, np.int64)]
  for c in np.unique(labels):
    chosen.append(rng.permutation(np.flatnonzero(labels == c))[:count])
  return np.sort(np.concatenate(chosen))


class Subset(Sequence):
  """The examples `indices` of a random-access `source`, as a source.

  >>> Subset(["a", "b", "c", "d"], [1, 3])[1]
  'd'
  """

  def __init__(self, source: Sequence[Element], indices: Sequence[int]):
    self.source = source
    self.indices = [int(i) for i in indices]

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i):
    return self.source[self.indices[i]]


class _HostRows(grain.MapDataset):
  """Row ``i`` of this process -> its row of the global stream.

  ``parent[g]`` is element ``g`` of the global stream; global batch ``k`` is
  ``parent[k*B : (k+1)*B]`` and shard ``p`` of ``P`` owns its rows
  ``[p*b, (p+1)*b)``, with ``b = B / P``. So the global batches (all shards
  together) do not depend on the number of shards.
  """

  def __init__(
      self,
      parent: grain.MapDataset,
      local_batch: int,
      shard_index: int,
      shard_count: int,
  ):
    super().__init__(parent)
    self._local = local_batch
    self._global = local_batch * shard_count
    self._offset = shard_index * local_batch
    self._length = len(parent) // shard_count

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index):
    if isinstance(index, slice):
      raise TypeError("_HostRows does not support slicing.")
    batch, row = divmod(index, self._local)
    return self._parent[batch * self._global + self._offset + row]

  def __str__(self) -> str:
    return (
        f"_HostRows(global_batch={self._global}, local={self._local}, "
        f"offset={self._offset})"
    )


def _read(source, index_key, index):
  element = source[index]
  return element, (np.int32(index) if index_key else None)


def _row(preprocess, index_key, element, rng=None):
  """A preprocessed example as a batch row: ``mask`` True (and its index)."""
  example, index = element
  out = preprocess(example, rng)
  out["mask"] = np.bool_(True)
  if index_key:
    out[index_key] = index
  return out


def _eval_row(preprocess, index_key, source, pad, g):
  if g >= len(source):
    return pad
  return _row(preprocess, index_key, _read(source, index_key, g))


def _padding_row(preprocess, index_key, source) -> dict[str, np.ndarray]:
  """Zeros shaped like a row, ``mask`` False, ``length`` 1, index -1.

  The length is a valid one (>= 1), so that a model that trusts its lengths
  (no per-call check) computes finite values on padding rows too.
  """
  row = _row(preprocess, index_key, _read(source, index_key, 0))
  pad = {k: np.zeros_like(v) for k, v in row.items()}
  pad["length"] = np.ones_like(row["length"])
  if index_key:
    pad[index_key] = np.int32(-1)
  return pad


def _checked_shards(
    shard_index: int | None, shard_count: int | None, batch_size: int
) -> tuple[int, int]:
  """(shard_index, shard_count), None from jax; both and batch_size checked."""
  if shard_index is None or shard_count is None:
    import jax  # pylint: disable=g-import-not-at-top

    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
  if batch_size <= 0:
    raise ValueError(f"batch_size must be > 0, got {batch_size}")
  return shard_index, shard_count


def _train_rows(
    source: Sequence[Element],
    preprocess,
    index_key: str | None,
    global_batch: int,
    seed: int,
    num_epochs: int | None,
) -> grain.MapDataset:
  """The global training stream: shuffled, repeated, augmented rows."""
  if len(source) < global_batch:
    raise ValueError(
        "training needs at least batch_size * shard_count ="
        f" {global_batch} examples, got {len(source)}"
    )
  ds = grain.MapDataset.range(len(source)).map(
      functools.partial(_read, source, index_key)
  )
  ds = ds.shuffle(seed=seed).repeat(num_epochs)
  return ds.random_map(
      functools.partial(_row, preprocess, index_key), seed=seed
  )


def _eval_rows(
    source: Sequence[Element],
    preprocess,
    index_key: str | None,
    global_batch: int,
) -> grain.MapDataset:
  """One ordered pass, padded to whole global batches with masked rows."""
  total = -(-len(source) // global_batch) * global_batch
  pad = _padding_row(preprocess, index_key, source)
  return grain.MapDataset.range(total).map(
      functools.partial(_eval_row, preprocess, index_key, source, pad)
  )


def _to_iter_dataset(
    ds: grain.MapDataset,
    num_threads: int,
    prefetch_buffer_size: int,
    worker_count: int,
) -> grain.IterDataset:
  """Reads `ds` with threads, then with `worker_count` processes if any."""
  it = ds.to_iter_dataset(
      grain.ReadOptions(
          num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size
      )
  )
  if worker_count:
    from absl import flags  # pylint: disable=g-import-not-at-top

    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags.
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return it


def make_pipeline(
    source: Sequence[Element],
    preprocess,
    *,
    batch_size: int,
    train: bool,
    seed: int = 0,
    num_epochs: int | None = None,
    shard_index: int | None = None,
    shard_count: int | None = None,
    num_threads: int = 4,
    prefetch_buffer_size: int = 64,
    worker_count: int = 0,
    index_key: str | None = None,
) -> grain.IterDataset:
  """Builds the grain pipeline of one process (shard).

  The global batches (all shards together, ``batch_size * shard_count`` rows)
  are the same whatever the number of shards: shard ``p`` reads rows
  ``[p * batch_size, (p+1) * batch_size)`` of each, and the augmentation of an
  example is seeded by its position in the global stream. So a run on two
  hosts sees exactly the batches of a run on one.

  Args:
    source: Random-access examples, e.g. ``tfds.data_source(...)["train"]``.
    preprocess: ``(element, rng_or_None) -> dict`` such as
      `SkeletonPreprocess` or `SequencePreprocess`.
    batch_size: Rows per batch *of this process*.
    train: Shuffle, repeat for `num_epochs`, augment with per-example
      generators, and drop the last partial global batch. Otherwise one
      ordered pass, no randomness, the split padded to whole global batches
      with rows of zeros that have ``mask`` False (and ``length`` 1).
    seed: Seed of the shuffle and of the augmentation (training only).
    num_epochs: Training epochs; None repeats forever.
    shard_index: This process's shard; defaults to `jax.process_index()`.
    shard_count: Number of shards; defaults to `jax.process_count()`.
    num_threads: Threads reading and preprocessing examples.
    prefetch_buffer_size: Elements read ahead by those threads.
    worker_count: Processes for preprocessing (0: none, in-process threads).
    index_key: If given, each row also holds the example's position in
      `source` under this key, <int32> (-1: padding).

  Returns:
    A `grain.IterDataset` of batches of `batch_size` rows; ``iter()`` gives a
    checkpointable iterator (``get_state()`` / ``set_state()``).
  """
  shard_index, shard_count = _checked_shards(
      shard_index, shard_count, batch_size
  )
  global_batch = batch_size * shard_count
  if train:
    ds = _train_rows(
        source, preprocess, index_key, global_batch, seed, num_epochs
    )
  else:
    ds = _eval_rows(source, preprocess, index_key, global_batch)
  ds = _HostRows(ds, batch_size, shard_index, shard_count)
  ds = ds.batch(batch_size, drop_remainder=True, batch_fn=_stack)
  return _to_iter_dataset(ds, num_threads, prefetch_buffer_size, worker_count)
