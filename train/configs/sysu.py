"""SYSU-3D, cross-subject random split 00 of 30 (paper: 85.7% EleAtt-GRU aug.; --config.data.name=sysu3d/xsub_NN for the others).

Build the dataset once (or let the first run build it from
``--config.data.manual_dir``)::

  python -m eleatt_jax.datasets build sysu3d/xsub_00 --manual_dir=DIR --data_dir=DATA

then ``python -m train.main --config=train/configs/sysu.py --workdir=runs/sysu
--config.data.data_dir=DATA``. ``--config.model.cell=gru`` (or ``lstm``,
``rnn``, ``eleatt_lstm``, ``eleatt_rnn``) gives the paper's comparisons;
``--config.data.augment=False`` the runs without augmentation.
"""

from train.configs import _skeleton


def get_config():
  """sysu settings (the recipe of _skeleton.py)."""
  config = _skeleton.get_config(
      'sysu3d/xsub_00',  # tfds builder/config
      num_epochs=300,  # the cosine schedule spans them
      num_frames=100,  # frames sampled uniformly from each sequence
      augment=True,  # rotation: +-pi/2 about the vertical, +-0.3 rad about x, z
      center_joint=1,
  )  # spine joint (Kinect joint 2)
  return config
