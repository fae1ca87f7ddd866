"""NTU RGB+D 60 and NTU RGB+D 120 from the raw `.skeleton` text files.

Registered as ``ntu_rgbd60`` (configs ``xsub``, ``xview``) and ``ntu_rgbd120``
(configs ``xsub``, ``xset``). Each example holds up to two actors:

  * ``skeleton``: <float32>[T, 2, 25, 3], camera-space x, y, z in metres of the
    25 Kinect v2 joints; a single actor leaves slot 1 zero.
  * ``length``: T, the number of frames kept (frames with no body are dropped).
  * ``label``: action class, 0-based (``A001`` is 0).
  * ``subject``, ``camera``, ``setup``, ``replication``: the ids in the file
    name ``SsssCcccPpppRrrrAaaa``; ``num_bodies``: actors kept (1 or 2);
    ``sample_name``: the file name without extension.

Body handling (as in the dataset authors' denoising): when more than one body
is tracked, bodies whose x/y spread is implausible for a person (width above
0.8 x height in more than 69% of their frames) are dropped as noise, then the
two bodies with the largest motion (sum over joints and axes of the variance
over time) are kept, the larger motion in slot 0. The samples in the authors'
missing-skeleton lists (shipped with this package) are skipped.

Every config has ``train``, ``validation`` and ``test``. ``test`` is the
protocol's test split. ``validation`` is carved from the protocol's training
samples by performer, about 10% of them, so that learning-rate schedules,
early stopping and checkpoint choice never see ``test``: the training samples
of the performers in `VALIDATION_SUBJECTS` go to ``validation`` instead of
``train``. For ``xsub`` the performers are drawn from the training performers;
for ``xview`` / ``xset`` (whose test split is by camera / setup) from all
performers, and their samples of the training cameras / setups go to
``validation`` (their test-camera / test-setup samples stay in ``test``). Each
choice was made once by ``_common.held_out_subjects(candidates, k, seed=0)``
and is fixed here, so it is the same on every machine:

  * ``ntu_rgbd60/xsub``: 2 of the 20 training performers;
  * ``ntu_rgbd60/xview``: 4 of the 40 performers;
  * ``ntu_rgbd120/xsub``: 5 of the 53 training performers;
  * ``ntu_rgbd120/xset``: 11 of the 106 performers.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from eleatt_jax.datasets import _common
from eleatt_jax.datasets import skeletons

NUM_JOINTS = skeletons.NTU_NUM_JOINTS  # 25 Kinect v2 joints
MAX_BODIES = 2
#: 0-based index of joint 2 (spine middle), the usual translation centre.
SPINE_JOINT = skeletons.SPINE

#: NTU60 cross-subject training performers (also used by NTU120).
NTU60_XSUB_TRAIN = (
    1,
    2,
    4,
    5,
    8,
    9,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    25,
    27,
    28,
    31,
    34,
    35,
    38,
)
#: NTU120 cross-subject training performers.
NTU120_XSUB_TRAIN = NTU60_XSUB_TRAIN + (
    45,
    46,
    47,
    49,
    50,
    52,
    53,
    54,
    55,
    56,
    57,
    58,
    59,
    70,
    74,
    78,
    80,
    81,
    82,
    83,
    84,
    85,
    86,
    89,
    91,
    92,
    93,
    94,
    95,
    97,
    98,
    100,
    103,
)
#: NTU60 cross-view training cameras.
NTU60_XVIEW_TRAIN = (2, 3)
NTU60_NUM_SUBJECTS = 40
NTU120_NUM_SUBJECTS = 106

#: Performers whose training samples form ``validation``, per (dataset,
#: config): ``_common.held_out_subjects(candidates, k, seed=0)`` with the
#: candidates and k of the module docstring.
VALIDATION_SUBJECTS = {
    ("ntu_rgbd60", "xsub"): (19, 31),
    ("ntu_rgbd60", "xview"): (11, 20, 25, 32),
    ("ntu_rgbd120", "xsub"): (27, 31, 53, 58, 85),
    ("ntu_rgbd120", "xset"): (2, 5, 8, 19, 27, 31, 51, 62, 69, 82, 86),
}

_NAME_RE = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")

# Body noise thresholds of the NTU denoising code.
_SPREAD_RATIO = 0.8
_NOISY_FRAME_FRACTION = 0.69

MANUAL_DOWNLOAD_INSTRUCTIONS_60 = """\
Request NTU RGB+D at https://rose1.ntu.edu.sg/dataset/actionRecognition/ and
download `nturgbd_skeletons_s001_to_s017.zip` (3D skeletons, 5.8 GB unpacked).
Unzip it into `manual_dir` so that the `.skeleton` files lie anywhere below it,
for example `<manual_dir>/nturgb+d_skeletons/S001C001P001R001A001.skeleton`.
Only setups S001-S017 are read; the 302 samples with missing skeletons are
skipped.
"""

MANUAL_DOWNLOAD_INSTRUCTIONS_120 = """\
Request NTU RGB+D 120 at https://rose1.ntu.edu.sg/dataset/actionRecognition/
and download `nturgbd_skeletons_s001_to_s017.zip` and
`nturgbd_skeletons_s018_to_s032.zip`. Unzip both into `manual_dir` so that the
`.skeleton` files lie anywhere below it, for example
`<manual_dir>/nturgb+d_skeletons/S001C001P001R001A001.skeleton` and
`<manual_dir>/nturgb+d_skeletons120/S018C001P008R001A061.skeleton`. The 535
samples with missing skeletons are skipped.
"""

_CITATION = """\
@inproceedings{shahroudy2016ntu,
  title={NTU RGB+D: A Large Scale Dataset for 3D Human Activity Analysis},
  author={Shahroudy, Amir and Liu, Jun and Ng, Tian-Tsong and Wang, Gang},
  booktitle={CVPR}, year={2016}}
