"""Permuted pixel MNIST: the 784 pixels in a fixed random order.

The order is ``np.random.default_rng(0).permutation(784)`` (the builder's).
Reads the IDX files from ``--config.data.manual_dir``;
``--config.data.name=sequential_mnist/mnist5k_pmnist`` uses the embedded 5,000
digits instead.
"""

from train.configs import smnist_pixel


def get_config():
  """Same settings as smnist_pixel, on the permuted sequences."""
  config = smnist_pixel.get_config()
  config.data.name = 'sequential_mnist/pmnist'  # IDX files in manual_dir
  return config
