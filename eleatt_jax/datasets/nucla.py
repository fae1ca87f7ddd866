"""Northwestern-UCLA Multiview Action3D (N-UCLA) skeletons.

Registered as ``nucla``, read from the widely redistributed per-sample JSON
files ``aXX_sYY_eZZ_vVV.json`` (``{"file_name", "skeletons": [T][20][3],
"label": 1..10}``). Each example holds:

  * ``skeleton``: <float32>[T, 20, 3], x, y, z in metres of the 20 Kinect v1
    joints.
  * ``length``: T.
  * ``label``: 0..9 (actions a01-a06, a08, a09, a11, a12 in this order).
  * ``subject`` (``sYY``), ``view`` (``vVV``, 1..3), ``episode`` (``eZZ``),
    ``sample_name``.

Configs (each has ``train``, ``validation`` and ``test``, but one):

  * ``xview`` (the standard protocol): ``train`` is views 1 and 2, ``test`` is
    view 3.
  * ``dev`` (the development protocol, for tuning without touching view 3):
    ``train`` is view 1, ``test`` is view 2.
  * ``xview_trainval``: the ``train`` and ``validation`` splits of ``xview``
    (the same examples) and no ``test``, for a copy of N-UCLA without view 3
    (``xview`` refuses one). Train with it and
    ``--config.data.test_split=validation``; it made the pretrained
    ``nucla_*`` models (``eleatt_jax.pretrained``).
  * ``dev_reverse`` (its other direction): ``train`` is view 2, ``test`` is
    view 1. The two-way development protocol averages ``dev`` and
    ``dev_reverse`` (``benchmarks.reproduce --protocol two_way``).

``validation`` is carved from the training views by subject: the samples of
subject `VALIDATION_SUBJECTS` (chosen once by
``_common.held_out_subjects(range(1, 11), 1, seed=0)`` and fixed here, so the
same on every machine) go to ``validation`` instead of ``train``. Learning-rate
schedules, early stopping and checkpoint choice see ``validation`` only; the
``test`` split is evaluated once, at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from eleatt_jax.datasets import _common
from eleatt_jax.datasets import skeletons

NUM_JOINTS = skeletons.KINECT_V1_NUM_JOINTS  # 20 Kinect v1 joints
#: 0-based index of Kinect v1 joint 2 (spine), the translation centre.
SPINE_JOINT = skeletons.SPINE
#: Action codes (``aXX``) in label order.
ACTIONS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
CLASS_NAMES = (
    "pick_up_with_one_hand",
    "pick_up_with_two_hands",
    "drop_trash",
    "walk_around",
    "sit_down",
    "stand_up",
    "donning",
    "doffing",
    "throw",
    "carry",
)

#: Subjects (``sYY``) of the training views that form ``validation``.
VALIDATION_SUBJECTS = (9,)
NUM_SUBJECTS = 10

_NAME_RE = re.compile(r"^a(\d+)_s(\d+)_e(\d+)_v(\d+)$")

_CITATION = """\
@inproceedings{wang2014cross,
  title={Cross-view Action Modeling, Learning and Recognition},
  author={Wang, Jiang and Nie, Xiaohan and Xia, Yin and Wu, Ying and
          Zhu, Song-Chun},
  booktitle={CVPR}, year={2014}}
