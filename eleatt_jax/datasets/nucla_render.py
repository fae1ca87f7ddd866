"""N-UCLA skeletons rendered as stick-figure videos from their camera's view.

Registered as ``nucla_render``: the ``nucla`` builder's samples, splits and
protocols (the same JSON files in `manual_dir`), each skeleton drawn as a
video, so that the RGB path (a per-frame CNN and an EleAtt-RNN) can be run on
real motion. Configs: ``dev_t16_s32`` (view 1 trains, view 2 tests: the
development protocol) and ``xview_t16_s32`` (views 1+2 / view 3).

The rasteriser (`render_skeleton`) projects the Kinect v1 camera-space joints
(metres, x right, y up, z away from the camera) with the depth camera's
pinhole, ``u = c + f x / z``, ``v = c - f y / z``, ``f = 571 * S / 480``
pixels (the 571-pixel focal length of its 640 x 480 image, of which the
central 480 x 480 square is kept and scaled to S x S), then draws every bone
of `skeletons.KINECT_V1_BONES` as a one-pixel line of gray 255 on black.
Each video is T frames sampled uniformly from the sequence
(`video.sample_frames`), <uint8>[T, S, S, 1]; the depth, and so the 3-D
coordinates that the skeleton models read, is gone.

>>> joints = np.zeros((20, 3), np.float32); joints[:, 2] = 3.0
>>> joints[3, 1] = 0.5                      # the head, 0.5 m above the spine
>>> frame = render_skeleton(joints, 32)
>>> frame.shape, int(frame.max()), int((frame > 0).sum())  # the neck-head bone
((32, 32), 255, 8)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from eleatt_jax.datasets import _common
from eleatt_jax.datasets import nucla
from eleatt_jax.datasets import skeletons
from eleatt_jax.datasets import video

#: Focal length (pixels) of the Kinect v1 depth camera at 480 rows.
KINECT_FOCAL = 571.0
KINECT_ROWS = 480


def project(joints: np.ndarray, size: int) -> np.ndarray:
  """<f>[..., J, 3] camera-space metres -> <float32>[..., J, 2] (row, col)."""
  f = KINECT_FOCAL * size / KINECT_ROWS
  c = (size - 1) / 2.0
  z = np.maximum(joints[..., 2], 1e-3)  # Missing joints (z = 0) stay finite.
  col = c + f * joints[..., 0] / z
  row = c - f * joints[..., 1] / z
  return np.stack([row, col], axis=-1).astype(np.float32)


def render_skeleton(
    joints: np.ndarray,
    size: int,
    bones=skeletons.KINECT_V1_BONES,
) -> np.ndarray:
  """One frame: <f>[J, 3] joints -> <uint8>[S, S] stick figure.

  Each bone is drawn by rounding ``2 * length + 1`` evenly spaced points of
  the projected segment to pixels (a line one pixel wide, without gaps);
  pixels off the image are dropped. A frame whose joints are all zero (the
  sensor lost the body) is black.
  """
  out = np.zeros((size, size), np.uint8)
  if not np.any(joints):
    return out
  points = project(np.asarray(joints, np.float32), size)
  for a, b in bones:
    p, q = points[a], points[b]
    n = int(np.ceil(2 * np.abs(q - p).max())) + 1
    s = np.linspace(0.0, 1.0, max(n, 2))[:, None]
    rc = np.rint(p + s * (q - p)).astype(np.int64)
    ok = np.all((rc >= 0) & (rc < size), axis=1)
    out[rc[ok, 0], rc[ok, 1]] = 255
  return out


def render_video(skeleton: np.ndarray, num_frames: int, size: int):
  """<f>[T0, J, 3] -> <uint8>[T, S, S, 1], T frames sampled uniformly."""
  frames = video.sample_frames(np.asarray(skeleton), num_frames)
  return np.stack([render_skeleton(j, size) for j in frames])[..., None]


@dataclasses.dataclass
class NuclaRenderConfig(nucla.NuclaConfig):
  """An N-UCLA protocol, and T (num_frames) and S (size) of its videos."""

  num_frames: int = 16
  size: int = 32


class NuclaRender(nucla.Nucla):
  """N-UCLA as stick-figure videos (the ``nucla`` splits and protocols)."""

  name = "nucla_render"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = _common.release_notes({})
  BUILDER_CONFIGS = [
      NuclaRenderConfig(
          name="dev_t16_s32",
          description=(
              "Development protocol (view 1 -> view 2), 16 frames of 32 x 32."
          ),
          train_views=(1,),
          test_views=(2,),
      ),
      NuclaRenderConfig(
          name="xview_t16_s32",
          description="Cross-view (views 1+2 -> view 3), 16 frames of 32 x 32.",
          train_views=(1, 2),
          test_views=(3,),
      ),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "frames": video.frames_feature(cfg.num_frames, cfg.size, 1),
            "length": np.int32,
            "label": tfds.features.ClassLabel(names=nucla.CLASS_NAMES),
            "subject": np.int32,
            "view": np.int32,
            "episode": np.int32,
            "sample_name": tfds.features.Text(),
        }),
        supervised_keys=("frames", "label"),
        homepage="https://wangjiangb.github.io/my_data.html",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    return {
        split: self._rendered(examples)
        for split, examples in super()._split_generators(dl_manager).items()
    }

  def _rendered(self, examples):
    cfg = self.builder_config
    for key, ex in examples:
      skeleton = ex.pop("skeleton")[: ex["length"]]
      ex["frames"] = render_video(skeleton, cfg.num_frames, cfg.size)
      ex["length"] = cfg.num_frames
      yield key, ex
