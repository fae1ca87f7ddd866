"""DHG-28, 28 classes (gesture x fingers), subject 01 held out (--config.data.name=dhg/28_loso_NN for the others).

The settings of dhg14.py on the 28-class labels. Build the dataset once (or
let the first run build it from ``--config.data.manual_dir``)::

  python -m eleatt_jax.datasets build dhg/28_loso_01 --manual_dir=DIR --data_dir=DATA

then ``python -m train.main --config=train/configs/dhg28.py --workdir=runs/dhg28
--config.data.data_dir=DATA``.
"""

from train.configs import dhg14


def get_config():
  """dhg28 settings: those of dhg14.py, with 28 classes."""
  config = dhg14.get_config()
  config.data.name = 'dhg/28_loso_01'  # tfds builder/config
  return config
