"""N-UCLA development protocol: train on view 1, test on view 2 (view 3 untouched).

Build the dataset once (or let the first run build it from
``--config.data.manual_dir``)::

  python -m eleatt_jax.datasets build nucla/dev --manual_dir=DIR --data_dir=DATA

then ``python -m train.main --config=train/configs/nucla_dev.py --workdir=runs/nucla_dev
--config.data.data_dir=DATA``. ``--config.model.cell=gru`` (or ``lstm``,
``rnn``, ``eleatt_lstm``, ``eleatt_rnn``) gives the paper's comparisons;
``--config.data.augment=False`` the runs without augmentation.
"""

from train.configs import _skeleton


def get_config():
  """nucla_dev settings (shared/DESIGN.md skeleton defaults)."""
  config = _skeleton.get_config(
      'nucla/dev',  # tfds builder/config
      num_epochs=300,  # reduce-on-plateau decides the rate
      num_frames=50,  # frames sampled uniformly from each sequence
      augment=True,  # random rotation of +-0.3 rad about each axis
      center_joint=1)  # spine joint (Kinect joint 2)
  return config
