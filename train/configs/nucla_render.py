"""N-UCLA through the RGB path: stick-figure videos, a per-frame CNN, an EleAtt-GRU.

``nucla_render/dev_t16_s32``: the N-UCLA skeletons drawn from their camera's
viewpoint as 16 gray frames of 32 x 32 (eleatt_jax.datasets.nucla_render),
on the development protocol (view 1 trains, subject 9 of view 1 validates,
view 2 tests), beside the skeleton result of ``nucla_dev.py``. Built on first
use from the N-UCLA JSON files::

  python -m train.main --config=train/configs/nucla_render.py \\
      --workdir=runs/nucla_render --config.data.manual_dir=DIR

docs/video.md compares it with the skeleton models.
"""

from train.configs import default


def get_config():
  """The moving_digits.py recipe on the rendered N-UCLA videos."""
  config = default.get_config()
  config.data.name = 'nucla_render/dev_t16_s32'  # view 1 -> view 2
  config.data.manual_dir = ''  # the N-UCLA JSON files, on first use
  config.data.eval_split = 'validation'  # subject 9 of view 1
  config.data.test_split = 'test'  # view 2, never seen in training
  config.data.preprocess = 'video'  # uint8 frames -> [T, 32*32] in [0, 1]
  config.data.num_frames = 0  # the 16 stored frames
  config.data.temporal = 'pad'  # every clip has 16 frames
  config.model.frame_encoder = 'cnn'  # a small CNN per frame, trained jointly
  config.model.cnn_features = (16, 32, 32)  # 32 -> 16 -> 8 -> 4 pixels
  config.model.frame_features = 64  # the RNN's input size
  config.model.remat = False  # 16 small frames fit easily
  config.model.cell = 'eleatt_gru'  # 'gru' for the baseline
  config.model.hidden_sizes = (64,)  # one layer of 64 neurons
  config.model.dropout_rate = 0.2  # 430 training videos
  config.model.readout = 'mean'  # per-frame logits averaged over the clip
  config.optim.learning_rate = 0.003
  config.optim.schedule = 'cosine'  # fixed: no decision from a split
  config.batch_size = 32
  config.eval_batch_size = 100
  config.num_train_steps = 300  # 22 epochs of view 1 (CPU budget)
  config.log_every_steps = 50
  config.eval_every_steps = 100  # on the validation split
  config.keep_best = 1
  return config
