"""Frame encoders (eleatt_jax.frame_encoders) and the video path end to end."""

from __future__ import annotations

import importlib.util
import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import datasets_fixtures as fx
from eleatt_jax import StackedRNNClassifier
from eleatt_jax.datasets import sequence_npz
from eleatt_jax.frame_encoders import FrameCNN
from eleatt_jax.frame_encoders import VideoClassifier
from eleatt_jax.frame_encoders import extract_features
from train_support import _jax_cache  # noqa: F401  # pylint: disable=unused-import

SHAPE = (12, 12, 1)


def small_model(**kw):
  return VideoClassifier(
      num_classes=3,
      frame_shape=SHAPE,
      cnn_features=(4, 6),
      frame_features=5,
      hidden_sizes=(7,),
      dropout_rate=0.0,
      **kw,
  )


@pytest.fixture(scope="module")
def clips():
  x = jax.random.uniform(jax.random.key(1), (2, 6, int(np.prod(SHAPE))))
  return x, jnp.array([6, 4])


@pytest.mark.slow  # 10-20 s of CPU: eager Flax init and compiles
def test_cnn_shared_over_time_equals_a_loop_of_frames(clips):
  """The reshape over time is the CNN applied to each frame, then the RNN."""
  x, lengths = clips
  model = small_model()
  variables = model.init(jax.random.key(0), x, lengths)
  params = variables["params"]
  cnn = jax.jit(FrameCNN(features=(4, 6), frame_features=5).apply)
  per_frame = jnp.stack(
      [
          cnn({"params": params["encoder"]}, x[:, t].reshape(2, *SHAPE))
          for t in range(x.shape[1])
      ],
      axis=1,
  )
  rnn = StackedRNNClassifier(num_classes=3, hidden_sizes=(7,), dropout_rate=0)
  expected = rnn.apply({"params": params["rnn"]}, per_frame, lengths)
  apply = jax.jit(model.apply)
  np.testing.assert_allclose(
      apply(variables, x, lengths), expected, rtol=1e-5, atol=1e-6
  )
  # [B, T, H, W, C] inputs give the same.
  np.testing.assert_allclose(
      apply(variables, x.reshape(2, 6, *SHAPE), lengths),
      expected,
      rtol=1e-5,
      atol=1e-6,
  )


@pytest.mark.slow  # 10-20 s of CPU: eager Flax init and compiles
def test_remat_same_values_and_gradients(clips):
  x, lengths = clips
  plain, remat = small_model(), small_model(remat=True)
  variables = plain.init(jax.random.key(0), x, lengths)

  def loss(model, params):
    return jnp.sum(model.apply({"params": params}, x, lengths) ** 2)

  g0 = jax.grad(lambda p: loss(plain, p))(variables["params"])
  g1 = jax.grad(lambda p: loss(remat, p))(variables["params"])
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
      g0,
      g1,
  )


@pytest.mark.slow  # 10-20 s of CPU: eager Flax init and compiles
def test_step_streams_the_prefix_logits(clips):
  x, _ = clips
  model = small_model(readout="mean")
  variables = model.init(jax.random.key(0), x)
  step = jax.jit(lambda c, f: model.apply(variables, c, f, method="step"))
  carry = model.initialize_carry(2)
  for t in range(x.shape[1]):
    carry, logits_t, _ = step(carry, x[:, t])
    full = model.apply(variables, x[:, : t + 1])
    np.testing.assert_allclose(logits_t, full, rtol=1e-5, atol=1e-5)


def test_wrong_frame_size_names_the_shapes():
  model = small_model()
  with pytest.raises(
      ValueError, match=r"frame_shape=\(12, 12, 1\).*\(2, 3, 100\)"
  ):
    model.init(jax.random.key(0), jnp.zeros((2, 3, 100)))


