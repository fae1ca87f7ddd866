"""SHREC'17 Track, 28 classes (gesture x fingers).

The settings of shrec14.py on the 28-class labels. Build the dataset once (or
let the first run build it from ``--config.data.manual_dir``)::

  python -m eleatt_jax.datasets build shrec17/28 --manual_dir=DIR --data_dir=DATA

then ``python -m train.main --config=train/configs/shrec28.py --workdir=runs/shrec28
--config.data.data_dir=DATA``.
"""

from train.configs import shrec14


def get_config():
  """shrec28 settings: those of shrec14.py, with 28 classes."""
  config = shrec14.get_config()
  config.data.name = 'shrec17/28'  # tfds builder/config
  return config
