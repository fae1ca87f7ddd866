"""Guards of the evaluation protocol (issue 9): what the configs decide on.

* No config chooses checkpoints or drives its schedule with the test split.
* No shipped schedule decays in the first 10% of training, even on a tiny
  data set evaluated at every step with a validation loss that only rises
  (what made the reduce-on-plateau rate collapse on N-UCLA before).
"""

from __future__ import annotations

import importlib

import jax.numpy as jnp
import pytest

import train_support as sup
from train import input_pipeline
from train import state

CONFIGS = sup.config_names(with_default=True)


def _info(num_train: int) -> input_pipeline.DatasetInfo:
  return input_pipeline.DatasetInfo(
      name='toy',
      num_classes=10,
      class_names=tuple('abcdefghij'),
      input_dim=60,
      num_frames=50,
      splits={'train': num_train, 'validation': 43, 'test': 504},
      data_dir='',
  )


def rate_after(config, info, fraction: float) -> float:
  """The learning rate after `fraction` of training, the eval loss rising."""
  num_steps, _ = state.num_train_steps(config, info)
  schedule = state.make_schedule(config, num_steps)
  plateau = state.make_plateau(config, info)
  plateau_state = plateau.init({'w': jnp.zeros(())})
  every = state.eval_every_steps(config, info)
  target = int(fraction * num_steps)
  for i, _ in enumerate(range(every, target + 1, every)):
    if config.optim.schedule == 'plateau':
      _, plateau_state = plateau.update(
          updates=jnp.zeros(()), state=plateau_state, value=1.0 + 0.1 * i
      )
  return float(schedule(target)) * float(plateau_state.scale)


@pytest.mark.parametrize('name', CONFIGS)
def test_no_config_selects_on_the_test_split(name):
  config = sup.load_config(name)
  assert config.data.eval_split != config.data.test_split
  assert config.data.eval_split == 'validation'


@pytest.mark.parametrize('name', CONFIGS)
@pytest.mark.parametrize('batches_per_epoch', [1, 2, 50])
def test_rate_is_near_its_peak_after_a_tenth_of_training(
    name, batches_per_epoch
):
  config = sup.load_config(name)
  info = _info(batches_per_epoch * config.batch_size)
  peak = float(config.optim.learning_rate)
  assert rate_after(config, info, 0.1) >= 0.95 * peak


def test_nucla_dev_rate_at_its_peak_after_a_tenth_of_training():
  # nucla/dev as built from ../shared/data: 473 training examples.
  config = importlib.import_module('train.configs.nucla_dev').get_config()
  info = _info(473)
  assert rate_after(config, info, 0.1) >= 0.95 * config.optim.learning_rate
  # ...and the old rule (patience 5 evaluations, one per epoch) would not be.
  config.optim.schedule = 'plateau'
  config.optim.plateau_patience = 5 / state.num_train_steps(config, info)[1]
  config.eval_every_steps = 0
  assert rate_after(config, info, 0.1) < 0.5 * config.optim.learning_rate
