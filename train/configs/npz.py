"""Your own labelled sequences in the sequence-npz layout.

``--config.data.path=DIR`` points at a folder holding ``train.npz`` and
``test.npz`` (optionally ``validation.npz``), each with ``x`` float32
(N, T_max, D) zero-padded after each sequence's end, ``lengths`` int32 (N,),
``y`` int64 (N,) in 0..C-1 and ``class_names`` str (C,)::

  python -m train.main --config=train/configs/npz.py --workdir=runs/mine \\
      --config.data.path=/data/mine

The dataset is built into WORKDIR/tfds on first use (``--config.data.data_dir``
to keep it elsewhere; a different DIR needs a different data_dir, since the
builder's name is the same). Schedules and checkpoint choice see the
``validation`` split: ``validation.npz`` when it exists, else a seeded
stratified 10% of ``train.npz`` that the builder carves out.
"""

from train.configs import default


def get_config():
  """Settings for small user data sets; every field can be overridden."""
  config = default.get_config()
  config.data.name = 'sequence_npz'
  config.data.path = ''  # required: the folder with train.npz / test.npz
  # validation.npz, or a seeded stratified 10% of train.npz without it.
  config.data.eval_split = 'validation'
  config.data.test_split = 'test'
  config.data.preprocess = 'sequence'  # x is used as it is
  config.data.num_frames = 0  # pad to the longest sequence of the data
  config.data.temporal = 'pad'  # the RNN sees each sequence's length
  config.model.hidden_sizes = (100, 100)
  config.model.dropout_rate = 0.2
  config.optim.schedule = 'cosine'  # fixed: no decision from a split
  config.batch_size = 32
  config.eval_batch_size = 256
  config.num_epochs = 100
  config.log_every_steps = 10
  return config
