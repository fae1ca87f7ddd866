"""SHREC'17 Track, 28 classes (gesture x fingers).

Build the dataset once (or let the first run build it from
``--config.data.manual_dir``)::

  python -m eleatt_jax.datasets build shrec17/28 --manual_dir=DIR --data_dir=DATA

then ``python -m train.main --config=train/configs/shrec28.py --workdir=runs/shrec28
--config.data.data_dir=DATA``. ``--config.model.cell=gru`` (or ``lstm``,
``rnn``, ``eleatt_lstm``, ``eleatt_rnn``) gives the paper's comparisons;
``--config.data.augment=False`` the runs without augmentation.
"""

from train.configs import _skeleton


def get_config():
  """shrec28 settings (the recipe of _skeleton.py)."""
  config = _skeleton.get_config(
      'shrec17/28',  # tfds builder/config
      num_epochs=200,  # the cosine schedule spans them
      num_frames=60,  # frames sampled uniformly from each sequence
      augment=True,  # random rotation of +-0.3 rad about each axis
      center_joint=1,  # palm joint of the 22-joint hand
      hand=True)  # no shoulder alignment; +-0.3 rad about every axis
  return config
