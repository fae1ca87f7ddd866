"""DHG-14, 14 gestures, leave-one-subject-out with subject 01 held out (--config.data.name=dhg/14_loso_NN for the others).

Build the dataset once (or let the first run build it from
``--config.data.manual_dir``)::

  python -m eleatt_jax.datasets build dhg/14_loso_01 --manual_dir=DIR --data_dir=DATA

then ``python -m train.main --config=train/configs/dhg14.py --workdir=runs/dhg14
--config.data.data_dir=DATA``. ``--config.model.cell=gru`` (or ``lstm``,
``rnn``, ``eleatt_lstm``, ``eleatt_rnn``) gives the paper's comparisons;
``--config.data.augment=False`` the runs without augmentation.
"""

from train.configs import _skeleton


def get_config():
  """dhg14 settings (the recipe of _skeleton.py)."""
  config = _skeleton.get_config(
      'dhg/14_loso_01',  # tfds builder/config
      num_epochs=200,  # the cosine schedule spans them
      num_frames=60,  # frames sampled uniformly from each sequence
      augment=True,  # random rotation of +-0.3 rad about each axis
      center_joint=1,  # palm joint of the 22-joint hand
      hand=True,
  )  # no shoulder alignment; +-0.3 rad about every axis
  return config
