"""Tests of the skeleton dataset builders (NTU RGB+D 60/120, N-UCLA).

Real-data tests read `../shared/data` (or $ELEATT_SHARED_DATA) and skip with
the reason when it is absent. Builders are built end to end into tmp dirs and
read back with `tfds.data_source`.
"""

import collections
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

import datasets_fixtures as fx
from eleatt_jax.datasets import _common
from eleatt_jax.datasets import ntu
from eleatt_jax.datasets import nucla

ONE = "S001C001P001R001A001"  # one actor, 103 frames
TWO = "S001C001P001R001A050"  # two actors, 74 frames


def build(builder_cls, config, manual_dir, data_dir, **kwargs):
  builder = builder_cls(config=config, data_dir=data_dir, **kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
  )
  return builder


def read_all(source):
  return [source[i] for i in range(len(source))]


# ------------------------------------------------- NTU parser, real files ---


def test_ntu_real_one_actor_file():
  path = fx.require_shared("ntu", "samples", f"{ONE}.skeleton")
  parsed = ntu.read_skeleton_file(path)
  assert parsed.num_frames == 103
  assert set(parsed.bodies_per_frame.tolist()) == {1}
  assert [b.tracking_id for b in parsed.bodies] == ["72057594037931101"]
  skel, num_bodies = ntu.select_bodies(parsed)
  assert skel.shape == (103, 2, 25, 3) and skel.dtype == np.float32
  assert num_bodies == 1
  # Joint 2 (spine middle) of frame 1, and joint 1 of frame 1, as in the file.
  np.testing.assert_array_equal(
      skel[0, 0, 1], np.float32([0.2323292, 0.4326636, 3.714767])
  )
  np.testing.assert_array_equal(
      skel[0, 0, 0], np.float32([0.2181153, 0.1725972, 3.785547])
  )
  np.testing.assert_array_equal(
      skel[-1, 0, 1], np.float32([0.2515604, 0.4440522, 3.711369])
  )
  assert not skel[:, 1].any()  # The second slot stays zero.


def test_ntu_real_two_actor_file():
  path = fx.require_shared("ntu", "samples", f"{TWO}.skeleton")
  parsed = ntu.read_skeleton_file(path)
  assert parsed.num_frames == 74
  assert set(parsed.bodies_per_frame.tolist()) == {2}
  assert len(parsed.bodies) == 2
  assert not any(b.is_noise for b in parsed.bodies)
  skel, num_bodies = ntu.select_bodies(parsed)
  assert skel.shape == (74, 2, 25, 3) and num_bodies == 2
  # The body with more motion (listed second in the file) takes slot 0.
  motions = {b.tracking_id: b.motion for b in parsed.bodies}
  assert motions["72057594037932127"] > motions["72057594037932185"]
  np.testing.assert_array_equal(
      skel[0, 1, 1], np.float32([-0.8735641, 0.4063588, 3.341162])
  )
  np.testing.assert_array_equal(
      skel[0, 1, 0], np.float32([-0.8514767, 0.1916033, 3.384463])
  )
  assert np.all(np.any(skel[:, 0] != 0, axis=(1, 2)))
  assert np.all(np.any(skel[:, 1] != 0, axis=(1, 2)))


# ------------------------------------------- NTU parser, hand-written files ---


def test_ntu_frames_without_body_are_dropped(tmp_path):
  frames = fx.one_person_frames(6)
  frames[2] = []  # No body in frames 3 and 6.
  frames[5] = []
  path = fx.write_ntu_skeleton(
      tmp_path / "S001C001P001R001A001.skeleton", frames
  )
  parsed = ntu.read_skeleton_file(path)
  assert parsed.num_frames == 6
  assert parsed.bodies_per_frame.tolist() == [1, 1, 0, 1, 1, 0]
  skel, n = ntu.select_bodies(parsed)
  assert skel.shape == (4, 2, 25, 3) and n == 1
  np.testing.assert_allclose(skel[2, 0], fx.person(3), atol=1e-6)