@article{liu2020ntu,
  title={NTU RGB+D 120: A Large-Scale Benchmark for 3D Human Activity
         Understanding},
  author={Liu, Jun and Shahroudy, Amir and Perez, Mauricio and Wang, Gang and
          Duan, Ling-Yu and Kot, Alex C.},
  journal={IEEE TPAMI}, year={2020}}
"""


@dataclasses.dataclass(frozen=True)
class SampleId:
  """The ids in an NTU file name ``SsssCcccPpppRrrrAaaa`` (all 1-based)."""

  setup: int
  camera: int
  subject: int
  replication: int
  action: int

  @classmethod
  def parse(cls, name: str) -> SampleId:
    """Parses a sample name or file name.

    >>> SampleId.parse("S001C002P003R002A013.skeleton")
    SampleId(setup=1, camera=2, subject=3, replication=2, action=13)
    """
    m = _NAME_RE.search(os.path.basename(os.fspath(name)))
    if not m:
      raise ValueError(
          f"{name}: expected an NTU sample name SsssCcccPpppRrrrAaaa"
      )
    return cls(*(int(g) for g in m.groups()))


@dataclasses.dataclass
class Body:
  """One tracked body of a `.skeleton` file.

  Attributes:
    tracking_id: The Kinect tracking id (a 17-digit integer, as text).
    frames: <int32>[n] 0-based indices of the frames it appears in.
    joints: <float32>[n, 25, 3] camera-space x, y, z of its joints there.
  """

  tracking_id: str
  frames: np.ndarray
  joints: np.ndarray

  @property
  def motion(self) -> float:
    """Sum over joints and axes of the variance over time."""
    return float(self.joints.var(axis=0).sum())

  @property
  def is_noise(self) -> bool:
    """Whether its x/y spread is implausible for a person."""
    spread = self.joints.max(axis=1) - self.joints.min(axis=1)  # [n, 3]
    noisy = spread[:, 0] > _SPREAD_RATIO * spread[:, 1]
    return bool(noisy.mean() > _NOISY_FRAME_FRACTION)


@dataclasses.dataclass
class SkeletonFile:
  """A parsed `.skeleton` file.

  Attributes:
    path: The file.
    num_frames: Frame count from line 1.
    bodies_per_frame: <int32>[num_frames] bodies listed in each frame.
    bodies: The tracked bodies, in order of first appearance.
  """

  path: str
  num_frames: int
  bodies_per_frame: np.ndarray
  bodies: list[Body]


class _SkeletonLines:
  """The lines of a `.skeleton` file, read in order.

  Keeps the position of the last line read, so that every error names the
  file and the 1-based line.
  """

  def __init__(self, path: str, lines: list[str]):
    self.path = path
    self.lines = lines
    self.pos = 0
    self.num_frames = 0  # Line 1's count, once read: a hint when truncated.

  def next(self, expected: str) -> str:
    """The next line; `expected` says what it holds, for the error."""
    lines = self.lines
    if self.pos >= len(lines):
      hint = ""
      if self.num_frames > len(lines) - 1:  # A frame takes at least a line.
        hint = (
            f"; or is the frame count on line 1 ({self.num_frames})"
            f" wrong? Only {len(lines) - 1} lines follow it"
        )
      raise _common.CorruptFileError(
          self.path,
          f"line {self.pos + 1}",
          f"{expected}, but the file ends"
          f" after {len(lines)} lines (truncated?{hint})",
      )
    self.pos += 1
    return lines[self.pos - 1]

  def read_int(self, expected: str) -> int:
    """The next line as an integer >= 0."""
    text = self.next(expected).strip()
    try:
      value = int(text)
    except ValueError:
      raise _common.CorruptFileError(
          self.path, f"line {self.pos}", f"{expected}, got {text[:40]!r}"
      ) from None
    if value < 0:
      raise _common.CorruptFileError(
          self.path, f"line {self.pos}", f"{expected} (>= 0), got {value}"
      )
    return value


def _read_body(lines: _SkeletonLines, b: int, t: int) -> tuple[str, np.ndarray]:
  """Reads body `b` of frame `t` (0-based): its tracking id and joints.

  Args:
    lines: The file, at the body's info line.
    b: The body's index in the frame.
    t: The frame's index.

  Returns:
    The tracking id and the joints' x y z, <float32>[NUM_JOINTS, 3].
  """
  path = lines.path
  info = lines.next(
      f"the info line of body {b + 1} of frame {t + 1} (10 values)"
  ).split()
  if len(info) != 10:
    raise _common.CorruptFileError(
        path,
        f"line {lines.pos}",
        f"the info line of body {b + 1} of frame {t + 1}: 10 values"
        " (tracking id, clippedEdges, ..., trackingState), got"
        f" {len(info)}",
    )
  num_joints = lines.read_int(
      f"the joint count of body {b + 1} of frame {t + 1}"
  )
  if num_joints != NUM_JOINTS:
    raise _common.CorruptFileError(
        path, f"line {lines.pos}", f"joint count {NUM_JOINTS}, got {num_joints}"
    )
  start = lines.pos
  rows = [
      lines.next(
          f"joint {j + 1} of body {b + 1} of frame {t + 1} (12 values)"
      ).split()
      for j in range(NUM_JOINTS)
  ]
  for j, row in enumerate(rows):
    if len(row) != 12:
      raise _common.CorruptFileError(
          path,
          f"line {start + j + 1}",
          f"joint {j + 1} of body {b + 1} of frame {t + 1}: 12 values"
          " (x y z depthX depthY colorX colorY orientationWXYZ"
          f" trackingState), got {len(row)}",
      )
  try:
    xyz = np.array([row[:3] for row in rows], dtype=np.float32)
  except ValueError:
    raise _common.CorruptFileError(
        path,
        f"lines {start + 1}-{lines.pos}",
        f"numeric x y z for the joints of body {b + 1} of frame {t + 1}",
    ) from None
  if not np.all(np.isfinite(xyz)):
    raise _common.CorruptFileError(
        path, f"lines {start + 1}-{lines.pos}", "finite joint coordinates"
    )
  return info[0], xyz


def read_skeleton_file(path: os.PathLike[str] | str) -> SkeletonFile:
  """Parses an NTU RGB+D `.skeleton` text file.

  Args:
    path: The file.

  Returns:
    The frame count and the bodies with their per-frame joints.

  Raises:
    CorruptFileError: naming the file, the 1-based line and what was expected,
      for a truncated file or a malformed line.
  """
  path = os.fspath(path)
  with open(path, "rb") as f:
    text = f.read().decode("ascii", errors="replace").splitlines()
  while text and not text[-1].strip():
    text.pop()  # Trailing blank lines are not content.
  lines = _SkeletonLines(path, text)
  num_frames = lines.read_int("the frame count (an integer)")
  lines.num_frames = num_frames
  # Nothing is allocated from the header's count (999999999999 would need
  # terabytes): frames are read until the count or the file ends.
  per_body_frames: dict[str, list[int]] = {}
  per_body_joints: dict[str, list[np.ndarray]] = {}
  bodies_per_frame = []
  for t in range(num_frames):
    num_bodies = lines.read_int(f"the body count of frame {t + 1}")
    bodies_per_frame.append(num_bodies)
    for b in range(num_bodies):
      tracking_id, xyz = _read_body(lines, b, t)
      if tracking_id not in per_body_frames:
        per_body_frames[tracking_id] = []
        per_body_joints[tracking_id] = []
      elif per_body_frames[tracking_id][-1] == t:
        continue  # The same body listed twice in a frame: keep the first.
      per_body_frames[tracking_id].append(t)
      per_body_joints[tracking_id].append(xyz)
  if lines.pos < len(text):
    raise _common.CorruptFileError(
        path,
        f"line {lines.pos + 1}",
        "the end of the file after the"
        f" {num_frames} frames that line 1 announces, but"
        f" {len(text) - lines.pos} more lines follow (is the frame count on"
        " line 1 wrong?)",
    )
  bodies = [
      Body(
          tid,
          np.asarray(per_body_frames[tid], np.int32),
          np.stack(per_body_joints[tid]),
      )
      for tid in per_body_frames
  ]
  return SkeletonFile(
      path, num_frames, np.asarray(bodies_per_frame, np.int32), bodies
  )


def select_bodies(
    skeleton: SkeletonFile, max_bodies: int = MAX_BODIES
) -> tuple[np.ndarray, int]:
  """Keeps the actors of a parsed file, as a dense array.

  Args:
    skeleton: A parsed file.
    max_bodies: Actor slots in the output.

  Returns:
    A pair: <float32>[T, max_bodies, 25, 3] over the frames in which at least
    one kept body appears (in file order), unused slots zero; and the number of
    bodies kept.

  Raises:
    CorruptFileError: when no frame of the file has a body.
  """
  bodies = skeleton.bodies
  if len(bodies) > 1:
    people = [b for b in bodies if not b.is_noise]
    bodies = people or bodies  # Never drop every body.
  bodies = sorted(bodies, key=lambda b: -b.motion)[:max_bodies]
  if not bodies:
    raise _common.CorruptFileError(
        skeleton.path,
        "all frames",
        "at least one frame with a body (the file has none; it should be in"
        " the missing-skeleton list)",
    )
  dense = np.zeros((skeleton.num_frames, max_bodies, NUM_JOINTS, 3), np.float32)
  present = np.zeros(skeleton.num_frames, bool)
  for slot, body in enumerate(bodies):
    dense[body.frames, slot] = body.joints
    present[body.frames] = True
  return dense[present], len(bodies)


def missing_samples(num_classes: int) -> frozenset[str]:
  """The authors' list of samples with missing skeletons (60 or 120)."""
  if num_classes not in (60, 120):
    raise ValueError(f"num_classes must be 60 or 120, got {num_classes}")
  text = (
      importlib.resources.files("eleatt_jax.datasets")
      .joinpath(f"ntu{num_classes}_missing_skeletons.txt")
      .read_text(encoding="ascii")
  )
  return frozenset(
      line.strip()
      for line in text.splitlines()
      if line.strip() and not line.startswith("#")
  )


