"""NTU RGB+D 120, cross-subject.

Build the dataset once (or let the first run build it from
``--config.data.manual_dir``)::

  python -m eleatt_jax.datasets build ntu_rgbd120/xsub --manual_dir=DIR --data_dir=DATA

then ``python -m train.main --config=train/configs/ntu120_xsub.py --workdir=runs/ntu120_xsub
--config.data.data_dir=DATA``. ``--config.model.cell=gru`` (or ``lstm``,
``rnn``, ``eleatt_lstm``, ``eleatt_rnn``) gives the paper's comparisons;
``--config.data.augment=False`` the runs without augmentation.
"""

from train.configs import _skeleton


def get_config():
  """ntu120_xsub settings (the recipe of _skeleton.py)."""
  config = _skeleton.get_config(
      'ntu_rgbd120/xsub',  # tfds builder/config
      num_epochs=100,  # the cosine schedule spans them
      num_frames=100,  # frames sampled uniformly from each sequence
      augment=True,  # rotation: +-pi/2 about the vertical, +-0.3 rad about x, z
      center_joint=1,
  )  # spine joint (Kinect joint 2)
  return config
