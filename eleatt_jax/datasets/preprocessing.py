"""Skeleton preprocessing and augmentation: pure NumPy functions.

Shapes: a skeleton sequence is <float32>[T, J, 3] (one body) or
<float32>[T, M, J, 3] (M bodies, e.g. NTU's two actors). A body whose joints
are all zero in a frame is *missing* there (an absent second actor, a frame the
sensor lost); every function here keeps missing bodies at exactly zero. (A
single joint at the origin, like the centre joint after `translate`, is not
missing.)

Randomness comes only from the `np.random.Generator` passed in (grain hands
one to each element, derived from the pipeline seed), so every function is
deterministic given its generator, and evaluation passes none.

>>> x = np.zeros((4, 2, 25, 3), np.float32)
>>> x[:, 0] = np.arange(1, 5, dtype=np.float32)[:, None, None]  # one actor
>>> y = translate(x, center_joint=1)
>>> float(y[0, 0, 1, 0]), float(y[3, 0, 1, 0]), float(abs(y[:, 1]).max())
(0.0, 3.0, 0.0)
>>> temporal_sample(y, length=4, num_frames=2).shape
(2, 2, 25, 3)
>>> flatten(y).shape
(4, 150)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from eleatt_jax.datasets import skeletons

# 0-based joint indices shared by Kinect v2 (NTU, 25 joints) and Kinect v1
# (N-UCLA, SYSU-3D, 20 joints), and the palm of the 22-joint hand: defined
# once, with the topologies, in `skeletons`; named here for the callers.
SPINE = skeletons.SPINE
LEFT_SHOULDER = skeletons.LEFT_SHOULDER
RIGHT_SHOULDER = skeletons.RIGHT_SHOULDER
LEFT_HIP, RIGHT_HIP = skeletons.LEFT_HIP, skeletons.RIGHT_HIP
PALM = skeletons.PALM


def as_bodies(x: np.ndarray) -> np.ndarray:
  """<f>[T, J, 3] -> <f>[T, 1, J, 3]; <f>[T, M, J, 3] is returned as is."""
  if x.ndim == 3:
    return x[:, None]
  if x.ndim == 4:
    return x
  raise ValueError(
      f"expected a skeleton [T, J, 3] or [T, M, J, 3], got shape {x.shape}"
  )


def _present(x: np.ndarray) -> np.ndarray:
  """<bool>[..., 1, 1]: whether the body is present in the frame."""
  return np.any(x != 0, axis=(-2, -1), keepdims=True)


def first_valid_frame(x: np.ndarray) -> int:
  """Index of the first frame in which body 0 has a non-missing joint."""
  body0 = as_bodies(x)[:, 0]
  valid = np.flatnonzero(np.any(body0 != 0, axis=(1, 2)))
  return int(valid[0]) if valid.size else 0


def translate(x: np.ndarray, center_joint: int = SPINE) -> np.ndarray:
  """Moves the origin to a joint of body 0 in the first valid frame.

  Args:
    x: <f>[T, J, 3] or <f>[T, M, J, 3].
    center_joint: 0-based joint index (1, spine middle, for NTU and Kinect v1).

  Returns:
    Same shape and dtype; missing bodies stay zero.
  """
  center = as_bodies(x)[first_valid_frame(x), 0, center_joint]
  return np.where(_present(x), x - center, 0).astype(x.dtype, copy=False)


def rotation_matrix(ax: float, ay: float, az: float) -> np.ndarray:
  """<float32>[3, 3] rotation R = Rz(az) @ Ry(ay) @ Rx(ax), angles in rad."""
  cx, sx, cy, sy, cz, sz = (
      np.cos(ax),
      np.sin(ax),
      np.cos(ay),
      np.sin(ay),
      np.cos(az),
      np.sin(az),
  )
  rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
  ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
  rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
  return (rz @ ry @ rx).astype(np.float32)


def rotate(x: np.ndarray, rot: np.ndarray) -> np.ndarray:
  """Applies a [3, 3] rotation to every joint (about the origin)."""
  return (x @ rot.T.astype(x.dtype)).astype(x.dtype, copy=False)


def align_view(
    x: np.ndarray,
    joints: tuple[int, int] = (LEFT_SHOULDER, RIGHT_SHOULDER),
) -> np.ndarray:
  """Rotates about the vertical (y) axis so a body line is parallel to x.

  The vector from ``joints[0]`` to ``joints[1]`` of body 0 in the first valid
  frame (left to right shoulder by default; use ``(LEFT_HIP, RIGHT_HIP)`` for
  the hips) is turned onto the +x direction of the x-z plane. Apply after
  `translate`, so that the rotation is about the centre joint.

  Args:
    x: <f>[T, J, 3] or <f>[T, M, J, 3].
    joints: 0-based (from, to) joint indices.

  Returns:
    Same shape and dtype; missing bodies stay zero.
  """
  frame = as_bodies(x)[first_valid_frame(x), 0]
  v = frame[joints[1]] - frame[joints[0]]
  if not np.any(v[[0, 2]]):
    return x
  angle = np.arctan2(v[2], v[0])  # Rotating by +angle about y zeroes v_z.
  return rotate(x, rotation_matrix(0.0, angle, 0.0))


def body_frame(
    x: np.ndarray,
    hips: tuple[int, int] = (LEFT_HIP, RIGHT_HIP),
    spine: int = SPINE,
) -> np.ndarray:
  """Rotates into a body-centred frame of the first valid frame (3-D).

  x points from the left to the right hip, y from the hips' midpoint to the
  `spine` joint (made orthogonal to x), z = x cross y. The camera's view point
  is then gone entirely (not only about the vertical axis, as in
  `align_view`). Apply after `translate`.

  Args:
    x: <f>[T, J, 3] or <f>[T, M, J, 3].
    hips: 0-based (left, right) hip joints.
    spine: 0-based joint above the hips.

  Returns:
    Same shape and dtype; missing bodies stay zero; unchanged when the hips
    coincide or the spine lies on the hip line.
  """
  frame = as_bodies(x)[first_valid_frame(x), 0].astype(np.float64)
  ex = frame[hips[1]] - frame[hips[0]]
  up = frame[spine] - 0.5 * (frame[hips[0]] + frame[hips[1]])
  nx = np.linalg.norm(ex)
  if nx < 1e-6:
    return x
  ex = ex / nx
  ey = up - np.dot(up, ex) * ex
  ny = np.linalg.norm(ey)
  if ny < 1e-6:
    return x
  ey = ey / ny
  rot = np.stack([ex, ey, np.cross(ex, ey)])  # rows: the new axes
  return rotate(x, rot.astype(np.float32))


def body_size(
    x: np.ndarray,
    top: tuple[int, int] = (LEFT_SHOULDER, RIGHT_SHOULDER),
    bottom: tuple[int, int] = (LEFT_HIP, RIGHT_HIP),
) -> float:
  """Median torso length of body 0: shoulders' to hips' midpoint (metres).

  Frames where body 0 is missing do not count; 0 when it is never present.
  """
  body = as_bodies(x)[:, 0]
  present = np.any(body != 0, axis=(1, 2))
  if not present.any():
    return 0.0
  body = body[present]
  torso = 0.5 * (body[:, top[0]] + body[:, top[1]]) - 0.5 * (
      body[:, bottom[0]] + body[:, bottom[1]]
  )
  return float(np.median(np.linalg.norm(torso, axis=-1)))


def normalize_scale(x: np.ndarray, size: float = 0.5) -> np.ndarray:
  """Scales so that the torso (`body_size`) is `size` metres long.

  A sequence with no measurable torso is returned unchanged.
  """
  current = body_size(x)
  if current < 1e-6:
    return x
  return (x * np.float32(size / current)).astype(x.dtype, copy=False)


def temporal_indices(
    length: int,
    num_frames: int,
    rng: np.random.Generator | None = None,
    offset: float = 0.5,
) -> np.ndarray:
  """Frame indices that sample `num_frames` uniform segments of `length`.

  [0, length) is cut into `num_frames` equal segments and one frame is taken
  from each: at a random offset when `rng` is given (training), at `offset`
  (0.5: the centre) of every segment otherwise (evaluation; other offsets
  give the other clips of test-time averaging). Shorter sequences repeat
  frames.

  >>> temporal_indices(10, 5).tolist()
  [1, 3, 5, 7, 9]
  >>> temporal_indices(10, 5, offset=0.0).tolist()
  [0, 2, 4, 6, 8]

  Args:
    length: Valid frames, >= 1.
    num_frames: Output frames.
    rng: Generator for the offsets; None for fixed ones.
    offset: Where in each segment, in [0, 1), without `rng`.

  Returns:
    <int64>[num_frames], non-decreasing, in [0, length).
  """
  if length < 1:
    raise ValueError(f"length must be >= 1, got {length}")
  if not 0.0 <= offset < 1.0:
    raise ValueError(f"offset must be in [0, 1), got {offset}")
  edges = np.linspace(0.0, float(length), num_frames + 1)
  if rng is None:
    offsets = np.full(num_frames, offset)
  else:
    offsets = rng.uniform(size=num_frames)
  idx = np.floor(edges[:-1] + offsets * (edges[1:] - edges[:-1]))
  return np.clip(idx.astype(np.int64), 0, length - 1)


def temporal_crop(
    x: np.ndarray,
    length: int,
    min_fraction: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int]:
  """A random window of the first `length` frames of `x` (training only).

  Its length is a fraction of `length` drawn uniformly from
  [`min_fraction`, 1] (at least one frame), its start uniformly among those
  that fit.

  Args:
    x: <f>[T, ...] with T >= length.
    length: Valid frames, >= 1.
    min_fraction: The shortest window, as a fraction of `length`, in (0, 1].
    rng: Generator of the window.

  Returns:
    (<f>[kept, ...], kept), kept <= length.
  """
  if not 0.0 < min_fraction <= 1.0:
    raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
  kept = max(1, int(round(length * rng.uniform(min_fraction, 1.0))))
  start = int(rng.integers(0, length - kept + 1))
  return x[start : start + kept], kept


def temporal_sample(
    x: np.ndarray,
    length: int,
    num_frames: int,
    rng: np.random.Generator | None = None,
    offset: float = 0.5,
) -> np.ndarray:
  """<f>[T, ...] -> <f>[num_frames, ...] by `temporal_indices`."""
  return x[temporal_indices(length, num_frames, rng, offset)]


def pad_to(
    x: np.ndarray,
    length: int,
    num_frames: int,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, int]:
  """Zero-pads the first `length` frames of `x` to `num_frames`.

  A sequence longer than `num_frames` is uniformly sampled down to it (by
  `temporal_sample`), never cut.

  Args:
    x: <f>[T, ...] with T >= length.
    length: Valid frames.
    num_frames: Output frames.
    rng: Only used when sampling down (random offsets).

  Returns:
    (<f>[num_frames, ...], the new valid length).
  """
  if length > num_frames:
    return temporal_sample(x, length, num_frames, rng), num_frames
  out = np.zeros((num_frames,) + x.shape[1:], x.dtype)
  out[:length] = x[:length]
  return out, length


def velocities(x: np.ndarray, length: int | None = None) -> np.ndarray:
  """Frame differences: v_t = x_t - x_{t-1}, v_0 = 0.

  A difference is zero where the body is missing in either frame, and at
  and beyond `length` (padding frames).

  >>> x = np.zeros((3, 2, 3), np.float32)
  >>> x[:, 0, 0] = [1.0, 3.0, 6.0]
  >>> x[:, 1, 1] = 1.0  # a second joint, so the body is present
  >>> velocities(x)[:, 0, 0].tolist()
  [0.0, 2.0, 3.0]

  Args:
    x: <f>[T, J, 3] or <f>[T, M, J, 3].
    length: Valid frames (default all).

  Returns:
    Same shape and dtype.
  """
  length = len(x) if length is None else int(length)
  present = _present(x)
  v = np.zeros_like(x)
  both = present[1:length] & present[: max(length - 1, 0)]
  v[1:length] = np.where(both, x[1:length] - x[: max(length - 1, 0)], 0)
  return v


def bone_vectors(
    x: np.ndarray, bones: tuple[tuple[int, int], ...]
) -> np.ndarray:
  """Joint minus its parent: b_j = x_j - x_parent(j), zero for the root.

  Args:
    x: <f>[T, J, 3] or <f>[T, M, J, 3].
    bones: (parent, child) joint pairs, each child once (e.g.
      `skeletons.KINECT_V1_BONES`).

  Returns:
    Same shape and dtype; missing bodies stay zero.

  >>> x = np.arange(9, dtype=np.float32).reshape(1, 3, 3)
  >>> bone_vectors(x, ((0, 1), (1, 2)))[0].tolist()
  [[0.0, 0.0, 0.0], [3.0, 3.0, 3.0], [3.0, 3.0, 3.0]]
  """
  num_joints = x.shape[-2]
  parents = list(range(num_joints))
  for parent, child in bones:
    if not (0 <= parent < num_joints and 0 <= child < num_joints):
      raise ValueError(
          f"bone {(parent, child)} names a joint outside 0..{num_joints - 1}"
      )
    parents[child] = parent
  b = x - x[..., parents, :]
  return np.where(_present(x), b, 0).astype(x.dtype, copy=False)


def flatten(x: np.ndarray) -> np.ndarray:
  """<f>[T, M, J, 3] or <f>[T, J, 3] -> <f>[T, M*J*3] (C order)."""
  return x.reshape(x.shape[0], -1)


def random_rotate(
    x: np.ndarray,
    rng: np.random.Generator,
    max_angle: float = 0.3,
    max_yaw: float | None = None,
) -> np.ndarray:
  """Rotates about x, y and z by angles drawn uniformly in +-max_angle rad.

  `max_yaw`, when given, is the range about the vertical (y) axis instead: a
  wide one (say pi/2) simulates unseen camera positions.
  """
  ax, ay, az = rng.uniform(-max_angle, max_angle, size=3)
  if max_yaw is not None:
    ay = rng.uniform(-max_yaw, max_yaw)
  return rotate(x, rotation_matrix(ax, ay, az))


def random_scale(
    x: np.ndarray, rng: np.random.Generator, max_scale: float = 0.1
) -> np.ndarray:
  """Scales all coordinates by a factor drawn uniformly in 1 +- max_scale."""
  return (x * rng.uniform(1.0 - max_scale, 1.0 + max_scale)).astype(
      x.dtype, copy=False
  )


def jitter(
    x: np.ndarray, rng: np.random.Generator, sigma: float = 0.01
) -> np.ndarray:
  """Adds N(0, sigma^2) noise to the joints of present bodies only."""
  noise = rng.standard_normal(size=x.shape, dtype=np.float32) * np.float32(
      sigma
  )
  return np.where(_present(x), x + noise, 0).astype(x.dtype, copy=False)


@dataclasses.dataclass(frozen=True)
class Augment:
  """Augmentation for the "(aug.)" runs; zero disables a part.

  Attributes:
    max_angle: Rotation about each axis, uniform in +-max_angle rad.
    max_scale: Isotropic scaling, uniform in 1 +- max_scale.
    jitter_sigma: Std (metres) of Gaussian noise on present bodies.
    max_yaw: Rotation about the vertical axis, uniform in +-max_yaw rad,
      instead of +-max_angle; None: +-max_angle.
  """

  max_angle: float = 0.3
  max_scale: float = 0.1
  jitter_sigma: float = 0.01
  max_yaw: float | None = None

  def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Applies rotation, scaling, then jitter (in that order)."""
    if self.max_angle or self.max_yaw:
      x = random_rotate(x, rng, self.max_angle, self.max_yaw)
    if self.max_scale:
      x = random_scale(x, rng, self.max_scale)
    if self.jitter_sigma:
      x = jitter(x, rng, self.jitter_sigma)
    return x
