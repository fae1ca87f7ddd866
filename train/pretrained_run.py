"""A model of ``eleatt_jax.pretrained`` as a run: for eval, stream, attention.

`load` gives the `checkpoints.LoadedRun` that ``--workdir`` would give
(config, dataset, model, state), but from the card and weights of a pretrained
model: the config is the card's, the data set is built or read where
``data_dir`` / ``manual_dir`` say, and the state holds the shipped parameters.
`evaluate` evaluates such a run on a split.
"""

from __future__ import annotations

import os

import jax

from eleatt_jax import pretrained
from train import checkpoints
from train import config_lib
from train import input_pipeline
from train import parallel
from train import state as state_lib
from train import steps


def config_of(name: str, manual_dir: str | None, data_dir: str | None):
  """The training config of pretrained ``name``, reading data from the dirs."""
  card = pretrained.card(name)
  config = config_lib.from_json(card['config']['values'])
  config.data.manual_dir = os.path.expanduser(manual_dir) if manual_dir else ''
  config.data.data_dir = os.path.expanduser(data_dir) if data_dir else ''
  return config, card


def load(
    name: str, manual_dir: str | None = None, data_dir: str | None = None
) -> checkpoints.LoadedRun:
  """Pretrained ``name`` as a `LoadedRun` on its data set.

  Raises:
    ValueError: the data set's classes or input differ from the card's.
  """
  config, card = config_of(name, manual_dir, data_dir)
  builder, info = input_pipeline.prepare_dataset(config, os.getcwd())
  if list(info.class_names) != card['classes'] or (
      info.num_frames,
      info.input_dim,
  ) != (card['input']['T'], card['input']['D']):
    raise ValueError(
        f'{config.data.name} has the classes {list(info.class_names)} and '
        f'input [T={info.num_frames}, D={info.input_dim}]; pretrained {name} '
        f'expects {card["classes"]} and [T={card["input"]["T"]}, '
        f'D={card["input"]["D"]}].'
    )
  _, variables, _ = pretrained.load(name)
  num_steps, _ = state_lib.num_train_steps(config, info)
  exp = state_lib.build(config, info, num_steps)
  state = exp.init_fn()
  params = jax.tree_util.tree_map(
      lambda new, old: jax.numpy.asarray(new, old.dtype),
      variables['params'],
      state.params,
  )
  state = state.replace(params=params)
  return checkpoints.LoadedRun(
      config,
      builder,
      info,
      exp,
      state,
      int(card['checkpoint']['step']),
      None,
  )


def evaluate(run: checkpoints.LoadedRun, split: str) -> dict:
  """Accuracy, loss, confusion... of ``run`` on ``split`` (`steps.evaluate`)."""
  if split not in run.info.splits:
    raise ValueError(
        f'--split={split!r}: {run.info.name} has the splits '
        f'{sorted(run.info.splits)}.'
    )
  par = parallel.create('jit', run.experiment, run.info.num_classes)
  n = par.num_shards
  run.config.eval_batch_size = -(-run.config.eval_batch_size // n) * n
  state = jax.device_put(run.state, par.replicated)
  return steps.evaluate(
      par,
      state,
      input_pipeline.eval_batches(run.config, run.builder, run.info, split),
      run.info.num_classes,
  )