def test_extract_features_writes_sequence_npz(tmp_path):
  """The features route's writer, with a fixed (non-learned) encoder."""
  rng = np.random.default_rng(0)
  sources = {
      s: [
          {
              "frames": rng.integers(0, 255, (5, 8, 8, 1), dtype=np.uint8),
              "length": 5,
              "label": i % 2,
          }
          for i in range(n)
      ]
      for s, n in (("train", 6), ("validation", 2), ("test", 3))
  }
  mean_pixel = lambda f: f.reshape(len(f), -1).mean(1, keepdims=True) / 255
  written = extract_features(
      sources, ("a", "b"), mean_pixel, tmp_path, batch_frames=4
  )
  assert sorted(written) == ["test", "train", "validation"]
  data = sequence_npz.load_sequence_npz(written["train"], ("a", "b"))
  assert data["x"].shape == (6, 5, 1) and data["lengths"].tolist() == [5] * 6
  np.testing.assert_allclose(
      data["x"][3, :, 0], mean_pixel(sources["train"][3]["frames"])[:, 0]
  )
  assert data["y"].tolist() == [0, 1, 0, 1, 0, 1]


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("keras") is None,
    reason="the features route needs Keras 3 (pip install 'eleatt-jax[keras]')",
)
def test_keras_backbone_random_weights():
  """The Keras route with weights=None: no network here (the tests cannot
  download ImageNet weights), so this checks shapes and finiteness only.
  Slow: Keras builds the network op by op (minutes on a shared 2-core CPU)."""
  from eleatt_jax.frame_encoders import KerasBackbone  # pylint: disable=g-import-not-at-top

  backbone = KerasBackbone("MobileNetV3Small", 32, weights=None)
  frames = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 1), np.uint8)
  features = backbone(frames)
  assert features.shape == (3, backbone.feature_size)
  assert np.all(np.isfinite(features))


# ------------------------------------------------------------- end to end --


def test_video_folder_trains_evaluates_exports_and_streams(tmp_path):
  """A folder of tiny videos: build, train, evaluate, export, stream a file."""
  pytest.importorskip("av", reason="video decoding needs PyAV (pip install av)")
  from train import export as export_lib  # pylint: disable=g-import-not-at-top
  from train import stream  # pylint: disable=g-import-not-at-top
  from train import train  # pylint: disable=g-import-not-at-top
  from train.configs import video_folder  # pylint: disable=g-import-not-at-top

  videos = fx.write_video_folder(tmp_path / "videos", per_class=5)
  config = video_folder.get_config()
  config.data.name = "video_folder/t8_s16"
  config.data.manual_dir = str(videos)
  config.data.data_dir = str(tmp_path / "tfds")
  config.data.num_threads = 1
  config.data.prefetch = 2
  config.model.cnn_features = (4,)
  config.model.frame_features = 8
  config.model.hidden_sizes = (6,)
  config.batch_size = 2
  config.eval_batch_size = 4
  config.num_train_steps = 3
  config.eval_every_steps = 3
  config.progress = "none"
  config.tensorboard = False
  config.plots = False
  workdir = tmp_path / "run"
  out = train.train_and_evaluate(config, str(workdir))
  results = json.loads((workdir / "eval_results.json").read_text())
  assert results["split"] == "test" and results["num_examples"] == 2
  assert out["accuracy"] == results["accuracy"]
  card = export_lib.export_run(str(workdir))
  assert card["input"]["D"] == 16 * 16 * 3
  log = io.StringIO()
  summary = stream.replay(
      str(workdir), out=log, video=str(videos / "jump" / "v_jump_4.avi")
  )
  lines = log.getvalue().splitlines()
  assert lines[0].endswith("v_jump_4.avi: 8 frames")
  assert sum(line.startswith("frame ") for line in lines) == 8
  assert "(a video file: no label)" in lines[-1]
  assert summary["probabilities"].shape == (8, 2)
  np.testing.assert_allclose(summary["probabilities"].sum(1), 1, rtol=1e-5)
  # The streamed video, decoded as the builder does, is the model's input:
  # the last step's logits are those of the whole clip.
  from eleatt_jax.datasets import video  # pylint: disable=g-import-not-at-top
  from train import checkpoints  # pylint: disable=g-import-not-at-top

  run = checkpoints.load_run(str(workdir))
  frames = video.load_video(videos / "jump" / "v_jump_4.avi", 8, 16)
  x = jnp.asarray(frames.reshape(1, 8, -1), jnp.float32) / 255
  logits = run.model.apply({"params": run.state.params}, x)
  np.testing.assert_allclose(
      summary["probabilities"][-1], jax.nn.softmax(logits[0]), atol=1e-5
  )
  assert os.path.isdir(workdir / "export")
