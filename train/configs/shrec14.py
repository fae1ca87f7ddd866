"""SHREC'17 Track, 14 gestures.

The gestures of DHG, recorded the same way (the 22-joint hand): the settings
of dhg14.py. Build the dataset once (or let the first run build it from
``--config.data.manual_dir``)::

  python -m eleatt_jax.datasets build shrec17/14 --manual_dir=DIR --data_dir=DATA

then ``python -m train.main --config=train/configs/shrec14.py --workdir=runs/shrec14
--config.data.data_dir=DATA``. ``--config.model.cell=gru`` (or ``lstm``,
``rnn``, ``eleatt_lstm``, ``eleatt_rnn``) gives the paper's comparisons;
``--config.data.augment=False`` the runs without augmentation.
"""

from train.configs import dhg14


def get_config():
  """shrec14 settings: those of dhg14.py, on SHREC'17."""
  config = dhg14.get_config()
  config.data.name = 'shrec17/14'  # tfds builder/config
  return config