def test_ntu_three_bodies_keep_two_with_most_motion(tmp_path):
  frames = [
      [
          ("1", fx.person(t, x0=-1.0, amp=0.01)),
          ("2", fx.person(t, x0=0.0, amp=0.20)),
          ("3", fx.person(t, x0=1.0, amp=0.10)),
      ]
      for t in range(20)
  ]
  path = fx.write_ntu_skeleton(
      tmp_path / "S001C001P001R001A050.skeleton", frames
  )
  parsed = ntu.read_skeleton_file(path)
  assert [b.tracking_id for b in parsed.bodies] == ["1", "2", "3"]
  skel, n = ntu.select_bodies(parsed)
  assert n == 2 and skel.shape == (20, 2, 25, 3)
  np.testing.assert_allclose(
      skel[:, 0],
      np.stack([fx.person(t, x0=0.0, amp=0.20) for t in range(20)]),
      atol=1e-6,
  )
  np.testing.assert_allclose(
      skel[:, 1],
      np.stack([fx.person(t, x0=1.0, amp=0.10) for t in range(20)]),
      atol=1e-6,
  )


def test_ntu_noise_body_is_dropped(tmp_path):
  frames = [[("1", fx.person(t)), ("9", fx.noise_body(t))] for t in range(15)]
  path = fx.write_ntu_skeleton(
      tmp_path / "S001C001P001R001A001.skeleton", frames
  )
  parsed = ntu.read_skeleton_file(path)
  noise = parsed.bodies[1]
  assert noise.is_noise and not parsed.bodies[0].is_noise
  assert noise.motion > parsed.bodies[0].motion  # Would win on motion alone.
  skel, n = ntu.select_bodies(parsed)
  assert n == 1
  assert not skel[:, 1].any()
  np.testing.assert_allclose(
      skel[:, 0], np.stack([fx.person(t) for t in range(15)]), atol=1e-6
  )


def test_ntu_body_appearing_late_fills_its_frames_only(tmp_path):
  frames = [
      [("1", fx.person(t))]
      + ([("2", fx.person(t, x0=1, amp=0.3))] if t >= 4 else [])
      for t in range(8)
  ]
  path = fx.write_ntu_skeleton(
      tmp_path / "S001C001P001R001A050.skeleton", frames
  )
  skel, n = ntu.select_bodies(ntu.read_skeleton_file(path))
  assert n == 2 and skel.shape == (8, 2, 25, 3)
  # Body "2" moves more: slot 0, present from frame 5 on; body "1" in slot 1.
  assert not skel[:4, 0].any() and skel[4:, 0].all()
  assert skel[:, 1].all()


def test_ntu_truncated_file_names_file_and_line(tmp_path):
  path = fx.write_ntu_skeleton(
      tmp_path / "S001C001P001R001A001.skeleton", fx.one_person_frames(3)
  )
  lines = path.read_text().splitlines()
  path.write_text("\n".join(lines[:40]) + "\n")  # Cut inside frame 2.
  with pytest.raises(_common.CorruptFileError) as err:
    ntu.read_skeleton_file(path)
  msg = str(err.value)
  assert str(path) in msg and "line 41" in msg
  assert "joint 9 of body 1 of frame 2" in msg and "truncated" in msg


def test_ntu_malformed_line_names_line(tmp_path):
  path = fx.write_ntu_skeleton(
      tmp_path / "S001C001P001R001A001.skeleton", fx.one_person_frames(2)
  )
  lines = path.read_text().splitlines()
  lines[6] = "0.1 0.2"  # Joint 3 of body 1 of frame 1 with 2 values.
  path.write_text("\n".join(lines))
  with pytest.raises(
      _common.CorruptFileError,
      match=r"line 7: joint 3 of" r" body 1 of frame 1: 12 values.*got 2",
  ):
    ntu.read_skeleton_file(path)
  lines[6] = "x" + lines[7]
  path.write_text("\n".join(lines))
  with pytest.raises(_common.CorruptFileError, match="numeric x y z"):
    ntu.read_skeleton_file(path)
  path.write_text("three\n")
  with pytest.raises(
      _common.CorruptFileError, match=r"line 1: the frame count.*'three'"
  ):
    ntu.read_skeleton_file(path)


