"""Your own videos in class folders (UCF101 / HMDB51 / JHMDB layout), end to end.

``--config.data.manual_dir=DIR`` points at a folder holding one folder per
class, each with that class's videos (``DIR/CLASS/VIDEO.avi``; optional
UCF101 ``trainlist01.txt``/``testlist01.txt`` or HMDB51
``CLASS_test_split1.txt`` files below DIR). The ``video_folder`` builder
decodes them with PyAV (``pip install 'eleatt-jax[video]'``), keeps 16
uniformly sampled frames of 64 x 64 and stores them once; a small CNN encodes
each frame and an EleAtt-GRU models time::

  python -m train.main --config=train/configs/video_folder.py \\
      --workdir=runs/ucf101 --config.data.manual_dir=/data/UCF-101 \\
      --config.data.data_dir=/data/tfds

Other sizes: ``--config.data.name=video_folder/t16_s112`` (or t16_s32,
t8_s16, t16_s32_gray). A damaged video stops the build with its name;
``--config.data.name=video_folder/t16_s64/skip_corrupt=True`` skips and
counts them instead. Checkpoint choice sees the ``validation`` split (10% of
the training videos), never ``test``.
"""

from train.configs import default


def get_config():
  """Settings for a UCF101-sized folder; every field can be overridden."""
  config = default.get_config()
  config.data.name = 'video_folder/t16_s64'  # 16 RGB frames of 64 x 64
  config.data.manual_dir = ''  # required on first use: DIR/CLASS/VIDEO.ext
  config.data.eval_split = 'validation'  # 10% of the training videos
  config.data.test_split = 'test'  # the split list's test videos (or 20%)
  config.data.preprocess = 'video'  # uint8 frames -> [T, 64*64*3] in [0, 1]
  config.data.num_frames = 0  # the 16 stored frames
  config.data.temporal = 'pad'  # every clip has 16 frames
  config.model.frame_encoder = 'cnn'  # a CNN per frame, trained jointly
  config.model.cnn_features = (32, 64, 64, 128)  # 64 -> 32 -> 16 -> 8 -> 4
  config.model.frame_features = 256  # the RNN's input size
  config.model.remat = True  # recompute CNN activations: 16 x batch frames
  config.model.cell = 'eleatt_gru'
  config.model.hidden_sizes = (256, 256)
  config.model.dropout_rate = 0.5
  config.model.readout = 'mean'  # per-frame logits averaged over the clip
  config.optim.learning_rate = 0.001
  config.optim.schedule = 'cosine'  # fixed: no decision from a split
  config.batch_size = 32
  config.eval_batch_size = 64
  config.num_epochs = 50
  config.log_every_steps = 50
  return config
