"""Pixel-by-pixel sequential MNIST (784 steps of 1 pixel).

Reads the MNIST (or Fashion-MNIST) IDX files from ``--config.data.manual_dir``;
``--config.data.name=sequential_mnist/mnist5k_pixel`` uses the embedded 5,000
digits instead (no download).
"""

from train.configs import default


def get_config():
  """Pixel-MNIST settings (a long-range memory task)."""
  config = default.get_config()
  config.data.name = 'sequential_mnist/pixel'  # IDX files in manual_dir
  config.data.eval_split = 'validation'  # a stratified 10% of train
  config.data.test_split = 'test'
  config.data.preprocess = 'sequence'
  config.data.num_frames = 0  # all 784 pixels
  config.model.hidden_sizes = (128,)
  config.model.dropout_rate = 0.0
  config.optim.learning_rate = 0.001
  config.optim.schedule = 'cosine'
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.num_epochs = 50
  config.log_every_steps = 100
  config.eval_every_steps = 0  # once an epoch
  return config