def test_ntu_huge_frame_count_is_corrupt_not_memory_error(tmp_path):
  path = fx.write_ntu_skeleton(
      tmp_path / "S001C001P001R001A001.skeleton", fx.one_person_frames(3)
  )
  lines = path.read_text().splitlines()
  lines[0] = "999999999999"  # Used to allocate 3.64 TiB (MemoryError).
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(
      _common.CorruptFileError,
      match=r"S001C001P001R001A001.skeleton: line 86: the body"
      r" count of frame 4, but the file ends after 85 lines"
      r" \(truncated\?; or is the frame count on line 1"
      r" \(999999999999\) wrong\? Only 84 lines follow it\)",
  ):
    ntu.read_skeleton_file(path)


def test_ntu_frame_count_smaller_than_the_file_names_the_line(tmp_path):
  path = fx.write_ntu_skeleton(
      tmp_path / "S001C001P001R001A001.skeleton", fx.one_person_frames(103)
  )
  lines = path.read_text().splitlines()
  lines[0] = "53"  # 103 frames follow; 53 used to be kept silently.
  path.write_text("\n".join(lines) + "\n\n")
  with pytest.raises(_common.CorruptFileError) as err:
    ntu.read_skeleton_file(path)
  msg = str(err.value)
  # Each frame of one body takes 28 lines: frame 54 starts at 1 + 53 * 28 + 1.
  assert f"{path}: line 1486: the end of the file after the 53 frames" in msg
  assert "1400 more lines follow" in msg


def test_ntu_real_file_with_wrong_frame_count(tmp_path):
  real = fx.require_shared("ntu", "samples", f"{ONE}.skeleton")
  lines = real.read_bytes().decode("ascii").splitlines()
  assert lines[0].strip() == "103"
  path = tmp_path / f"{ONE}.skeleton"
  path.write_text("\r\n".join(["53"] + lines[1:]) + "\r\n")
  with pytest.raises(
      _common.CorruptFileError,
      match=r"line 1486: the end of the file after the 53",
  ):
    ntu.read_skeleton_file(path)
  assert ntu.read_skeleton_file(real).num_frames == 103  # The intact file.


def test_ntu_stray_file_name_is_corrupt_and_skippable(
    ntu_manual_dir, tmp_path, capsys
):
  manual = tmp_path / "manual"
  shutil.copytree(ntu_manual_dir, manual)
  (manual / "foo.skeleton").write_text("1\n0\n")
  with pytest.raises(
      _common.CorruptFileError,
      match=r"foo.skeleton: file name: an NTU sample name",
  ):
    build(ntu.NtuRgbd60, "xsub", manual, tmp_path / "a")
  b = build(ntu.NtuRgbd60, "xsub", manual, tmp_path / "b", skip_corrupt=True)
  assert b.corrupt.count == 1
  assert {k: len(v) for k, v in b.as_data_source().items()} == {
      "train": 2,
      "validation": 1,
      "test": 3,
  }
  err = capsys.readouterr().err
  assert "[unassigned]" in err and "foo.skeleton: file name" in err


def test_ntu_validation_subjects_are_the_seeded_choice():
  drawn = {
      ("ntu_rgbd60", "xsub"): _common.held_out_subjects(
          ntu.NTU60_XSUB_TRAIN, 2
      ),
      ("ntu_rgbd60", "xview"): _common.held_out_subjects(
          range(1, ntu.NTU60_NUM_SUBJECTS + 1), 4
      ),
      ("ntu_rgbd120", "xsub"): _common.held_out_subjects(
          ntu.NTU120_XSUB_TRAIN, 5
      ),
      ("ntu_rgbd120", "xset"): _common.held_out_subjects(
          range(1, ntu.NTU120_NUM_SUBJECTS + 1), 11
      ),
  }
  assert ntu.VALIDATION_SUBJECTS == drawn
  for cls in (ntu.NtuRgbd60, ntu.NtuRgbd120):
    for cfg in cls.BUILDER_CONFIGS:
      val = cfg.validation_subjects
      assert val == ntu.VALIDATION_SUBJECTS[cls.name, cfg.name]
      if cfg.split_by == "subject":  # Drawn from the training performers.
        assert set(val) <= set(cfg.train_ids)
        assert len(val) == round(0.1 * len(cfg.train_ids))
  # Splits of a sample: validation only ever takes protocol-train samples.
  xview = ntu.NtuRgbd60.builder_configs["xview"]
  assert xview.split_of(ntu.SampleId(1, 2, 11, 1, 1)) == "validation"
  assert xview.split_of(ntu.SampleId(1, 1, 11, 1, 1)) == "test"
  assert xview.split_of(ntu.SampleId(1, 3, 12, 1, 1)) == "train"


