"""Hand gesture skeletons: DHG-14/28 and SHREC'17 Track (22 hand joints).

Registered as ``dhg`` and ``shrec17``. Both datasets share one layout,
``gesture_g/finger_f/subject_s/essai_e/<skeleton file>``, one frame a line of
22 joints x 3 world coordinates (66 numbers). Each example holds:

  * ``skeleton``: <float32>[T, 22, 3];
  * ``length``: T;
  * ``label``: 0..13 (14 gestures) or 0..27 (28 = gesture x number of
    fingers), per config;
  * ``gesture``, ``finger`` (1: one finger, 2: whole hand), ``subject``,
    ``essai``; ``sample_name``.

DHG-14/28 (``dhg``): ``skeleton_world.txt`` trimmed to the effective gesture
by ``informations_troncage_sequences.txt`` (lines ``g f s e start end``, frame
indices 0-based and inclusive); leave-one-subject-out configs
``14_loso_SS`` / ``28_loso_SS`` (SS = 01..20, the held-out subject is
``test``). ``validation`` is the next subject, ``SS % 20 + 1`` (subject 01
after 20; `DhgConfig.validation_subject`), so 18 subjects train.

SHREC'17 (``shrec17``): ``skeletons_world.txt``, splits from
``train_gestures.txt`` / ``test_gestures.txt`` (lines ``g f s e label14
label28 size``); configs ``14`` and ``28``. ``validation`` is carved from the
training table by subject: the rows of the 3 of 28 subjects in
`SHREC_VALIDATION_SUBJECTS` (``_common.held_out_subjects(range(1, 29), 3,
seed=0)``, fixed here), about 10% of the training sequences.

Learning-rate schedules, early stopping and checkpoint choice see
``validation`` only; ``test`` is evaluated once, at the end.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from eleatt_jax.datasets import _common
from eleatt_jax.datasets import skeletons

NUM_JOINTS = skeletons.HAND_NUM_JOINTS  # 22 hand joints
NUM_DHG_SUBJECTS = 20
NUM_SHREC_SUBJECTS = 28
#: SHREC'17 subjects whose training sequences form ``validation``.
SHREC_VALIDATION_SUBJECTS = (15, 18, 23)
#: 0-based index of the palm joint, the usual translation centre.
PALM_JOINT = skeletons.PALM
GESTURES = (
    "grab",
    "tap",
    "expand",
    "pinch",
    "rotation_clockwise",
    "rotation_counter_clockwise",
    "swipe_right",
    "swipe_left",
    "swipe_up",
    "swipe_down",
    "swipe_x",
    "swipe_plus",
    "swipe_v",
    "shake",
)


def class_names(num_classes: int) -> tuple[str, ...]:
  """14 gesture names, or 28 = each gesture with ``_1finger``/``_hand``."""
  if num_classes == 14:
    return GESTURES
  return tuple(f"{g}_{f}" for g in GESTURES for f in ("1finger", "hand"))


def read_skeleton_txt(
    path: os.PathLike[str] | str,
    start: int | None = None,
    end: int | None = None,
) -> np.ndarray:
  """Reads a DHG / SHREC'17 skeleton text file.

  Args:
    path: ``skeleton_world.txt`` or ``skeletons_world.txt``.
    start: First frame kept (0-based), default 0.
    end: Last frame kept (0-based, inclusive), default the last.

  Returns:
    <float32>[T, 22, 3].

  Raises:
    CorruptFileError: naming the file, the 1-based line and what was expected.
  """
  path = os.fspath(path)
  with open(path, "rb") as f:
    lines = [l for l in f.read().decode("ascii", "replace").splitlines()]
  while lines and not lines[-1].strip():
    lines.pop()
  if not lines:
    raise _common.CorruptFileError(
        path, "line 1", f"{NUM_JOINTS * 3} numbers a line; the file is empty"
    )
  rows = []
  for i, line in enumerate(lines):
    values = line.split()
    if len(values) != NUM_JOINTS * 3:
      raise _common.CorruptFileError(
          path,
          f"line {i + 1}",
          f"{NUM_JOINTS * 3} numbers (22 joints x y z), got {len(values)}"
          " (truncated?)",
      )
    try:
      rows.append([float(v) for v in values])
    except ValueError:
      raise _common.CorruptFileError(
          path, f"line {i + 1}", f"{NUM_JOINTS * 3} numbers"
      ) from None
  skeleton = np.asarray(rows, np.float32).reshape(-1, NUM_JOINTS, 3)
  if not np.isfinite(skeleton).all():
    t = int(np.flatnonzero(~np.isfinite(skeleton).all(axis=(1, 2)))[0])
    raise _common.CorruptFileError(path, f"line {t + 1}", "finite numbers")
  start = 0 if start is None else start
  end = len(skeleton) - 1 if end is None else end
  if not 0 <= start <= end < len(skeleton):
    raise _common.CorruptFileError(
        path,
        f"frames {start}..{end}",
        f"a trimming range inside the {len(skeleton)} frames of the file",
    )
  return skeleton[start : end + 1]


def _read_table(path: epath.Path, num_fields: int) -> list[list[int]]:
  """Reads a whitespace table of integers; errors name the line."""
  rows = []
  for i, line in enumerate(path.read_text().splitlines()):
    if not line.strip():
      continue
    fields = line.split()
    try:
      row = [int(float(v)) for v in fields]
    except ValueError:
      row = []
    if len(row) != num_fields:
      raise _common.CorruptFileError(
          path, f"line {i + 1}", f"{num_fields} integers, got {line[:60]!r}"
      )
    rows.append(row)
  return rows


def _find_one(root: epath.Path, name: str) -> epath.Path | None:
  found = _common.list_files(root, name)
  found = [p for p in found if p.name == name]
  return found[0] if found else None


def _features(num_classes: int) -> tfds.features.FeaturesDict:
  return _common.skeleton_features(
      (None, NUM_JOINTS, 3),
      tfds.features.ClassLabel(names=class_names(num_classes)),
      gesture=np.int32,
      finger=np.int32,
      subject=np.int32,
      essai=np.int32,
  )


def _example(g, f, s, e, label, skeleton):
  name = f"g{g:02d}_f{f}_s{s:02d}_e{e}"
  return name, {
      "skeleton": skeleton,
      "length": len(skeleton),
      "label": label,
      "gesture": g,
      "finger": f,
      "subject": s,
      "essai": e,
      "sample_name": name,
  }


@dataclasses.dataclass
class DhgConfig(tfds.core.BuilderConfig):
  """DHG protocol: `num_classes` (14 or 28), held-out subjects.

  Attributes:
    num_classes: 14 gestures, or 28 (gesture x finger mode).
    test_subject: The subject of ``test``.
    validation_subject: The subject of ``validation`` (the next one).
  """

  num_classes: int = 14
  test_subject: int = 1
  validation_subject: int = 2

  def split_of(self, subject: int) -> str:
    if subject == self.test_subject:
      return "test"
    return "validation" if subject == self.validation_subject else "train"


class Dhg(_common.ManualBuilder):
  """DHG-14/28 (2,800 sequences, 20 subjects), leave-one-subject-out."""

  name = "dhg"
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = _common.release_notes({
      "1.1.0": (
          "Every config has train, validation (the subject after the"
          " test subject) and test."
      ),
  })
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download DHG-14/28 (`DHG2016.zip`, http://www-rech.telecom-lille.fr/DHGdataset/)
and unzip it so that `manual_dir` holds `informations_troncage_sequences.txt`
and `gesture_g/finger_f/subject_s/essai_e/skeleton_world.txt` (directly or in
one sub-folder such as `<manual_dir>/DHG2016/`).
"""
  BUILDER_CONFIGS = [
      DhgConfig(
          name=f"{n}_loso_{s:02d}",
          num_classes=n,
          test_subject=s,
          validation_subject=s % NUM_DHG_SUBJECTS + 1,
          description=(
              f"{n} classes, subject {s} held out for test,"
              f" subject {s % NUM_DHG_SUBJECTS + 1} for validation."
          ),
      )
      for n in (14, 28)
      for s in range(1, NUM_DHG_SUBJECTS + 1)
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=_features(self.builder_config.num_classes),
        supervised_keys=("skeleton", "label"),
        homepage="http://www-rech.telecom-lille.fr/DHGdataset/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    table = _find_one(
        dl_manager.manual_dir, "informations_troncage_sequences.txt"
    )
    _common.check_manual_dir(
        dl_manager.manual_dir,
        "informations_troncage_sequences.txt",
        table is not None,
        self.name,
        self.MANUAL_DOWNLOAD_INSTRUCTIONS,
    )
    root = table.parent
    cfg = self.builder_config
    splits = {"train": [], "validation": [], "test": []}
    for row in _read_table(table, 6):
      splits[cfg.split_of(row[2])].append(row)
    self._require_nonempty(
        dl_manager.manual_dir,
        splits,
        {
            "train": "sequences of other subjects",
            "validation": f"sequences of subject {cfg.validation_subject}",
            "test": f"sequences of subject {cfg.test_subject}",
        },
    )

    def read(row):
      g, f, s, e, start, end = row
      path = (
          root
          / f"gesture_{g}"
          / f"finger_{f}"
          / f"subject_{s}"
          / f"essai_{e}"
          / "skeleton_world.txt"
      )
      if not path.exists():
        raise _common.CorruptFileError(
            path, "whole file", f"the sequence listed in {table.name}"
        )
      label = g - 1 if cfg.num_classes == 14 else 2 * (g - 1) + (f - 1)
      return _example(g, f, s, e, label, read_skeleton_txt(path, start, end))

    return {s: self._examples(s, rows, read) for s, rows in splits.items()}

  def _generate_examples(self, **kwargs):  # Unused: see _split_generators.
    raise NotImplementedError


