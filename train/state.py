"""The model, the optimizer and the train state of an experiment config.

* `create_model`: the `StackedRNNClassifier` of ``config.model``.
* optax: gradient clipping by global norm, constant / cosine / step /
  reduce-on-plateau (`optax.contrib.reduce_on_plateau`, fed the eval_split
  loss at each evaluation) schedules, optional weight decay.
* `build` gathers them in an `Experiment`, whose ``init_fn()`` gives the
  initial `TrainState`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from eleatt_jax import classifier
from eleatt_jax.frame_encoders import VideoClassifier
from eleatt_jax.models import StackedRNNClassifier


class TrainState(struct.PyTreeNode):
  """Everything a checkpoint holds about the model and the optimizer.

  Attributes:
    step: <int32>[] steps taken.
    params: the model's parameters.
    opt_state: the optax state.
    plateau: the `optax.contrib.reduce_on_plateau` state; ``plateau.scale``
      multiplies the learning rate (1 unless ``schedule='plateau'``).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  plateau: Any


def create_model(
    config, num_classes: int, frame_shape: tuple[int, ...] = ()
) -> StackedRNNClassifier:
  """The classifier of ``config.model``.

  With ``model.frame_encoder='cnn'``, a `VideoClassifier` (a per-frame CNN,
  then the same stacked RNN) for frames of ``frame_shape`` (H, W, C).
  """
  m = config.model
  # A number given as text is the int; a bad value reaches the model's error.
  gate_layers = classifier.parse_gate_layers(m.gate_layers)
  # The recurrent classifier's arguments, with or without a frame encoder.
  rnn = dict(
      num_classes=num_classes,
      cell=m.cell,
      hidden_sizes=tuple(int(h) for h in m.hidden_sizes),
      gate_layers=m.gate_layers if gate_layers is None else gate_layers,
      gate_bias_init=float(m.gate_bias_init),
      dropout_rate=m.dropout_rate,
      readout=m.readout,
      unroll=int(m.unroll),
      # The input pipeline guarantees 1 <= length <= T; a per-step host
      # callback would gather the sharded lengths to one device.
      check_seq_lengths=False,
      dtype=None if m.dtype == 'float32' else jnp.dtype(m.dtype),
  )
  if m.frame_encoder == 'cnn':
    if len(frame_shape) != 3:
      raise ValueError(
          "config.model.frame_encoder='cnn' needs video frames [H, W, C] "
          f'(data.preprocess=video), got frame shape {frame_shape!r}.'
      )
    return VideoClassifier(
        frame_shape=tuple(int(s) for s in frame_shape),
        cnn_features=tuple(int(c) for c in m.cnn_features),
        frame_features=int(m.frame_features),
        remat=bool(m.remat),
        **rnn,
    )
  return StackedRNNClassifier(bidirectional=bool(m.bidirectional), **rnn)


def make_schedule(config, num_steps: int) -> optax.Schedule:
  """The learning-rate schedule before the plateau scale."""
  o = config.optim
  lr = float(o.learning_rate)
  warmup = int(o.warmup_steps)
  if o.schedule in ('constant', 'plateau'):
    main = optax.constant_schedule(lr)
  elif o.schedule == 'cosine':
    main = optax.cosine_decay_schedule(lr, max(1, num_steps - warmup))
  else:  # step
    boundaries = sorted(int(s) - warmup for s in o.decay_steps)
    main = optax.piecewise_constant_schedule(
        lr, {b: float(o.decay_factor) for b in boundaries if b > 0}
    )
  if warmup > 0:
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup), main], [warmup]
    )
  return main


class EmaState(NamedTuple):
  """The moving average of the parameters that `ema_of_params` keeps."""

  ema: Any


def ema_of_params(decay: float) -> optax.GradientTransformation:
  """Keeps an exponential moving average of the parameters in its state.

  The last transform of a chain: it passes `updates` through unchanged and
  updates ema <- decay * ema + (1 - decay) * (params + updates), the
  parameters after this step; the average starts at the initial parameters.
  """

  def init_fn(params):
    return EmaState(ema=jax.tree_util.tree_map(jnp.asarray, params))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('ema_of_params needs the parameters (tx.update(..., p))')
    new_params = optax.apply_updates(params, updates)
    ema = jax.tree_util.tree_map(
        lambda e, p: decay * e + (1.0 - decay) * p, state.ema, new_params
    )
    return updates, EmaState(ema=ema)

  return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(config, num_steps: int) -> optax.GradientTransformation:
  """Clipping, (weight decay,) the optimizer with the schedule (, and the
  moving average of the parameters, the chain's last state)."""
  o = config.optim
  schedule = make_schedule(config, num_steps)
  parts = []
  if o.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(float(o.grad_clip_norm)))
  if o.weight_decay > 0 and o.optimizer != 'adamw':
    parts.append(optax.add_decayed_weights(float(o.weight_decay)))
  if o.optimizer == 'adam':
    parts.append(optax.adam(schedule))
  elif o.optimizer == 'adamw':
    parts.append(optax.adamw(schedule, weight_decay=float(o.weight_decay)))
  else:
    parts.append(optax.sgd(schedule, momentum=float(o.momentum)))
  if o.ema_decay > 0:
    parts.append(ema_of_params(float(o.ema_decay)))
  return optax.chain(*parts)