def test_ntu_missing_lists_are_shipped():
  m60, m120 = ntu.missing_samples(60), ntu.missing_samples(120)
  assert len(m60) == 302 and len(m120) == 535
  assert m60 <= m120
  assert "S001C002P005R002A008" in m60
  shared = fx.shared_data_dir() / "ntu"
  if shared.exists():  # Same ids as the authors' lists.
    for n, name in ((60, "NTU_RGBD"), (120, "NTU_RGBD120")):
      text = (shared / f"{name}_samples_with_missing_skeletons.txt").read_text()
      ids = {l.strip() for l in text.splitlines()[3:] if l.strip()}
      assert ids == ntu.missing_samples(n)


# ------------------------------------------------------- NTU builders -------

NTU_FIXTURE = [
    # name, frames
    "S001C001P001R001A001",  # xsub train, xview test
    "S001C002P003R001A002",  # xsub test, xview train
    "S002C003P002R002A003",  # xsub train, xview train, xset train (even)
    "S003C001P007R001A060",  # xsub test, xview test
    "S001C002P005R002A008",  # in the missing list: skipped
    "S018C001P045R001A061",  # NTU120 only: xsub train, xset train
    "S019C002P044R001A120",  # NTU120 only: xsub test, xset test
    "S001C001P031R001A005",  # xsub validation (60 and 120), xview/xset test
    "S001C002P011R001A006",  # xsub test, xview validation, xset test
]


@pytest.fixture(scope="module")
def ntu_manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("ntu_manual")
  for i, name in enumerate(NTU_FIXTURE):
    fx.write_ntu_skeleton(
        root / "nturgb+d_skeletons" / f"{name}.skeleton",
        fx.one_person_frames(5 + i, seed=i),
    )
  return root


def _ids(source):
  return sorted(e["sample_name"].decode() for e in read_all(source))


def test_ntu60_builders_split_by_protocol(ntu_manual_dir, tmp_path):
  b = build(ntu.NtuRgbd60, "xsub", ntu_manual_dir, tmp_path)
  ds = b.as_data_source()
  assert set(ds) == {"train", "validation", "test"}
  assert _ids(ds["train"]) == ["S001C001P001R001A001", "S002C003P002R002A003"]
  assert _ids(ds["validation"]) == ["S001C001P031R001A005"]  # performer 31
  assert _ids(ds["test"]) == [
      "S001C002P003R001A002",
      "S001C002P011R001A006",
      "S003C001P007R001A060",
  ]
  ex = {e["sample_name"].decode(): e for e in read_all(ds["test"])}
  e = ex["S003C001P007R001A060"]
  assert e["label"] == 59 and e["subject"] == 7 and e["camera"] == 1
  assert e["setup"] == 3 and e["replication"] == 1 and e["num_bodies"] == 1
  assert e["skeleton"].shape == (8, 2, 25, 3) and e["length"] == 8
  np.testing.assert_allclose(
      e["skeleton"][0, 0], fx.person(0, seed=3), atol=1e-6
  )
  assert b.info.features["label"].num_classes == 60

  b = build(ntu.NtuRgbd60, "xview", ntu_manual_dir, tmp_path)
  ds = b.as_data_source()
  assert {e["camera"] for e in read_all(ds["train"])} == {2, 3}
  assert {e["camera"] for e in read_all(ds["test"])} == {1}
  # Performer 11's training-camera sample validates; test keeps camera 1.
  assert _ids(ds["validation"]) == ["S001C002P011R001A006"]
  assert len(ds["train"]) == 2 and len(ds["test"]) == 3