@dataclasses.dataclass
class NtuConfig(tfds.core.BuilderConfig):
  """An NTU protocol.

  Attributes:
    split_by: ``"subject"``, ``"camera"`` or ``"setup"``.
    train_ids: The ids (of `split_by`) of the protocol's training samples;
      the rest is `test`. For ``"setup"`` an empty tuple means "even setups".
    validation_subjects: Performers whose training samples go to
      ``validation`` instead of ``train``.
  """

  split_by: str = "subject"
  train_ids: tuple[int, ...] = ()
  validation_subjects: tuple[int, ...] = ()

  def is_train(self, sid: SampleId) -> bool:
    if self.split_by == "subject":
      return sid.subject in self.train_ids
    if self.split_by == "camera":
      return sid.camera in self.train_ids
    if self.split_by == "setup":
      return sid.setup % 2 == 0
    raise ValueError(f"unknown split_by {self.split_by!r}")

  def split_of(self, sid: SampleId) -> str:
    """``"train"``, ``"validation"`` or ``"test"`` for a sample."""
    if not self.is_train(sid):
      return "test"
    return "validation" if sid.subject in self.validation_subjects else "train"


def _protocol(
    dataset: str,
    name: str,
    description: str,
    split_by: str,
    train_ids: tuple[int, ...] = (),
) -> NtuConfig:
  """Protocol `name` of `dataset`, validated on its `VALIDATION_SUBJECTS`."""
  return NtuConfig(
      name=name,
      description=description,
      split_by=split_by,
      train_ids=train_ids,
      validation_subjects=VALIDATION_SUBJECTS[dataset, name],
  )


