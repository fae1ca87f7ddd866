"""NTU RGB+D 60 and 120: one config, the benchmark as its argument.

``--config=train/configs/ntu.py:BENCHMARK`` (ml_collections passes the text
after ':' to ``get_config``), with ``BENCHMARK`` one of:

* ``xsub60``: NTU RGB+D 60, cross-subject (paper: 80.7% EleAtt-GRU aug.);
* ``xview60``: NTU RGB+D 60, cross-view (paper: 88.4% EleAtt-GRU aug.);
* ``xsub120``: NTU RGB+D 120, cross-subject;
* ``xset120``: NTU RGB+D 120, cross-setup (even setups train).

Build the dataset once (or let the first run build it from
``--config.data.manual_dir``)::

  python -m eleatt_jax.datasets build ntu_rgbd60/xsub --manual_dir=DIR --data_dir=DATA

then ``python -m train.main --config=train/configs/ntu.py:xsub60
--workdir=runs/ntu60_xsub --config.data.data_dir=DATA``.
``--config.model.cell=gru`` (or ``lstm``, ``rnn``, ``eleatt_lstm``,
``eleatt_rnn``) gives the paper's comparisons; ``--config.data.augment=False``
the runs without augmentation.
"""

from train.configs import _skeleton

# The argument -> its tfds builder/config.
BENCHMARKS = {
    'xsub60': 'ntu_rgbd60/xsub',
    'xview60': 'ntu_rgbd60/xview',
    'xsub120': 'ntu_rgbd120/xsub',
    'xset120': 'ntu_rgbd120/xset',
}
# The arguments get_config takes (the tests run each).
ARGS = tuple(BENCHMARKS)


def get_config(benchmark: str | None = None):
  """The settings of one NTU benchmark (the recipe of _skeleton.py).

  Args:
    benchmark: one of :data:`BENCHMARKS` (``xsub60``, ``xview60``,
      ``xsub120``, ``xset120``).
  """
  if benchmark not in BENCHMARKS:
    raise ValueError(
        f'train/configs/ntu.py needs a benchmark, one of {list(BENCHMARKS)}'
        f' (--config=train/configs/ntu.py:xsub60); got {benchmark!r}.'
    )
  config = _skeleton.get_config(
      BENCHMARKS[benchmark],  # tfds builder/config
      num_epochs=100,  # the cosine schedule spans them
      num_frames=100,  # frames sampled uniformly from each sequence
      augment=True,  # rotation: +-pi/2 about the vertical, +-0.3 rad about x, z
      center_joint=1,
  )  # spine joint (Kinect joint 2)
  return config