@dataclasses.dataclass
class Shrec17Config(tfds.core.BuilderConfig):
  """SHREC'17 label set: 14 or 28 classes."""

  num_classes: int = 14


class Shrec17(_common.ManualBuilder):
  """SHREC'17 Track: 3D hand gestures (1,960 train / 840 test)."""

  name = "shrec17"
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = _common.release_notes({
      "1.1.0": (
          "Every config has train, validation (the training sequences"
          " of subjects 15, 18 and 23) and test."
      ),
  })
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download the SHREC'17 Track dataset (`HandGestureDataset_SHREC2017`,
http://www-rech.telecom-lille.fr/shrec2017-hand/) and unzip it so that
`manual_dir` holds `train_gestures.txt`, `test_gestures.txt` and
`gesture_g/finger_f/subject_s/essai_e/skeletons_world.txt` (directly or in one
sub-folder).
"""
  BUILDER_CONFIGS = [
      Shrec17Config(name="14", num_classes=14, description="14 gestures."),
      Shrec17Config(
          name="28",
          num_classes=28,
          description="28 = 14 gestures x 2 finger modes.",
      ),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=_features(self.builder_config.num_classes),
        supervised_keys=("skeleton", "label"),
        homepage="http://www-rech.telecom-lille.fr/shrec2017-hand/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    train_table = _find_one(dl_manager.manual_dir, "train_gestures.txt")
    _common.check_manual_dir(
        dl_manager.manual_dir,
        "train_gestures.txt and test_gestures.txt",
        train_table is not None,
        self.name,
        self.MANUAL_DOWNLOAD_INSTRUCTIONS,
    )
    root = train_table.parent
    test_table = root / "test_gestures.txt"
    if not test_table.exists():
      raise _common.ManualDirError(
          f"{self.name}: {os.fspath(test_table)} is missing (expected beside"
          " train_gestures.txt)"
      )
    n = self.builder_config.num_classes

    def read(row):
      g, f, s, e, label14, label28, size = row
      path = (
          root
          / f"gesture_{g}"
          / f"finger_{f}"
          / f"subject_{s}"
          / f"essai_{e}"
          / "skeletons_world.txt"
      )
      if not path.exists():
        raise _common.CorruptFileError(
            path, "whole file", "the sequence listed in the gestures table"
        )
      skeleton = read_skeleton_txt(path)
      if len(skeleton) != size:
        raise _common.CorruptFileError(
            path,
            f"line {len(skeleton) + 1}",
            f"{size} frames as listed in"
            f" the gestures table, got {len(skeleton)} (truncated?)",
        )
      label = label14 if n == 14 else label28
      if not 1 <= label <= n:
        raise _common.CorruptFileError(
            path, "gestures table", f"a label in 1..{n}, got {label}"
        )
      return _example(g, f, s, e, label - 1, skeleton)

    splits = {"train": [], "validation": [], "test": _read_table(test_table, 7)}
    for row in _read_table(train_table, 7):
      splits[
          "validation" if row[2] in SHREC_VALIDATION_SUBJECTS else "train"
      ].append(row)
    self._require_nonempty(
        dl_manager.manual_dir,
        splits,
        {
            "train": (
                f"rows of {train_table.name} of subjects other than"
                f" {list(SHREC_VALIDATION_SUBJECTS)}"
            ),
            "validation": (
                f"rows of {train_table.name} of subject(s)"
                f" {list(SHREC_VALIDATION_SUBJECTS)}"
            ),
            "test": f"rows in {test_table.name}",
        },
    )
    return {s: self._examples(s, rows, read) for s, rows in splits.items()}

  def _generate_examples(self, **kwargs):  # Unused: see _split_generators.
    raise NotImplementedError