class _NtuBase(_common.ManualBuilder):
  """Shared code of the NTU builders."""

  NUM_CLASSES = 60
  MAX_SETUP = 17
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = _common.release_notes({
      "1.1.0": (
          "Every config has train, validation (the training samples of"
          " fixed, seeded performers, about 10%) and test. A frame count"
          " that disagrees with the file, or a file name that is not a"
          " sample name, is a CorruptFileError (skipped with"
          " skip_corrupt=True)."
      ),
  })

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=_common.skeleton_features(
            (None, MAX_BODIES, NUM_JOINTS, 3),
            tfds.features.ClassLabel(num_classes=self.NUM_CLASSES),
            subject=np.int32,
            camera=np.int32,
            setup=np.int32,
            replication=np.int32,
            num_bodies=np.int32,
        ),
        supervised_keys=("skeleton", "label"),
        homepage="https://rose1.ntu.edu.sg/dataset/actionRecognition/",
        citation=_CITATION,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    files = _common.list_files(dl_manager.manual_dir, ".skeleton")
    _common.check_manual_dir(
        dl_manager.manual_dir,
        "NTU `.skeleton` files (searched recursively)",
        bool(files),
        self.name,
        self.MANUAL_DOWNLOAD_INSTRUCTIONS,
    )
    missing = missing_samples(self.NUM_CLASSES)
    cfg = self.builder_config
    split_files: dict[str, list[epath.Path]] = {
        "train": [],
        "validation": [],
        "test": [],
    }
    for path in files:
      name = path.name[: -len(".skeleton")]
      if not _NAME_RE.fullmatch(name):
        self.reject(
            "unassigned",
            _common.CorruptFileError(
                path,
                "file name",
                "an NTU sample name SsssCcccPpppRrrrAaaa.skeleton",
            ),
        )
        continue
      sid = SampleId.parse(name)
      if sid.setup > self.MAX_SETUP or sid.action > self.NUM_CLASSES:
        continue
      if name in missing:
        continue
      split_files[cfg.split_of(sid)].append(path)
    val = list(cfg.validation_subjects)
    self._require_nonempty(
        dl_manager.manual_dir,
        split_files,
        {
            "train": (
                f"training samples of protocol {cfg.name} of performers"
                f" other than {val}"
            ),
            "validation": (
                f"training samples of protocol {cfg.name} of"
                f" performer(s) {val} (Pppp)"
            ),
            "test": f"test samples of protocol {cfg.name}",
        },
    )
    return {
        split: self._examples(split, paths, self._read)
        for split, paths in split_files.items()
    }

  def _generate_examples(self, **kwargs):  # Unused: see _split_generators.
    raise NotImplementedError

  @staticmethod
  def _read(path: epath.Path):
    name = path.name[: -len(".skeleton")]
    sid = SampleId.parse(name)
    skeleton, num_bodies = select_bodies(read_skeleton_file(path))
    return name, {
        "skeleton": skeleton,
        "length": len(skeleton),
        "label": sid.action - 1,
        "subject": sid.subject,
        "camera": sid.camera,
        "setup": sid.setup,
        "replication": sid.replication,
        "num_bodies": num_bodies,
        "sample_name": name,
    }