def eval_params_fn(config) -> Callable[[TrainState], Any]:
  """``state -> the parameters that evaluation uses``: the moving average
  with ``optim.ema_decay > 0`` (the last state of `make_optimizer`'s chain),
  the parameters otherwise."""
  if config.optim.ema_decay > 0:
    return lambda state: state.opt_state[-1].ema
  return lambda state: state.params


def num_train_steps(config, info) -> tuple[int, int]:
  """(training steps, steps per epoch) of ``config`` on the dataset."""
  num_train = info.num_train(config.data.train_split)
  steps_per_epoch = max(1, num_train // config.batch_size)
  if config.num_train_steps > 0:
    return int(config.num_train_steps), steps_per_epoch
  return int(config.num_epochs) * steps_per_epoch, steps_per_epoch


def eval_every_steps(config, info) -> int:
  """Steps between evaluations (``eval_every_steps``, or an epoch)."""
  return int(config.eval_every_steps) or num_train_steps(config, info)[1]


def make_plateau(config, info) -> optax.GradientTransformationExtraArgs:
  """reduce_on_plateau, stepped once per evaluation with the eval loss.

  Patience and cooldown are given in epochs and converted to evaluations
  here, so that they mean the same whatever ``eval_every_steps`` is.
  """
  o = config.optim
  _, steps_per_epoch = num_train_steps(config, info)
  evals_per_epoch = steps_per_epoch / eval_every_steps(config, info)
  return optax.contrib.reduce_on_plateau(
      factor=float(o.decay_factor),
      patience=max(1, math.ceil(float(o.plateau_patience) * evals_per_epoch)),
      cooldown=math.ceil(float(o.plateau_cooldown) * evals_per_epoch),
      min_scale=float(o.plateau_min_scale),
  )


@dataclasses.dataclass(frozen=True)
class Experiment:
  """The model and optimizer of a config, and how to initialize the state.

  Attributes:
    model: The classifier.
    tx: The optimizer (without the plateau scale).
    schedule: Its learning-rate schedule.
    plateau_tx: The reduce-on-plateau transform (its scale is in the state).
    init_fn: ``() -> TrainState``, the parameters from ``key(seed)``.
    dropout_rng: The run's dropout key (``fold_in`` with the step in the
      train step).
    eval_params: ``state -> the parameters evaluation uses`` (the moving
      average with ``optim.ema_decay``).
    label_smoothing: Of the training loss.
  """

  model: StackedRNNClassifier
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  plateau_tx: optax.GradientTransformationExtraArgs
  init_fn: Callable[[], TrainState]
  dropout_rng: jax.Array
  eval_params: Callable[[TrainState], Any] = lambda state: state.params
  label_smoothing: float = 0.0

  def abstract_state(self, sharding) -> TrainState:
    """The state's shapes and dtypes with `sharding` (for restoring)."""
    return jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
        jax.eval_shape(self.init_fn),
    )


def build(config, info, num_steps: int) -> Experiment:
  """The `Experiment` of ``config`` on the dataset described by `info`."""
  model = create_model(
      config, info.num_classes, getattr(info, 'frame_shape', ())
  )
  tx = make_optimizer(config, num_steps)
  plateau_tx = make_plateau(config, info)
  init_rng, dropout_rng = jax.random.split(jax.random.key(config.seed))
  x0 = jnp.zeros((1, info.num_frames, info.input_dim), jnp.float32)
  l0 = jnp.full((1,), info.num_frames, jnp.int32)

  def init_fn():
    params = model.init(init_rng, x0, l0)['params']
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        plateau=plateau_tx.init(params),
    )

  return Experiment(
      model=model,
      tx=tx,
      schedule=make_schedule(config, num_steps),
      plateau_tx=plateau_tx,
      init_fn=init_fn,
      dropout_rng=dropout_rng,
      eval_params=eval_params_fn(config),
      label_smoothing=float(config.optim.label_smoothing),
  )
