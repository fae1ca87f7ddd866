"""Writers of small source files in each dataset's format, for the tests."""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import struct

import numpy as np
import pytest


def shared_data_dir() -> pathlib.Path:
  """`$ELEATT_SHARED_DATA`, else ``../shared/data`` beside the repository."""
  env = os.environ.get("ELEATT_SHARED_DATA")
  if env:
    return pathlib.Path(env)
  return pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require_shared(*parts: str) -> pathlib.Path:
  """The path below the shared data dir, or skips the test with the reason."""
  path = shared_data_dir().joinpath(*parts)
  if not path.exists():
    pytest.skip(
        f"real data {path} is absent (set ELEATT_SHARED_DATA to the"
        " folder that holds nucla/, ntu/, basicmotions/)"
    )
  return path


# ----------------------------------------------------------------- NTU ------


def person(t: int, x0: float = 0.0, seed: int = 0, amp: float = 0.05):
  """<float32>[25, 3]: a plausible upright body (taller than wide) at time t."""
  rng = np.random.default_rng(seed)
  base = np.stack(
      [
          x0 + rng.uniform(-0.25, 0.25, 25),  # 0.5 m wide
          rng.uniform(-0.8, 0.8, 25),  # 1.6 m tall
          3.0 + rng.uniform(-0.1, 0.1, 25),
      ],
      axis=1,
  )
  return (base + amp * np.sin(0.3 * t + np.arange(25))[:, None]).astype(
      np.float32
  )


def noise_body(t: int):
  """<float32>[25, 3]: a flat, wide 'body' (a table, a wall) that moves a lot."""
  rng = np.random.default_rng(100 + t)
  return np.stack(
      [
          rng.uniform(-1.5, 1.5, 25),
          rng.uniform(-0.05, 0.05, 25),
          np.full(25, 2.5),
      ],
      axis=1,
  ).astype(np.float32)


def write_ntu_skeleton(path, frames) -> pathlib.Path:
  """Writes an NTU `.skeleton` file.

  Args:
    path: Output file.
    frames: One list per frame of (tracking_id, <f>[25, 3]) bodies.
  """
  lines = [str(len(frames))]
  for bodies in frames:
    lines.append(str(len(bodies)))
    for tid, joints in bodies:
      lines.append(f"{tid} 0 1 1 1 1 0 0.01 0.02 2")
      lines.append("25")
      for x, y, z in joints:
        lines.append(
            f"{x:.7g} {y:.7g} {z:.7g} 250.1 180.2 1000.3 500.4"
            " -0.2 0.05 0.96 -0.12 2"
        )
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("\r\n".join(lines) + "\r\n")
  return path


def one_person_frames(num_frames: int, seed: int = 0):
  return [
      [("72057594037931101", person(t, seed=seed))] for t in range(num_frames)
  ]


# --------------------------------------------------------------- N-UCLA -----


def write_nucla_json(
    directory, action, subject, episode, view, num_frames=6, label=None
) -> pathlib.Path:
  from eleatt_jax.datasets import nucla  # pylint: disable=g-import-not-at-top

  name = f"a{action:02d}_s{subject:02d}_e{episode:02d}_v{view:02d}"
  rng = np.random.default_rng(action * 1000 + subject * 100 + view)
  skel = rng.normal(size=(num_frames, 20, 3)).round(5).tolist()
  if label is None:
    label = nucla.ACTIONS.index(action) + 1
  path = pathlib.Path(directory) / f"{name}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(
      json.dumps({"file_name": name, "skeletons": skel, "label": label})
  )
  return path


# ----------------------------------------------------------------- IDX ------


def write_idx(path, array: np.ndarray, compress: bool = True) -> pathlib.Path:
  """Writes a uint8 IDX file (the MNIST format), gzipped if `compress`."""
  array = np.asarray(array, np.uint8)
  header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(
      f">{array.ndim}I", *array.shape
  )
  data = header + array.tobytes()
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(gzip.compress(data) if compress else data)
  return path


# --------------------------------------------------------------- videos -----

# Gray levels of each class's frames in `write_video_folder`: far apart, so
# that the lossy mpeg4 codec keeps them distinguishable.
VIDEO_LEVELS = {"clap": 40, "jump": 200}


def flat_video(level: int, num_frames: int = 10, hw=(20, 24)) -> np.ndarray:
  """<uint8>[T, H, W, 3]: frames of `level`, brightening by 3 a frame."""
  ramp = np.arange(num_frames, dtype=np.uint8)[:, None, None, None] * 3
  return np.full((num_frames,) + hw + (3,), level, np.uint8) + ramp


def write_video_folder(root: pathlib.Path, per_class: int = 5) -> pathlib.Path:
  """`root/CLASS/v_CLASS_i.avi` (mpeg4, written with PyAV) for each class."""
  from eleatt_jax.datasets import video  # pylint: disable=g-import-not-at-top

  for name, level in VIDEO_LEVELS.items():
    for i in range(per_class):
      video.write_video(root / name / f"v_{name}_{i}.avi", flat_video(level))
  return root