def test_ntu120_builders_split_by_protocol(ntu_manual_dir, tmp_path):
  ds = build(ntu.NtuRgbd120, "xsub", ntu_manual_dir, tmp_path).as_data_source()
  assert _ids(ds["train"]) == [
      "S001C001P001R001A001",
      "S002C003P002R002A003",
      "S018C001P045R001A061",
  ]
  assert _ids(ds["validation"]) == ["S001C001P031R001A005"]
  assert len(ds["test"]) == 4
  ds = build(ntu.NtuRgbd120, "xset", ntu_manual_dir, tmp_path).as_data_source()
  assert {e["setup"] for e in read_all(ds["train"])} == {18}
  # Performer 2 is an xset validation performer: its even-setup sample.
  assert _ids(ds["validation"]) == ["S002C003P002R002A003"]
  assert {e["setup"] for e in read_all(ds["test"])} == {1, 3, 19}
  assert max(e["label"] for e in read_all(ds["test"])) == 119


def test_ntu_corrupt_file_raises_or_is_skipped(
    ntu_manual_dir, tmp_path, capsys
):
  manual = tmp_path / "manual"
  shutil.copytree(ntu_manual_dir, manual)
  bad = manual / "nturgb+d_skeletons" / "S001C001P001R001A001.skeleton"
  bad.write_text("\n".join(bad.read_text().splitlines()[:30]))
  with pytest.raises(_common.CorruptFileError, match="S001C001P001R001A001"):
    build(ntu.NtuRgbd60, "xsub", manual, tmp_path / "a")
  b = build(ntu.NtuRgbd60, "xsub", manual, tmp_path / "b", skip_corrupt=True)
  assert b.corrupt.count == 1
  assert _ids(b.as_data_source()["train"]) == ["S002C003P002R002A003"]
  err = capsys.readouterr().err
  assert "ntu_rgbd60: skipped 1 corrupt file(s)" in err
  assert "S001C001P001R001A001.skeleton: line 31" in err


def test_ntu_empty_manual_dir_says_what_is_expected(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / "README.txt").write_text("wrong folder")
  with pytest.raises(
      _common.ManualDirError,
      match=r"(?s)ntu_rgbd60.*README.txt.*nturgbd_skeletons",
  ):
    build(ntu.NtuRgbd60, "xsub", manual, tmp_path / "out")


