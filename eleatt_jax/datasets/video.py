"""Video files: decoding (PyAV), frame sampling and the ``video_folder`` builder.

Registered as ``video_folder``. `manual_dir` holds one folder per class with
that class's videos, the layout of UCF101, HMDB51 and JHMDB::

  manual_dir/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi
  manual_dir/Archery/v_Archery_g01_c01.avi
  ...

(the class is the name of a video's folder, found at any depth, so
``manual_dir=UCF-101/..`` works too). Each example holds

  * ``frames``: <uint8>[T, S, S, C], T = the config's ``num_frames`` frames
    sampled from the whole video (``uniform``: the centre of each of T equal
    segments; ``jitter``: a random frame of each segment, seeded by the
    video's path), each resized to S x S (no crop; RGB, C = 3, or gray,
    C = 1), zlib-compressed in the records;
  * ``length`` (T), ``label`` (the class folder, classes sorted by name),
    ``index`` (the video's position in the sorted list of all videos) and
    ``video`` (its path relative to `manual_dir`).

Splits ``train``, ``validation`` and ``test``:

  * UCF101 split lists (``trainlist0N.txt`` / ``testlist0N.txt``, lines
    ``CLASS/VIDEO.avi [label]``) anywhere below `manual_dir` give train and
    test for the config's ``split`` N;
  * else HMDB51 / JHMDB split files (``CLASS_test_splitN.txt``, lines
    ``VIDEO.avi 1|2|0``: 1 train, 2 test, 0 unused) do;
  * else a seeded stratified `TEST_FRACTION` of each class is ``test``.

``validation`` is always a seeded stratified `VALIDATION_FRACTION` of the
training videos (``_common.stratified_holdout``), which leave ``train``:
model selection never sees ``test``.

A video that cannot be opened or decoded, or holds no frame, raises
`CorruptFileError` naming the file (or, with ``skip_corrupt=True``, is
skipped and counted): the codec's own error is caught where it is raised.

Builder configs (`VideoConfig`): ``t16_s112`` (16 RGB frames of 112 x 112,
the C3D input of UCF101/HMDB51 work), ``t16_s64``, ``t16_s32``,
``t8_s16`` (tests) and ``t16_s32_gray``; a config of one's own is
``VideoFolder(config=VideoConfig(name=..., num_frames=..., size=...))``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zlib
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds

from eleatt_jax.datasets import _common
from eleatt_jax.datasets import preprocessing

#: File name endings taken for videos (case-insensitive).
VIDEO_SUFFIXES = (
    ".avi",
    ".mp4",
    ".mkv",
    ".webm",
    ".mov",
    ".mpg",
    ".mpeg",
    ".m4v",
    ".ogv",
)
SAMPLINGS = ("uniform", "jitter")
#: Without split files: the part of each class that becomes ``test``.
TEST_FRACTION = 0.2
TEST_SEED = 0
#: The part of each class of the training videos that becomes ``validation``.
VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 0
#: A decode that yields fewer than this share of the frames the container
#: announces is reported as truncated.
MIN_DECODED_SHARE = 0.5


def _av():
  """The `av` module (PyAV), or an ImportError that says how to install it."""
  try:
    import av  # pylint: disable=g-import-not-at-top
  except ImportError as err:
    raise ImportError(
        "video decoding needs PyAV: pip install 'eleatt-jax[video]' (or"
        " pip install av)"
    ) from err
  return av


def read_frames(
    path: os.PathLike[str] | str,
    size: int | tuple[int, int] | None = None,
    grayscale: bool = False,
) -> np.ndarray:
  """Decodes every frame of a video file.

  Each frame is converted (and resized, by FFmpeg's swscale) as it is
  decoded, so memory holds only the small frames.

  Args:
    path: A video file any FFmpeg build reads (avi, mp4, mkv, webm...).
    size: ``S`` or ``(height, width)`` of the output frames; None keeps the
      video's own size.
    grayscale: One luma channel instead of RGB.

  Returns:
    <uint8>[N, H, W, C], C = 1 (gray) or 3 (RGB).

  Raises:
    CorruptFileError: naming the file and what failed (the container, the
      frame being decoded, no frame at all, or far fewer frames than the
      container announces).
  """
  av = _av()
  path = os.fspath(path)
  if isinstance(size, int):
    size = (size, size)
  fmt = "gray" if grayscale else "rgb24"
  kwargs = {} if size is None else {"height": size[0], "width": size[1]}
  frames = []
  try:
    container = av.open(path)
  except (av.error.FFmpegError, OSError, ValueError) as err:
    raise _common.CorruptFileError(
        path, "container", f"a video file FFmpeg can open ({err})"
    ) from None
  with container:
    if not container.streams.video:
      raise _common.CorruptFileError(
          path, "streams", "a video stream, the file has none"
      )
    stream = container.streams.video[0]
    announced = int(stream.frames or 0)
    try:
      for frame in container.decode(stream):
        frames.append(frame.to_ndarray(format=fmt, **kwargs))
    except (av.error.FFmpegError, OSError, ValueError) as err:
      raise _common.CorruptFileError(
          path, f"frame {len(frames)}", f"a decodable frame ({err})"
      ) from None
  if not frames:
    raise _common.CorruptFileError(
        path, "frame 0", "at least one decodable frame, found none"
    )
  if announced and len(frames) < MIN_DECODED_SHARE * announced:
    raise _common.CorruptFileError(
        path,
        f"frame {len(frames)}",
        f"{announced} frames (the container's count), decoded only"
        f" {len(frames)}: is the file truncated?",
    )
  out = np.stack(frames)
  return out[..., None] if out.ndim == 3 else out


def sample_frames(
    frames: np.ndarray,
    num_frames: int,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
  """`num_frames` frames, one from each of that many equal segments.

  Args:
    frames: <T0, ...> all frames.
    num_frames: T.
    rng: None: each segment's centre; else a random frame of each segment.

  >>> sample_frames(np.arange(10), 5).tolist()
  [1, 3, 5, 7, 9]
  """
  return frames[preprocessing.temporal_indices(len(frames), num_frames, rng)]


def write_video(
    path: os.PathLike[str] | str,
    frames: np.ndarray,
    fps: int = 25,
    codec: str = "mpeg4",
) -> None:
  """Encodes <uint8>[T, H, W, 3] (H and W even) frames into a video file.

  For tests and rendered data (``mpeg4`` in ``.avi`` or ``.mp4`` is in every
  FFmpeg build; ``libx264`` in most).

  >>> import tempfile
  >>> path = os.path.join(tempfile.mkdtemp(), "ramp.avi")
  >>> frames = np.zeros((6, 16, 16, 3), np.uint8) + np.arange(6)[
  ...     :, None, None, None].astype(np.uint8) * 40
  >>> write_video(path, frames)
  >>> read_frames(path).shape
  (6, 16, 16, 3)
  """
  av = _av()
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(
        "write_video: expected <uint8>[T, H, W, 3] frames, got"
        f" {frames.dtype}{list(frames.shape)}"
    )
  os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
  with av.open(os.fspath(path), "w") as container:
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "yuv420p"
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, "rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def frames_feature(num_frames: int | None, size: int, channels: int):
  """The compact ``frames`` feature: uint8, zlib-compressed."""
  return tfds.features.Tensor(
      shape=(num_frames, size, size, channels),
      dtype=np.uint8,
      encoding="zlib",
  )


@dataclasses.dataclass
class VideoConfig(tfds.core.BuilderConfig):
  """How videos become examples.

  Attributes:
    num_frames: T, frames kept of each video.
    size: S, frames are resized to S x S.
    grayscale: One channel instead of RGB.
    sampling: ``"uniform"`` (segment centres) or ``"jitter"`` (a random
      frame of each segment, seeded by the video's path).
    split: N of UCF101's ``trainlist0N.txt`` or HMDB51's ``_test_splitN``.
  """

  num_frames: int = 16
  size: int = 112
  grayscale: bool = False
  sampling: str = "uniform"
  split: int = 1


def _config(t: int, s: int, gray: bool = False) -> VideoConfig:
  return VideoConfig(
      name=f"t{t}_s{s}" + ("_gray" if gray else ""),
      num_frames=t,
      size=s,
      grayscale=gray,
      description=f"{t} {'gray' if gray else 'RGB'} frames of {s} x {s}.",
  )


def _path_seed(relative: str) -> int:
  """A seed from a video's relative path (the same on every machine)."""
  return zlib.crc32(relative.encode("utf-8"))


def find_videos(root: os.PathLike[str] | str) -> list[str]:
  """Paths (relative to `root`, '/'-separated) of the videos below it."""
  root = os.fspath(root)
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for f in filenames:
      if f.lower().endswith(VIDEO_SUFFIXES) and not f.startswith("."):
        rel = os.path.relpath(os.path.join(dirpath, f), root)
        found.append(rel.replace(os.sep, "/"))
  return sorted(found)


def _class_of(relative: str) -> str:
  parts = relative.split("/")
  return parts[-2] if len(parts) >= 2 else ""


def _find_named(root: str, pattern: str) -> list[str]:
  """Files below `root` whose name matches the regular expression."""
  out = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    out.extend(
        os.path.join(dirpath, f) for f in filenames if re.fullmatch(pattern, f)
    )
  return sorted(out)


def _ucf_lists(root: str, split: int) -> dict[str, set[str]] | None:
  """{'train': {'CLASS/VIDEO.avi'}, 'test': ...} from UCF101 lists, or None."""
  lists = {}
  for name in ("train", "test"):
    found = _find_named(root, f"{name}list0*{split}\\.txt")
    if not found:
      return None
    entries = set()
    with open(found[0], encoding="utf-8") as f:
      for line in f:
        fields = line.split()
        if fields:
          entries.add("/".join(fields[0].replace("\\", "/").split("/")[-2:]))
    lists[name] = entries
  return lists


def _hmdb_lists(root: str, split: int) -> dict[str, set[str]] | None:
  """The same from HMDB51 / JHMDB ``CLASS_test_splitN.txt`` files, or None."""
  found = _find_named(root, f".+_test_split{split}\\.txt")
  if not found:
    return None
  lists = {"train": set(), "test": set()}
  for path in found:
    cls = os.path.basename(path)[: -len(f"_test_split{split}.txt")]
    with open(path, encoding="utf-8") as f:
      for i, line in enumerate(f):
        fields = line.split()
        if not fields:
          continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
          raise _common.CorruptFileError(
              path,
              f"line {i + 1}",
              f"'VIDEO.avi 0|1|2' (0 unused, 1 train, 2 test), got {line!r}",
          )
        if fields[1] != "0":
          split_name = "train" if fields[1] == "1" else "test"
          lists[split_name].add(f"{cls}/{fields[0]}")
  return lists


class VideoFolder(_common.ManualBuilder):
  """Labelled videos in class folders (UCF101 / HMDB51 / JHMDB layout)."""

  name = "video_folder"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = _common.release_notes({})
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Put one folder per class in `manual_dir`, each holding that class's videos
(`manual_dir/CLASS/VIDEO.avi`; mp4, mkv, webm... work too): the layout of
UCF101 (`UCF-101/`), HMDB51 (each class's .rar unpacked) and JHMDB
(`ReCompress_Videos/`). Optional split files anywhere below `manual_dir`:
UCF101's `trainlist01.txt` / `testlist01.txt` or HMDB51's
`CLASS_test_split1.txt`; without them 20% of each class is the test split.
"""
  BUILDER_CONFIGS = [
      _config(16, 112),
      _config(16, 64),
      _config(16, 32),
      _config(8, 16),
      _config(16, 32, gray=True),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    if cfg.sampling not in SAMPLINGS:
      raise ValueError(
          f"video_folder: sampling must be one of {SAMPLINGS}, got"
          f" {cfg.sampling!r}"
      )
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "frames": frames_feature(
                cfg.num_frames, cfg.size, 1 if cfg.grayscale else 3
            ),
            "length": np.int32,
            "label": tfds.features.ClassLabel(),  # Names set from the folders.
            "index": np.int32,
            "video": tfds.features.Text(),
        }),
        supervised_keys=("frames", "label"),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = os.fspath(dl_manager.manual_dir)
    videos = [v for v in find_videos(root) if _class_of(v)]
    _common.check_manual_dir(
        dl_manager.manual_dir,
        f"videos in class folders (CLASS/VIDEO{{{','.join(VIDEO_SUFFIXES)}}})",
        bool(videos),
        self.name,
        self.MANUAL_DOWNLOAD_INSTRUCTIONS,
    )
    class_names = sorted({_class_of(v) for v in videos})
    self.info.features["label"].names = class_names
    labels = np.array([class_names.index(_class_of(v)) for v in videos])
    index = {v: i for i, v in enumerate(videos)}
    lists = _ucf_lists(root, self.builder_config.split) or _hmdb_lists(
        root, self.builder_config.split
    )
    if lists is None:
      train, test = _common.stratified_holdout(labels, TEST_FRACTION, TEST_SEED)
    else:
      keyed = {"/".join(v.split("/")[-2:]): i for v, i in index.items()}
      train, test = (
          np.array(sorted(keyed[e] for e in lists[s] if e in keyed), np.int64)
          for s in ("train", "test")
      )
    kept, held = _common.stratified_holdout(
        labels[train], VALIDATION_FRACTION, VALIDATION_SEED
    )
    rows = {"train": train[kept], "validation": train[held], "test": test}
    self._require_nonempty(
        root,
        {s: list(r) for s, r in rows.items()},
        {
            "train": "videos listed for training",
            "validation": "a class with two or more training videos",
            "test": "videos listed for testing",
        },
    )
    return {
        split: self._examples(
            split,
            [(videos[i], int(labels[i]), int(i)) for i in r],
            lambda item: self._read(root, *item),
        )
        for split, r in rows.items()
    }

  def _read(self, root: str, relative: str, label: int, index: int):
    cfg = self.builder_config
    frames = read_frames(os.path.join(root, relative), cfg.size, cfg.grayscale)
    rng = (
        np.random.default_rng(_path_seed(relative))
        if cfg.sampling == "jitter"
        else None
    )
    return relative, {
        "frames": sample_frames(frames, cfg.num_frames, rng),
        "length": cfg.num_frames,
        "label": label,
        "index": index,
        "video": relative,
    }

  def _generate_examples(self, **kwargs):  # Unused: see _split_generators.
    raise NotImplementedError


def load_video(
    path: os.PathLike[str] | str,
    num_frames: int,
    size: int,
    grayscale: bool = False,
) -> np.ndarray:
  """A video file as the builder stores it: <uint8>[T, S, S, C].

  What `train.stream --video` feeds the model: the same decoding, uniform
  sampling and resizing as a ``video_folder`` config of ``num_frames`` and
  ``size``.
  """
  return sample_frames(read_frames(path, size, grayscale), num_frames)


def check_frames(frames: np.ndarray, expected: Sequence[int], what: str):
  """Raises a ValueError unless `frames` is [T, *expected]."""
  if tuple(frames.shape[1:]) != tuple(expected):
    raise ValueError(
        f"{what}: frames of shape {list(frames.shape[1:])}, the model expects"
        f" {list(expected)}"
    )
