"""Tests of preprocessing, augmentation, sequence-npz and the grain pipeline."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import datasets_fixtures as fx
from eleatt_jax.datasets import _common
from eleatt_jax.datasets import pipeline
from eleatt_jax.datasets import preprocessing as pp
from eleatt_jax.datasets import sequence_npz


def skeleton(num_frames=12, bodies=2, seed=0, second_actor=False):
  """<float32>[T, M, 25, 3]; frame 0 empty, second actor optional."""
  x = np.zeros((num_frames, bodies, 25, 3), np.float32)
  for t in range(1, num_frames):
    x[t, 0] = fx.person(t, seed=seed)
    if second_actor:
      x[t, 1] = fx.person(t, x0=1.0, seed=seed + 1)
  return x


# --------------------------------------------------------- preprocessing ----


def test_translate_centres_spine_of_first_valid_frame():
  x = skeleton()
  y = pp.translate(x, center_joint=pp.SPINE)
  np.testing.assert_array_equal(y[1, 0, pp.SPINE], 0)  # frame 0 is empty
  np.testing.assert_allclose(y[5, 0], x[5, 0] - x[1, 0, pp.SPINE], atol=1e-6)
  assert not y[0].any() and not y[:, 1].any()  # missing joints stay zero
  assert y.dtype == np.float32 and y.shape == x.shape
  one = pp.translate(x[:, 0])  # [T, J, 3] works too
  np.testing.assert_array_equal(one, y[:, 0])


def test_align_view_puts_shoulders_on_x():
  x = pp.translate(skeleton(second_actor=True))
  rot = pp.rotation_matrix(0.0, 0.7, 0.0)
  turned = pp.rotate(x, rot) * (x != 0).any(-1, keepdims=True)
  y = pp.align_view(turned)
  v = y[1, 0, pp.RIGHT_SHOULDER] - y[1, 0, pp.LEFT_SHOULDER]
  assert abs(v[2]) < 1e-5 and v[0] > 0
  # A rotation: distances between joints are unchanged, zeros stay zero.
  d = lambda a: np.linalg.norm(a[:, :, :, None] - a[:, :, None], axis=-1)
  np.testing.assert_allclose(d(y), d(turned), atol=1e-5)
  assert not y[0].any()
  hips = pp.align_view(turned, (pp.LEFT_HIP, pp.RIGHT_HIP))
  v = hips[1, 0, pp.RIGHT_HIP] - hips[1, 0, pp.LEFT_HIP]
  assert abs(v[2]) < 1e-5 and v[0] > 0


def test_temporal_indices_centred_and_random():
  np.testing.assert_array_equal(pp.temporal_indices(10, 5), [1, 3, 5, 7, 9])
  np.testing.assert_array_equal(pp.temporal_indices(3, 6), [0, 0, 1, 1, 2, 2])
  rng = np.random.default_rng(0)
  for _ in range(20):
    idx = pp.temporal_indices(100, 10, rng)
    # One frame in each segment [10k, 10k + 10).
    np.testing.assert_array_equal(idx // 10, np.arange(10))
  a = pp.temporal_indices(100, 10, np.random.default_rng(1))
  b = pp.temporal_indices(100, 10, np.random.default_rng(1))
  np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="length must be >= 1"):
    pp.temporal_indices(0, 4)


def test_pad_to_and_flatten():
  x = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3) + 1
  y, n = pp.pad_to(x, 4, 8)
  assert n == 4 and y.shape == (8, 2, 3)
  np.testing.assert_array_equal(y[:4], x[:4])
  assert not y[4:].any()
  y, n = pp.pad_to(x, 5, 3)  # longer: sampled down, not cut
  assert n == 3
  np.testing.assert_array_equal(y, x[[0, 2, 4]])
  s = skeleton(4)
  f = pp.flatten(s)
  assert f.shape == (4, 150)
  np.testing.assert_array_equal(f[2, 75:78], s[2, 1, 0])
  np.testing.assert_array_equal(f[2, 3:6], s[2, 0, 1])


def test_augmentation_seeded_and_keeps_missing_joints_zero():
  x = pp.translate(skeleton())
  aug = pp.Augment()
  a = aug(x, np.random.default_rng(3))
  b = aug(x, np.random.default_rng(3))
  c = aug(x, np.random.default_rng(4))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  assert not a[0].any() and not a[:, 1].any()
  assert a.dtype == np.float32
  # Rotation alone preserves norms; with scale s norms scale by s.
  r = pp.random_rotate(x, np.random.default_rng(0), 0.3)
  np.testing.assert_allclose(
      np.linalg.norm(r, axis=-1), np.linalg.norm(x, axis=-1), atol=1e-5
  )
  s = pp.random_scale(x, np.random.default_rng(0), 0.1)
  norm = np.linalg.norm(x[1:, 0], axis=-1)
  assert (norm == 0).sum() == 1  # the centre joint of the first valid frame
  ratio = np.linalg.norm(s[1:, 0], axis=-1)[norm > 0] / norm[norm > 0]
  assert 0.9 <= ratio.min() and np.ptp(ratio) < 1e-5 and ratio.max() <= 1.1
  j = pp.jitter(x, np.random.default_rng(0), 0.01)
  assert 0.005 < np.std(j[1:, 0] - x[1:, 0]) < 0.015
  assert (j[1:, 0] != x[1:, 0]).all()  # the origin joint is jittered too
  assert not j[0].any() and not j[:, 1].any()


def test_rotation_matrix_is_orthonormal_and_bounded():
  rng = np.random.default_rng(0)
  for _ in range(5):
    r = pp.rotation_matrix(*rng.uniform(-0.3, 0.3, 3))
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-6)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------ sequence_npz --


def build_npz(manual_dir, data_dir):
  b = sequence_npz.SequenceNpz(data_dir=data_dir)
  b.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
  )
  return b


def test_sequence_npz_real_basicmotions(tmp_path):
  manual = fx.require_shared("basicmotions")
  b = build_npz(manual, tmp_path)
  ds = b.as_data_source()
  # No validation.npz: one of the 10 training examples of each class validates.
  assert {k: len(v) for k, v in ds.items()} == {
      "train": 36,
      "validation": 4,
      "test": 40,
  }
  assert b.info.features["label"].names == [
      "running",
      "walking",
      "standing",
      "badminton",
  ]
  with np.load(manual / "test.npz") as raw:
    x, y, lengths = raw["x"], raw["y"], raw["lengths"]
  for i in range(len(ds["test"])):
    e = ds["test"][i]
    j = e["index"]
    assert e["label"] == y[j] and e["length"] == lengths[j]
    np.testing.assert_array_equal(e["x"], x[j, : lengths[j]])
  assert sorted(ds["test"][i]["index"] for i in range(40)) == list(range(40))
  with np.load(manual / "train.npz") as raw:
    y_train = raw["y"]
  val = [ds["validation"][i] for i in range(4)]
  assert sorted(int(e["label"]) for e in val) == [0, 1, 2, 3]
  assert all(e["label"] == y_train[e["index"]] for e in val)
  rows = sorted(
      int(ds[s][i]["index"])
      for s in ("train", "validation")
      for i in range(len(ds[s]))
  )
  assert rows == list(range(40))  # Disjoint, and together all of train.npz.
  # Read back by name, as user code does.
  src = tfds.data_source("sequence_npz", data_dir=tmp_path)["train"]
  assert src[0]["x"].shape == (100, 6) and src[0]["x"].dtype == np.float32


def write_npz(path, n=6, t=5, d=2, classes=("a", "b", "c"), **override):
  rng = np.random.default_rng(0)
  lengths = np.arange(n, dtype=np.int32) % t + 1
  x = rng.normal(size=(n, t, d)).astype(np.float32)
  x[np.arange(t)[None] >= lengths[:, None]] = 0
  data = dict(
      x=x,
      lengths=lengths,
      y=np.arange(n, dtype=np.int64) % 3,
      class_names=np.array(classes),
  )
  data.update(override)
  data = {k: v for k, v in data.items() if v is not None}
  np.savez(path, **data)
  return path


def test_sequence_npz_variable_lengths(tmp_path):
  write_npz(tmp_path / "train.npz")
  write_npz(tmp_path / "validation.npz", n=2)
  write_npz(tmp_path / "test.npz", n=4)
  ds = build_npz(tmp_path, tmp_path / "d").as_data_source()
  assert {k: len(v) for k, v in ds.items()} == {
      "train": 6,
      "validation": 2,
      "test": 4,
  }
  lengths = sorted(int(ds["train"][i]["length"]) for i in range(6))
  assert lengths == [1, 1, 2, 3, 4, 5]
  assert all(
      ds["train"][i]["x"].shape == (ds["train"][i]["length"], 2)
      for i in range(6)
  )


@pytest.mark.parametrize(
    "override,match",
    [
        (dict(y=None), r"key 'y': the keys .*missing \['y'\]"),
        (
            dict(lengths=np.array([1, 2, 9, 1, 1, 1], np.int32)),
            r"key 'lengths', row 2: a length in 1..T_max=5, got 9",
        ),
        (
            dict(lengths=np.array([1, 0, 1, 1, 1, 1], np.int32)),
            r"key 'lengths', row 1",
        ),
        (
            dict(y=np.array([0, 1, 2, 3, 0, 0])),
            r"key 'y', row 3: a label in 0..2",
        ),
        (
            dict(x=np.ones((6, 5, 2), np.float32)),
            r"key 'x', row 0: zeros after the sequence end \(lengths\[0\]=1\)",
        ),
        (
            dict(x=np.full((6, 5, 2), np.nan, np.float32)),
            r"key 'x', row 0: finite values",
        ),
        (dict(x=np.zeros((6, 5), np.float32)), r"key 'x': a float array"),
    ],
)
def test_sequence_npz_bad_files_name_key_and_row(tmp_path, override, match):
  path = write_npz(tmp_path / "train.npz", **override)
  with pytest.raises(_common.CorruptFileError, match=match) as err:
    sequence_npz.load_sequence_npz(path)
  assert str(path) in str(err.value)


def test_sequence_npz_carves_a_seeded_stratified_validation(tmp_path):
  write_npz(tmp_path / "train.npz", n=30)  # 10 of each of 3 classes
  write_npz(tmp_path / "test.npz", n=4)
  ds = build_npz(tmp_path, tmp_path / "d").as_data_source()
  assert {k: len(v) for k, v in ds.items()} == {
      "train": 27,
      "validation": 3,
      "test": 4,
  }
  val = sorted(int(ds["validation"][i]["index"]) for i in range(3))
  _, held = _common.stratified_holdout(
      np.arange(30) % 3,
      sequence_npz.VALIDATION_FRACTION,
      sequence_npz.VALIDATION_SEED,
  )
  assert val == held.tolist()
  assert sorted(int(i) % 3 for i in val) == [0, 1, 2]  # One of each class.
  again = build_npz(tmp_path, tmp_path / "e").as_data_source()
  assert sorted(int(again["validation"][i]["index"]) for i in range(3)) == val


def test_sequence_npz_npy_renamed_npz(tmp_path):
  np.save(tmp_path / "train.npy", np.zeros((6, 5, 2), np.float32))
  (tmp_path / "train.npy").rename(tmp_path / "train.npz")
  with pytest.raises(
      _common.CorruptFileError,
      match=r"train.npz: whole file: a .npz archive .*found a"
      r" single .npy array float32\[6, 5, 2\]",
  ):
    sequence_npz.load_sequence_npz(tmp_path / "train.npz")


def test_sequence_npz_class_names_as_bytes_are_decoded(tmp_path):
  path = write_npz(
      tmp_path / "train.npz",
      class_names=np.array([b"running", b"walking", b"sitting"]),
  )
  assert sequence_npz.load_sequence_npz(path)["class_names"] == (
      "running",
      "walking",
      "sitting",
  )
  write_npz(
      tmp_path / "test.npz",
      n=4,  # The same names, as str.
      classes=("running", "walking", "sitting"),
  )
  b = build_npz(tmp_path, tmp_path / "d")
  assert b.info.features["label"].names == ["running", "walking", "sitting"]
  path = write_npz(
      tmp_path / "bad.npz", class_names=np.array([b"a", b"\xff", b"c"])
  )
  with pytest.raises(
      _common.CorruptFileError,
      match=r"bad.npz: key 'class_names', row 1: UTF-8 text",
  ):
    sequence_npz.load_sequence_npz(path)


def test_sequence_npz_mismatched_class_names_and_missing_split(tmp_path):
  write_npz(tmp_path / "train.npz")
  with pytest.raises(_common.ManualDirError, match="test.npz is missing"):
    build_npz(tmp_path, tmp_path / "d")
  write_npz(tmp_path / "test.npz", classes=("a", "b", "z"))
  with pytest.raises(
      _common.CorruptFileError,
      match=r"test.npz: key 'class_names': the class_names of"
      r" the other splits \['a', 'b', 'c'\], got",
  ):
    build_npz(tmp_path, tmp_path / "d")
  (tmp_path / "test.npz").write_bytes(b"PK\x03\x04 truncated")
  with pytest.raises(_common.CorruptFileError, match="readable .npz"):
    build_npz(tmp_path, tmp_path / "d")


# --------------------------------------------------------------- pipeline ---


def skeleton_source(n=40):
  rng = np.random.default_rng(0)
  out = []
  for i in range(n):
    t = int(rng.integers(5, 30))
    out.append({
        "skeleton": skeleton(t, seed=i, second_actor=i % 2 == 0),
        "length": np.int32(t),
        "label": np.int64(i % 7),
        "subject": np.int32(i // 4),
        "sample_name": b"s%d" % i,
    })
  return out


PRE = pipeline.SkeletonPreprocess(
    num_frames=16,
    augment=pp.Augment(),
    align_joints=(pp.LEFT_SHOULDER, pp.RIGHT_SHOULDER),
)


def make(source, **kw):
  kw = {
      "batch_size": 8,
      "train": True,
      "seed": 0,
      "shard_index": 0,
      "shard_count": 1,
      "num_threads": 2,
      **kw,
  }
  return pipeline.make_pipeline(source, PRE, **kw)


def take(it, n):
  return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_pipeline_fixed_shapes_and_dtypes():
  batch = next(iter(make(skeleton_source())))
  assert set(batch) == {"x", "length", "label", "subject", "mask"}
  assert batch["x"].shape == (8, 16, 150) and batch["x"].dtype == np.float32
  for k in ("length", "label", "subject"):
    assert batch[k].shape == (8,) and batch[k].dtype == np.int32
  assert batch["mask"].dtype == bool and batch["mask"].all()
  assert (batch["length"] == 16).all()


def test_pipeline_deterministic_for_a_seed():
  src = skeleton_source()
  a = take(iter(make(src)), 7)  # crosses the epoch boundary (5 batches)
  b = take(iter(make(src)), 7)
  for x, y in zip(a, b):
    assert_batches_equal(x, y)
  c = take(iter(make(src, seed=1)), 1)[0]
  assert not np.array_equal(a[0]["label"], c["label"]) or not np.allclose(
      a[0]["x"], c["x"]
  )
  # An epoch holds each example once; the next epoch is reshuffled and
  # re-augmented.
  epoch = np.concatenate([x["subject"] * 100 + x["label"] for x in a[:5]])
  assert len(set(epoch.tolist())) == 40
  assert not np.array_equal(a[0]["x"], a[5]["x"])


def test_pipeline_resume_from_saved_state_gives_same_next_batch():
  src = skeleton_source()
  it = iter(make(src))
  take(it, 3)
  state = it.get_state()
  expected = take(it, 3)
  fresh = iter(make(src))
  fresh.set_state(state)
  for x, y in zip(expected, take(fresh, 3)):
    assert_batches_equal(x, y)


def test_pipeline_eval_single_ordered_pass_with_mask():
  src = skeleton_source(21)
  batches = list(make(src, train=False))
  assert len(batches) == 3
  assert [b["mask"].sum() for b in batches] == [8, 8, 5]
  assert batches[-1]["x"].shape == (8, 16, 150)
  assert not batches[-1]["x"][5:].any()
  labels = np.concatenate([b["label"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(labels, [e["label"] for e in src])
  again = list(make(src, train=False, seed=5))  # no randomness in eval
  for x, y in zip(batches, again):
    assert_batches_equal(x, y)
  # Evaluation is centred sampling of the translated, aligned skeleton.
  e = src[0]
  x = pp.align_view(pp.translate(e["skeleton"][: e["length"]]))
  np.testing.assert_allclose(
      batches[0]["x"][0],
      pp.flatten(pp.temporal_sample(x, int(e["length"]), 16)),
      atol=1e-6,
  )


def test_pipeline_shards_are_disjoint_and_cover():
  src = skeleton_source(20)
  seen = []
  for index in range(2):
    for b in make(
        src, train=False, shard_index=index, shard_count=2, batch_size=4
    ):
      seen.extend((b["subject"] * 100 + b["label"])[b["mask"]].tolist())
  assert sorted(seen) == sorted(e["subject"] * 100 + e["label"] for e in src)
  with pytest.raises(ValueError, match="shard_index 2 not in"):
    make(src, shard_index=2, shard_count=2)


def test_pipeline_defaults_to_jax_process_sharding():
  src = skeleton_source(16)
  batch = next(iter(pipeline.make_pipeline(src, PRE, batch_size=4, train=True)))
  assert batch["x"].shape == (4, 16, 150)


def test_pipeline_over_tfds_data_source_sequences(tmp_path):
  write_npz(tmp_path / "train.npz", n=12)
  write_npz(tmp_path / "test.npz", n=5)
  ds = build_npz(tmp_path, tmp_path / "d").as_data_source()
  pre = pipeline.SequencePreprocess(num_frames=5)
  it = iter(
      pipeline.make_pipeline(
          ds["train"],
          pre,
          batch_size=4,
          train=True,
          shard_index=0,
          shard_count=1,
      )
  )
  b = next(it)
  assert b["x"].shape == (4, 5, 2) and set(b) == {
      "x",
      "length",
      "label",
      "index",
      "mask",
  }
  for row in range(4):  # zero after each row's length
    assert not b["x"][row, b["length"][row] :].any()
  state = it.get_state()
  nxt = next(it)
  it2 = iter(
      pipeline.make_pipeline(
          ds["train"],
          pre,
          batch_size=4,
          train=True,
          shard_index=0,
          shard_count=1,
      )
  )
  it2.set_state(state)
  assert_batches_equal(nxt, next(it2))


def test_pipeline_worker_processes_match_in_process(tmp_path):
  # Worker processes need a picklable source: a tfds data_source is one.
  write_npz(tmp_path / "train.npz", n=12)
  write_npz(tmp_path / "test.npz", n=5)
  src = build_npz(tmp_path, tmp_path / "d").as_data_source()["train"]
  pre = pipeline.SequencePreprocess(num_frames=5)
  kw = dict(batch_size=4, train=True, shard_index=0, shard_count=1, seed=3)
  expected = take(iter(pipeline.make_pipeline(src, pre, **kw)), 4)
  it = iter(pipeline.make_pipeline(src, pre, worker_count=1, **kw))
  got = take(it, 2)
  state = it.get_state()
  got += take(it, 2)
  for x, y in zip(expected, got):
    assert_batches_equal(x, y)
  resumed = iter(pipeline.make_pipeline(src, pre, worker_count=1, **kw))
  resumed.set_state(state)
  assert_batches_equal(expected[2], next(resumed))


def test_per_class_subset_draws_each_class_by_seed():
  labels = np.array([2, 0, 1, 0, 2, 0, 0, 1, 2, 2, 2])
  idx = pipeline.per_class_subset(labels, 2, seed=0)
  assert np.bincount(labels[idx]).tolist() == [2, 2, 2]
  assert np.all(np.diff(idx) > 0)  # sorted, no repeats
  np.testing.assert_array_equal(
      idx, pipeline.per_class_subset(labels, 2, seed=0)
  )
  draws = {tuple(pipeline.per_class_subset(labels, 2, s)) for s in range(5)}
  assert len(draws) > 1
  # A larger count adds to the smaller one's draw; a small class keeps all.
  more = pipeline.per_class_subset(labels, 3, seed=0)
  assert set(idx) <= set(more)
  assert np.bincount(labels[more]).tolist() == [3, 2, 3]
  for bad in (0, -1, 1.5, True):
    with pytest.raises(ValueError, match="count must be an integer >= 1"):
      pipeline.per_class_subset(labels, bad, seed=0)