def test_ntu_real_files_build_with_cli(tmp_path):
  samples = fx.require_shared("ntu", "samples")
  # The two real files are both setup 1, camera 1, performer 1 (xsub train,
  # xview test); a fixture file fills the other split.
  manual = tmp_path / "manual"
  shutil.copytree(samples, manual / "real")
  fx.write_ntu_skeleton(
      manual / "S001C002P003R001A002.skeleton", fx.one_person_frames(4)
  )
  fx.write_ntu_skeleton(
      manual / "S001C002P019R001A002.skeleton", fx.one_person_frames(4)
  )  # validation performer 19
  (manual / "S001C002P004R001A003.skeleton").write_text("2\n1\n")  # corrupt
  data_dir = tmp_path / "data"
  proc = subprocess.run(
      [
          sys.executable,
          "-m",
          "eleatt_jax.datasets",
          "build",
          "ntu_rgbd60/xsub/skip_corrupt=True",
          f"--manual_dir={manual}",
          f"--data_dir={data_dir}",
      ],
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  ds = tfds.data_source("ntu_rgbd60/xsub", data_dir=data_dir)
  train = {e["sample_name"].decode(): e for e in read_all(ds["train"])}
  assert sorted(train) == [ONE, TWO]
  assert train[ONE]["length"] == 103 and train[ONE]["num_bodies"] == 1
  assert train[TWO]["length"] == 74 and train[TWO]["num_bodies"] == 2
  assert train[TWO]["label"] == 49
  np.testing.assert_array_equal(
      train[ONE]["skeleton"][0, 0, 1],
      np.float32([0.2323292, 0.4326636, 3.714767]),
  )
  assert len(ds["test"]) == 1 and len(ds["validation"]) == 1
  assert "ntu_rgbd60: skipped 1 corrupt file(s)" in proc.stderr
  assert "S001C002P004R001A003.skeleton: line 3: the info line" in proc.stderr
  assert "tensorflow" not in proc.stderr.lower().replace(
      "tensorflow_datasets", ""
  )


# --------------------------------------------------------------- N-UCLA -----


def test_nucla_real_files_counts_per_view_and_class(tmp_path):
  manual = fx.require_shared("nucla")
  ds = build(nucla.Nucla, "dev", manual, tmp_path).as_data_source()
  assert {k: len(v) for k, v in ds.items()} == {
      "train": 473,
      "validation": 43,
      "test": 504,
  }
  train, val = read_all(ds["train"]), read_all(ds["validation"])
  test = read_all(ds["test"])
  assert {e["view"] for e in train + val} == {1}
  assert {e["view"] for e in test} == {2}
  # validation: the held-out subject, carved from the training view.
  assert {e["subject"] for e in val} == set(nucla.VALIDATION_SUBJECTS)
  assert not {e["subject"] for e in train} & set(nucla.VALIDATION_SUBJECTS)
  per_class = collections.Counter(e["label"] for e in train + val)
  assert [per_class[c] for c in range(10)] == [
      53,
      52,
      51,
      64,
      50,
      52,
      49,
      50,
      49,
      46,
  ]
  per_class = collections.Counter(e["label"] for e in test)
  assert [per_class[c] for c in range(10)] == [
      49,
      50,
      45,
      60,
      51,
      50,
      50,
      49,
      49,
      51,
  ]
  for e in train + val + test:  # Every sample readable and consistent.
    assert e["skeleton"].shape == (e["length"], 20, 3)
    assert e["length"] >= 1 and np.isfinite(e["skeleton"]).all()
    action, subject, episode, view = nucla.parse_name(e["sample_name"].decode())
    assert nucla.ACTIONS[e["label"]] == action
    assert (e["subject"], e["episode"], e["view"]) == (subject, episode, view)
  # A known joint of a known file.
  first = next(
      e for e in train if e["sample_name"].decode() == "a01_s01_e00_v01"
  )
  np.testing.assert_array_equal(
      first["skeleton"][0, 0], np.float32([-0.619699, 0.328046, 3.18186])
  )


def test_nucla_real_files_lack_view3_for_xview(tmp_path):
  manual = fx.require_shared("nucla")
  with pytest.raises(
      _common.ManualDirError, match=r"split\(s\) \['test'\].*view\(s\) \[3\]"
  ):
    build(nucla.Nucla, "xview", manual, tmp_path)


def test_nucla_validation_subjects_are_the_seeded_choice():
  assert nucla.VALIDATION_SUBJECTS == _common.held_out_subjects(
      range(1, nucla.NUM_SUBJECTS + 1), 1, seed=0
  )


def test_nucla_xview_on_full_layout(tmp_path):
  manual = tmp_path / "all_sqe"
  for view in (1, 2, 3):
    for action in (1, 12):
      for subject in (1, 2, 9):
        fx.write_nucla_json(
            manual, action, subject, 0, view, num_frames=3 + view
        )
  ds = build(nucla.Nucla, "xview", tmp_path, tmp_path / "d").as_data_source()
  assert len(ds["train"]) == 8 and len(ds["test"]) == 6
  val = read_all(ds["validation"])
  assert {(e["subject"], e["view"]) for e in val} == {(9, 1), (9, 2)}
  assert {e["view"] for e in read_all(ds["test"])} == {3}
  assert {e["label"] for e in read_all(ds["test"])} == {0, 9}
  assert all(e["length"] == 6 for e in read_all(ds["test"]))


@pytest.mark.parametrize(
    "config, train_view, test_view", [("dev", 1, 2), ("dev_reverse", 2, 1)]
)
def test_nucla_dev_directions(tmp_path, config, train_view, test_view):
  # Both directions of the development protocol; view 3 is in neither.
  manual = tmp_path / "all_sqe"
  for view in (1, 2, 3):
    for subject in (1, 2, 9):
      fx.write_nucla_json(manual, 1, subject, 0, view, num_frames=4)
  ds = build(nucla.Nucla, config, tmp_path, tmp_path / "d").as_data_source()
  train, val, test = (read_all(ds[s]) for s in ("train", "validation", "test"))
  assert {(e["subject"], e["view"]) for e in train} == {
      (1, train_view),
      (2, train_view),
  }
  assert {(e["subject"], e["view"]) for e in val} == {(9, train_view)}
  assert {e["view"] for e in test} == {test_view} and len(test) == 3


def test_nucla_bad_json(tmp_path):
  path = fx.write_nucla_json(tmp_path, 1, 1, 0, 1)
  path.write_text(path.read_text()[:100])
  with pytest.raises(
      _common.CorruptFileError,
      match=r"a01_s01_e00_v01.json: line 1 column \d+ \(byte"
      r" offset \d+\): valid JSON",
  ):
    nucla.read_json_sample(path)
  path = fx.write_nucla_json(tmp_path, 3, 1, 0, 1, label=4)
  with pytest.raises(
      _common.CorruptFileError, match=r"key 'label'.*action a03.*\(3\), got 4"
  ):
    nucla.read_json_sample(path)
  path.write_text('{"file_name": "x", "skeletons": [[[1, 2, 3]]], "label": 3}')
  with pytest.raises(
      _common.CorruptFileError, match=r"key 'skeletons', frame 0: 20 joints"
  ):
    nucla.read_json_sample(path)
  path.write_text('{"file_name": "x", "label": 3}')
  with pytest.raises(_common.CorruptFileError, match="key 'skeletons'"):
    nucla.read_json_sample(path)


def test_nucla_deeply_nested_json_names_the_file(tmp_path):
  path = fx.write_nucla_json(tmp_path, 1, 1, 0, 1)
  depth = 200_000  # Used to raise RecursionError, naming no file.
  path.write_text(
      '{"skeletons": ' + "[" * depth + "]" * depth + ', "label": 1}'
  )
  with pytest.raises(
      _common.CorruptFileError,
      match=r"a01_s01_e00_v01.json: byte offset 77: JSON nested"
      r" at most 64 levels deep",
  ):
    nucla.read_json_sample(path)


def test_nucla_same_sample_in_two_folders_names_both_files(tmp_path):
  manual = tmp_path / "m"
  for view in (1, 2):
    fx.write_nucla_json(manual / "a", 1, 1, 0, view)
  fx.write_nucla_json(manual / "a", 1, 9, 0, 1)
  first = manual / "a" / "a01_s01_e00_v01.json"
  second = fx.write_nucla_json(manual / "b", 1, 1, 0, 1)
  for skip in (False, True):  # Neither file is damaged: never skipped.
    with pytest.raises(_common.DuplicateKeyError) as err:
      build(
          nucla.Nucla, "dev", manual, tmp_path / f"d{skip}", skip_corrupt=skip
      )
    msg = str(err.value)
    assert str(first) in msg and str(second) in msg
    assert "example key 'a01_s01_e00_v01'" in msg


def test_nucla_skip_corrupt(tmp_path, capsys):
  manual = tmp_path / "m"
  for view in (1, 2):
    fx.write_nucla_json(manual, 1, 1, 0, view)
    fx.write_nucla_json(manual, 2, 1, 0, view)
  fx.write_nucla_json(manual, 1, 9, 0, 1)
  bad = manual / "a02_s01_e00_v02.json"
  bad.write_text(bad.read_text()[:50])
  b = build(nucla.Nucla, "dev", manual, tmp_path / "d", skip_corrupt=True)
  assert {k: len(v) for k, v in b.as_data_source().items()} == {
      "train": 2,
      "validation": 1,
      "test": 1,
  }
  assert "nucla: skipped 1 corrupt file(s)" in capsys.readouterr().err


def test_no_tensorflow_and_light_core_import():
  code = (
      "import sys, eleatt_jax; "
      "assert 'tensorflow_datasets' not in sys.modules, 'core imports tfds'; "
      "import eleatt_jax.datasets; "
      "bad = [m for m in sys.modules if m.split('.')[0] == 'tensorflow']; "
      "assert not bad, bad"
  )
  proc = subprocess.run(
      [sys.executable, "-c", code],
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
