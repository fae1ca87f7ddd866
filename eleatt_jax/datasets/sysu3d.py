"""SYSU 3D Human-Object Interaction (SYSU-3D) skeletons.

Registered as ``sysu3d``: 480 sequences of 12 actions by 40 subjects, 20 Kinect
v1 joints, read from ``<subject>/video<k>/sklWorld.mat`` (variable ``SW`` of
shape (20, 3, T); ``k`` is the action 1..12). Each example holds:

  * ``skeleton``: <float32>[T, 20, 3];
  * ``length``: T; ``label``: 0..11 (``video<k>`` is label k-1);
  * ``subject``: 1..40, the rank of the subject folder's name in sorted order;
    ``subject_name``: the folder name; ``sample_name``: ``<subject>/video<k>``.

Protocol: cross-subject with seeded random half/half subject splits; config
``xsub_NN`` (NN = 00..29) draws the 20 training subjects with
``np.random.default_rng(NN).permutation`` of the sorted subjects. The
literature reports the mean over 30 such splits.

Every config has ``train``, ``validation`` and ``test``: `NUM_VALIDATION`
(2) of the split's training subjects, drawn per split with
``_common.held_out_subjects(ranks of the training subjects, 2, seed=NN)``
(see `validation_subjects`), go to ``validation`` instead of ``train``: 18 /
2 / 20 subjects with the full data. Like the half/half draw itself, the choice
is computed from the subject folders found, with seeded generators, so it is
the same on every machine.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from eleatt_jax.datasets import _common
from eleatt_jax.datasets import skeletons

NUM_JOINTS = skeletons.KINECT_V1_NUM_JOINTS  # 20 Kinect v1 joints
NUM_SPLITS = 30
#: Training subjects of each split that form ``validation``.
NUM_VALIDATION = 2
CLASS_NAMES = (
    "drinking",
    "pouring",
    "calling_phone",
    "playing_phone",
    "wearing_backpack",
    "packing_backpack",
    "sitting_chair",
    "moving_chair",
    "taking_out_wallet",
    "taking_from_wallet",
    "mopping",
    "sweeping",
)

_VIDEO_RE = re.compile(r"^video(\d+)$")

_CITATION = """\
@inproceedings{hu2015jointly,
  title={Jointly Learning Heterogeneous Features for RGB-D Activity
         Recognition},
  author={Hu, Jian-Fang and Zheng, Wei-Shi and Lai, Jianhuang and Zhang,
          Jianguo},
  booktitle={CVPR}, year={2015}}