"""


@dataclasses.dataclass
class NuclaConfig(tfds.core.BuilderConfig):
  """An N-UCLA protocol.

  Attributes:
    train_views: The views (1..3) of ``train`` and ``validation``.
    test_views: The views of ``test``.
    validation_subjects: The subjects of the training views that go to
      ``validation`` instead of ``train``.
  """

  train_views: tuple[int, ...] = ()
  test_views: tuple[int, ...] = ()
  validation_subjects: tuple[int, ...] = VALIDATION_SUBJECTS

  def split_of(self, subject: int, view: int) -> str | None:
    """The split of a sample (None: in no split of this protocol)."""
    if view in self.test_views:
      return "test"
    if view in self.train_views:
      return "validation" if subject in self.validation_subjects else "train"
    return None


def parse_name(name: str) -> tuple[int, int, int, int]:
  """``aXX_sYY_eZZ_vVV`` -> (action, subject, episode, view).

  >>> parse_name("a08_s03_e01_v02")
  (8, 3, 1, 2)
  """
  m = _NAME_RE.match(name)
  if not m:
    raise ValueError(f"{name!r} is not an N-UCLA sample name aXX_sYY_eZZ_vVV")
  return tuple(int(g) for g in m.groups())  # pytype: disable=bad-return-type


# A sample is {"skeletons": [T][20][3]}: 4 levels. Deeper nesting is damage.
_MAX_JSON_DEPTH = 64


def _too_deep_offset(raw: bytes) -> int:
  """Byte offset where JSON brackets first nest deeper than _MAX_JSON_DEPTH.

  Brackets inside strings count too: this only locates the damage for the
  error message (-1 when no such offset is found).
  """
  b = np.frombuffer(raw, np.uint8)
  step = np.isin(b, (ord("["), ord("{"))).astype(np.int64) - np.isin(
      b, (ord("]"), ord("}"))
  )
  deep = np.flatnonzero(np.cumsum(step) > _MAX_JSON_DEPTH)
  return int(deep[0]) if deep.size else -1


def _decode_json(path: str) -> object:
  """The decoded JSON of the file at `path`.

  Raises:
    CorruptFileError: naming the line/byte offset of bad JSON or UTF-8, or of
      nesting deeper than _MAX_JSON_DEPTH.
  """
  with open(path, "rb") as f:
    raw = f.read()
  try:
    return json.loads(raw)
  except RecursionError:
    raise _common.CorruptFileError(
        path,
        f"byte offset {_too_deep_offset(raw)}",
        f"JSON nested at most {_MAX_JSON_DEPTH} levels deep (a sample is an"
        " object holding [T][20][3]), found deeper nesting",
    ) from None
  except (json.JSONDecodeError, UnicodeDecodeError) as err:
    if isinstance(err, json.JSONDecodeError):
      where = f"line {err.lineno} column {err.colno} (byte offset {err.pos})"
      what = err.msg
    else:
      where, what = f"byte offset {err.start}", "UTF-8 text"
    raise _common.CorruptFileError(
        path, where, f"valid JSON ({what}; truncated file?)"
    ) from None


def _check_keys(path: str, data: object) -> None:
  """Checks that `data` is a JSON object with ``skeletons`` and ``label``."""
  if not isinstance(data, dict):
    raise _common.CorruptFileError(
        path, "top level", "a JSON object with keys file_name, skeletons, label"
    )
  for key in ("skeletons", "label"):
    if key not in data:
      raise _common.CorruptFileError(
          path, f"key {key!r}", f"the key {key!r} (found {sorted(data)})"
      )


def _skeleton_array(path: str, frames: object) -> np.ndarray:
  """``skeletons`` [T][20][3], checked frame by frame, as <float32>[T, 20, 3]."""
  if not isinstance(frames, list) or not frames:
    raise _common.CorruptFileError(
        path, "key 'skeletons'", "a non-empty list of frames [T][20][3]"
    )
  for t, frame in enumerate(frames):
    if (
        not isinstance(frame, list)
        or len(frame) != NUM_JOINTS
        or any(not isinstance(j, list) or len(j) != 3 for j in frame)
    ):
      raise _common.CorruptFileError(
          path,
          f"key 'skeletons', frame {t}",
          f"{NUM_JOINTS} joints of 3 coordinates",
      )
  return _common.float32_array(
      frames, path, "key 'skeletons'", f"[T][{NUM_JOINTS}][3]"
  )


def _check_label(path: str, label: object, action: int) -> None:
  """Checks that ``label`` (1-based) is the label of `action` (``aXX``)."""
  if (
      not isinstance(label, int)
      or isinstance(label, bool)
      or not 1 <= label <= len(ACTIONS)
  ):
    raise _common.CorruptFileError(
        path, "key 'label'", f"an integer in 1..{len(ACTIONS)}, got {label!r}"
    )
  if action not in ACTIONS or ACTIONS.index(action) != label - 1:
    raise _common.CorruptFileError(
        path,
        "key 'label'",
        f"the label of action a{action:02d} per the file name"
        f" ({ACTIONS.index(action) + 1 if action in ACTIONS else 'none'}),"
        f" got {label}",
    )


def read_json_sample(path: os.PathLike[str] | str) -> dict:
  """Reads and checks one N-UCLA JSON sample.

  Args:
    path: ``.../aXX_sYY_eZZ_vVV.json``.

  Returns:
    A dict with ``skeleton`` <float32>[T, 20, 3], ``label`` (0-based),
    ``action``, ``subject``, ``episode``, ``view`` and ``sample_name``.

  Raises:
    CorruptFileError: naming the file and the line/byte offset (bad JSON) or
      the key and frame (bad content) and what was expected.
  """
  path = os.fspath(path)
  stem = os.path.basename(path).rsplit(".", 1)[0]
  try:
    action, subject, episode, view = parse_name(stem)
  except ValueError:
    raise _common.CorruptFileError(
        path, "file name", "a sample name aXX_sYY_eZZ_vVV.json"
    ) from None
  data = _decode_json(path)
  _check_keys(path, data)
  skeleton = _skeleton_array(path, data["skeletons"])
  label = data["label"]
  _check_label(path, label, action)
  return {
      "skeleton": skeleton,
      "length": len(skeleton),
      "label": label - 1,
      "subject": subject,
      "view": view,
      "episode": episode,
      "sample_name": stem,
  }


class Nucla(_common.ManualBuilder):
  """N-UCLA Multiview Action3D (1,494 samples, 10 actions, 3 views)."""

  name = "nucla"
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = _common.release_notes({
      "1.1.0": (
          "Every config has train, validation (subject 9 of the training"
          " views) and test; dev tests on view 2."
      ),
  })
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Get the per-sample N-UCLA skeleton JSON files (the `all_sqe` folder widely
redistributed with skeleton action recognition code, one
`aXX_sYY_eZZ_vVV.json` per sample) and put them anywhere below `manual_dir`,
for example `<manual_dir>/all_sqe/a01_s01_e00_v01.json`.
"""
  BUILDER_CONFIGS = [
      NuclaConfig(
          name="xview",
          description="Train on views 1 and 2, test on view 3.",
          train_views=(1, 2),
          test_views=(3,),
      ),
      NuclaConfig(
          name="dev",
          description="Train on view 1, test on view 2 (development protocol).",
          train_views=(1,),
          test_views=(2,),
      ),
      NuclaConfig(
          name="xview_trainval",
          description=(
              "The train and validation splits of xview (views 1 and 2),"
              " without its test split (view 3)."
          ),
          train_views=(1, 2),
          test_views=(),
      ),
      NuclaConfig(
          name="dev_reverse",
          description=(
              "Train on view 2, test on view 1 (the development protocol's"
              " other direction)."
          ),
          train_views=(2,),
          test_views=(1,),
      ),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=_common.skeleton_features(
            (None, NUM_JOINTS, 3),
            tfds.features.ClassLabel(names=CLASS_NAMES),
            subject=np.int32,
            view=np.int32,
            episode=np.int32,
        ),
        supervised_keys=("skeleton", "label"),
        homepage="https://wangjiangb.github.io/my_data.html",
        citation=_CITATION,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    files = [
        p
        for p in _common.list_files(dl_manager.manual_dir, ".json")
        if _NAME_RE.match(p.name[: -len(".json")])
    ]
    _common.check_manual_dir(
        dl_manager.manual_dir,
        "N-UCLA JSON files aXX_sYY_eZZ_vVV.json",
        bool(files),
        self.name,
        self.MANUAL_DOWNLOAD_INSTRUCTIONS,
    )
    cfg = self.builder_config
    split_files: dict[str, list[epath.Path]] = {"train": [], "validation": []}
    if cfg.test_views:  # xview_trainval has none
      split_files["test"] = []
    for p in files:
      _, subject, _, view = parse_name(p.name[: -len(".json")])
      split = cfg.split_of(subject, view)
      if split is not None:
        split_files[split].append(p)
    train_views = f"view(s) {list(cfg.train_views)} (*_vVV.json)"
    self._require_nonempty(
        dl_manager.manual_dir,
        split_files,
        {
            "train": (
                f"files of {train_views} of subjects other than"
                f" {list(cfg.validation_subjects)}"
            ),
            "validation": (
                f"files of {train_views} of subject(s)"
                f" {list(cfg.validation_subjects)} (*_sYY_*)"
            ),
            "test": f"files of view(s) {list(cfg.test_views)} (*_vVV.json)",
        },
    )
    return {
        split: self._examples(
            split,
            paths,
            lambda p: (p.name[: -len(".json")], read_json_sample(p)),
        )
        for split, paths in split_files.items()
    }

  def _generate_examples(self, **kwargs):  # Unused: see _split_generators.
    raise NotImplementedError
