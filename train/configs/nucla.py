"""N-UCLA, train on views 1+2, test on view 3 (paper: 90.7% EleAtt-GRU aug.).

Build the dataset once (or let the first run build it from
``--config.data.manual_dir``)::

  python -m eleatt_jax.datasets build nucla/xview --manual_dir=DIR --data_dir=DATA

then ``python -m train.main --config=train/configs/nucla.py --workdir=runs/nucla
--config.data.data_dir=DATA``. ``--config.model.cell=gru`` (or ``lstm``,
``rnn``, ``eleatt_lstm``, ``eleatt_rnn``) gives the paper's comparisons;
``--config.data.augment=False`` the runs without augmentation.
"""

from train.configs import _skeleton


def get_config():
  """nucla settings (the recipe of _skeleton.py)."""
  config = _skeleton.get_config(
      'nucla/xview',  # tfds builder/config
      num_epochs=85,  # the cosine schedule spans them
      num_frames=25,  # frames sampled uniformly (as good as 50, half the cost)
      augment=True,  # rotation: +-pi/2 about the vertical, +-0.3 rad about x, z
      center_joint=1,  # spine joint (Kinect joint 2)
      batch_size=64,  # a few hundred examples: more, smaller steps
      eval_every_steps=70,
  )  # validation every 10 epochs (dev) / 5 (full)
  return config