"""


def read_mat_sample(path: os.PathLike[str] | str) -> np.ndarray:
  """Reads ``SW`` from a ``sklWorld.mat`` file.

  Args:
    path: The file.

  Returns:
    <float32>[T, 20, 3].

  Raises:
    CorruptFileError: naming the file and the variable or what failed.
  """
  import scipy.io  # pylint: disable=g-import-not-at-top

  path = os.fspath(path)
  try:
    mat = scipy.io.loadmat(path, variable_names=["SW"])
  except Exception as err:  # scipy raises many types for a bad file.
    raise _common.CorruptFileError(
        path,
        "whole file",
        "a MATLAB .mat file with variable SW"
        f" ({type(err).__name__}: {err}; truncated?)",
    ) from None
  if "SW" not in mat:
    raise _common.CorruptFileError(
        path, "variable 'SW'", "a variable SW of shape (20, 3, T)"
    )
  sw = mat["SW"]
  if (
      sw.ndim != 3
      or sw.shape[:2] != (NUM_JOINTS, 3)
      or sw.shape[2] < 1
      or not np.issubdtype(sw.dtype, np.number)
  ):
    raise _common.CorruptFileError(
        path,
        "variable 'SW'",
        f"numbers of shape ({NUM_JOINTS}, 3, T), got"
        f" {sw.dtype}{list(sw.shape)}",
    )
  skeleton = np.ascontiguousarray(np.transpose(sw, (2, 0, 1)), np.float32)
  if not np.isfinite(skeleton).all():
    t = int(np.flatnonzero(~np.isfinite(skeleton).all(axis=(1, 2)))[0])
    raise _common.CorruptFileError(
        path, f"variable 'SW', frame {t}", "finite coordinates"
    )
  return skeleton


def train_subjects(subjects: list[str], split: int) -> frozenset[str]:
  """The 20 (half) training subjects of random split `split`.

  Args:
    subjects: All subject names (any order).
    split: Split index; seeds `np.random.default_rng`.
  """
  ordered = sorted(subjects)
  perm = np.random.default_rng(split).permutation(len(ordered))
  return frozenset(ordered[i] for i in perm[: len(ordered) // 2])


def validation_subjects(subjects: list[str], split: int) -> frozenset[str]:
  """The `NUM_VALIDATION` training subjects of split `split` that validate.

  Drawn from the training subjects of `train_subjects` by
  ``_common.held_out_subjects`` over their ranks (1-based, in sorted order:
  the ``subject`` feature), seeded with `split`.

  Args:
    subjects: All subject names (any order).
    split: Split index.
  """
  ordered = sorted(subjects)
  rank = {s: i + 1 for i, s in enumerate(ordered)}
  train = sorted(rank[s] for s in train_subjects(ordered, split))
  picked = _common.held_out_subjects(
      train, min(NUM_VALIDATION, len(train) - 1), seed=split
  )
  return frozenset(ordered[r - 1] for r in picked)


@dataclasses.dataclass
class SysuConfig(tfds.core.BuilderConfig):
  """Cross-subject split `split` (seed of the subject permutation)."""

  split: int = 0


class Sysu3d(_common.ManualBuilder):
  """SYSU-3D (480 sequences, 12 actions, 40 subjects, 20 joints)."""

  name = "sysu3d"
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = _common.release_notes({
      "1.1.0": (
          "Every config has train, validation (2 of the split's training"
          " subjects, seeded per split) and test."
      ),
  })
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Request the SYSU 3D Human-Object Interaction dataset from its authors
(https://www.isee-ai.cn/~hujianfang/ProjectJOULE.html) and unpack the skeleton
folder (`3DvideoNorm`) so that `manual_dir` holds
`<subject>/video<k>/sklWorld.mat` (40 subject folders, k = action 1..12),
directly or in one sub-folder such as `<manual_dir>/3DvideoNorm/`.
"""
  BUILDER_CONFIGS = [
      SysuConfig(
          name=f"xsub_{i:02d}",
          split=i,
          description=f"Cross-subject, random half/half split {i}.",
      )
      for i in range(NUM_SPLITS)
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=_common.skeleton_features(
            (None, NUM_JOINTS, 3),
            tfds.features.ClassLabel(names=CLASS_NAMES),
            subject=np.int32,
            subject_name=tfds.features.Text(),
        ),
        supervised_keys=("skeleton", "label"),
        homepage="https://www.isee-ai.cn/~hujianfang/ProjectJOULE.html",
        citation=_CITATION,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    files = [
        p
        for p in _common.list_files(dl_manager.manual_dir, "sklWorld.mat")
        if _VIDEO_RE.match(p.parent.name)
    ]
    _common.check_manual_dir(
        dl_manager.manual_dir,
        "<subject>/video<k>/sklWorld.mat files",
        bool(files),
        self.name,
        self.MANUAL_DOWNLOAD_INSTRUCTIONS,
    )
    subjects = sorted({p.parent.parent.name for p in files})
    subject_id = {s: i + 1 for i, s in enumerate(subjects)}
    split = self.builder_config.split
    train = train_subjects(subjects, split)
    val = validation_subjects(subjects, split)
    split_files = {"train": [], "validation": [], "test": []}
    for p in files:
      subject = p.parent.parent.name
      split_files[
          "validation"
          if subject in val
          else "train"
          if subject in train
          else "test"
      ].append(p)
    self._require_nonempty(
        dl_manager.manual_dir,
        split_files,
        {
            "train": (
                "at least 6 subject folders (half train, 2 of those validation)"
            ),
            "validation": "at least 4 subject folders",
            "test": "at least 2 subject folders",
        },
    )

    def read(p):
      subject, video = p.parent.parent.name, p.parent.name
      action = int(_VIDEO_RE.match(video).group(1))
      if not 1 <= action <= len(CLASS_NAMES):
        raise _common.CorruptFileError(
            p, "folder name", f"video<k> with k in 1..{len(CLASS_NAMES)}"
        )
      skeleton = read_mat_sample(p)
      return f"{subject}/{video}", {
          "skeleton": skeleton,
          "length": len(skeleton),
          "label": action - 1,
          "subject": subject_id[subject],
          "subject_name": subject,
          "sample_name": f"{subject}/{video}",
      }

    return {
        s: self._examples(s, paths, read) for s, paths in split_files.items()
    }

  def _generate_examples(self, **kwargs):  # Unused: see _split_generators.
    raise NotImplementedError
