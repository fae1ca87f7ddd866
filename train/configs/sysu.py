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
  """sysu settings (shared/DESIGN.md skeleton defaults)."""
  config = _skeleton.get_config(
      'sysu3d/xsub_00',  # tfds builder/config
      num_epochs=300,  # reduce-on-plateau decides the rate
      num_frames=100,  # frames sampled uniformly from each sequence
      augment=True,  # random rotation of +-0.3 rad about each axis
      center_joint=1)  # spine joint (Kinect joint 2)
  return config