class NtuRgbd60(_NtuBase):
  """NTU RGB+D 60 skeletons (56,578 samples after the missing list)."""

  name = "ntu_rgbd60"
  NUM_CLASSES = 60
  MAX_SETUP = 17
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS_60
  BUILDER_CONFIGS = [
      _protocol(
          "ntu_rgbd60",
          "xsub",
          "Cross-subject: 20 training performers (2 of them validation).",
          "subject",
          NTU60_XSUB_TRAIN,
      ),
      _protocol(
          "ntu_rgbd60",
          "xview",
          "Cross-view: cameras 2 and 3 train"
          " (4 performers' samples validation), camera 1 tests.",
          "camera",
          NTU60_XVIEW_TRAIN,
      ),
  ]


class NtuRgbd120(_NtuBase):
  """NTU RGB+D 120 skeletons (113,945 samples after the missing list)."""

  name = "ntu_rgbd120"
  NUM_CLASSES = 120
  MAX_SETUP = 32
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS_120
  BUILDER_CONFIGS = [
      _protocol(
          "ntu_rgbd120",
          "xsub",
          "Cross-subject: 53 training performers (5 of them validation).",
          "subject",
          NTU120_XSUB_TRAIN,
      ),
      _protocol(
          "ntu_rgbd120",
          "xset",
          "Cross-setup: even setups train"
          " (11 performers' samples validation), odd setups test.",
          "setup",
      ),
  ]
