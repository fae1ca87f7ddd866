"""Shared settings of the skeleton experiments (not an experiment itself).

``shared/DESIGN.md``: 3 x 100 recurrent layers, dropout 0.5, Adam 0.005,
gradient clip 1, batch 256, reduce-on-plateau x0.1, per-step logits averaged
over frames, translation to the spine joint of the first frame, and random
rotation of +-0.3 rad about each axis for the "(aug.)" configs.
"""

from train.configs import default


def get_config(name: str, num_frames: int, num_epochs: int,
               augment: bool = True, center_joint: int = 1):
  """A skeleton config for tfds dataset `name`."""
  config = default.get_config()
  config.data.name = name
  config.data.train_split = 'train'
  # Schedules, early stopping and checkpoint choice see validation only
  # (subjects carved from the training data by the builder); the test split
  # is evaluated once, at the end, into eval_results.json.
  config.data.eval_split = 'validation'
  config.data.test_split = 'test'
  config.num_epochs = num_epochs  # reduce-on-plateau decides the rate
  config.data.preprocess = 'skeleton'
  config.data.num_frames = num_frames  # uniform temporal sampling to this
  config.data.temporal = 'sample'
  config.data.center_joint = center_joint
  config.data.augment = augment  # the paper's "(aug.)": rotation only
  config.data.max_angle = 0.3
  config.model.hidden_sizes = (100, 100, 100)
  config.model.dropout_rate = 0.5
  config.model.readout = 'mean'
  config.optim.optimizer = 'adam'
  config.optim.learning_rate = 0.005
  config.optim.grad_clip_norm = 1.0
  config.optim.schedule = 'plateau'
  config.optim.decay_factor = 0.1
  config.batch_size = 256
  config.eval_every_steps = 0  # once an epoch
  return config
