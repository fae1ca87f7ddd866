"""N-UCLA development protocol: train on view 1, test on view 2 (view 3 untouched).

The settings of nucla.py on the ``nucla/dev`` split. Build it once (or let
the first run build it from ``--config.data.manual_dir``)::

  python -m eleatt_jax.datasets build nucla/dev --manual_dir=DIR --data_dir=DATA

then ``python -m train.main --config=train/configs/nucla_dev.py --workdir=runs/nucla_dev
--config.data.data_dir=DATA``.
"""

from train.configs import nucla


def get_config():
  """nucla_dev settings: those of nucla.py, on view 1 -> view 2."""
  config = nucla.get_config()
  config.data.name = 'nucla/dev'  # tfds builder/config
  return config
