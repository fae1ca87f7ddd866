"""Training and evaluation loop: `train_and_evaluate(config, workdir)`.

* A pure `train_step(state, batch, rng) -> (state, metrics)` (dropout rngs by
  ``fold_in(rng, step)``), run data-parallel either by `jax.jit` over a `Mesh`
  with the batch `NamedSharding`-ed over all devices of all hosts (the
  default) or by `jax.pmap` with ``pmean``/``psum`` (``config.parallel='pmap'``).
* optax: gradient clipping by global norm, constant / cosine / step /
  reduce-on-plateau (`optax.contrib.reduce_on_plateau`, fed the eval_split
  loss at each evaluation) schedules, optional weight decay.
* orbax `CheckpointManager`: a checkpoint every ``checkpoint_every_steps`` and
  at the end, keeping the best ``keep_best`` by eval_split accuracy plus the
  latest; the grain iterator's state is saved with the model; a run resumes
  from the latest readable checkpoint in WORKDIR; SIGTERM saves and exits.
* Fail fast: a non-finite loss stops the run and names the step and the last
  (finite) checkpoint, which is left intact; no checkpoint of non-finite
  parameters is ever written.
* Outputs in WORKDIR: ``checkpoints/``, ``config.json``, ``metrics.jsonl`` (a
  line per logged step and per evaluation), ``tensorboard/`` event files,
  ``eval_results.json``, ``confusion_matrix.png``, ``curves.png``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from eleatt_jax.models import StackedRNNClassifier
from train import input_pipeline
from train import reporting
from train.configs import default as default_config

AXIS = 'batch'  # pmap axis name
MESH_AXIS = 'data'  # jit mesh axis name


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


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


# ---------------------------------------------------------------- config --


def _flatten_keys(cfg, prefix=''):
  keys = {}
  for k, v in cfg.items():
    path = f'{prefix}{k}'
    if isinstance(v, (ml_collections.ConfigDict, dict)):
      keys.update(_flatten_keys(v, path + '.'))
    else:
      keys[path] = v
  return keys


def valid_keys(section: str = '') -> list[str]:
  """The config keys that exist (below `section`, e.g. ``'model'``)."""
  keys = sorted(_flatten_keys(default_config.get_config()))
  if section:
    keys = [k for k in keys if k.startswith(section + '.')]
  return keys


def check_config(config) -> None:
  """Raises a `KeyError` that lists the valid keys for any unknown key."""
  schema = _flatten_keys(default_config.get_config())
  given = _flatten_keys(config)
  unknown = sorted(set(given) - set(schema))
  if unknown:
    key = unknown[0]
    section = key.rsplit('.', 1)[0] if '.' in key else ''
    raise KeyError(
        f'Unknown config key {key!r}. Valid keys'
        + (f' under {section!r}' if section else '') + ': '
        + ', '.join(valid_keys(section) if section else sorted(schema)))
  missing = sorted(set(schema) - set(given))
  if missing:
    raise KeyError(f'Config lacks the keys {missing}; start from '
                   'train/configs/default.py.')
  for name, allowed in (('parallel', ('jit', 'pmap')),
                        ('progress', ('auto', 'bar', 'lines', 'none')),
                        ('final_checkpoint', ('latest', 'best'))):
    if config[name] not in allowed:
      raise ValueError(f'config.{name} must be one of {allowed}, got '
                       f'{config[name]!r}.')
  if config.optim.schedule not in ('constant', 'cosine', 'step', 'plateau'):
    raise ValueError("config.optim.schedule must be 'constant', 'cosine', "
                     f"'step' or 'plateau', got {config.optim.schedule!r}.")
  if config.optim.optimizer not in ('adam', 'adamw', 'sgd'):
    raise ValueError("config.optim.optimizer must be 'adam', 'adamw' or "
                     f"'sgd', got {config.optim.optimizer!r}.")
  if config.model.dtype not in ('float32', 'bfloat16', 'float16'):
    raise ValueError("config.model.dtype must be 'float32', 'bfloat16' or "
                     f"'float16', got {config.model.dtype!r}.")


def _gate_layers(value):
  if isinstance(value, str) and value.strip().isdigit():
    return int(value)
  return value


def create_model(config, num_classes: int) -> StackedRNNClassifier:
  """The classifier of ``config.model``."""
  m = config.model
  return StackedRNNClassifier(
      num_classes=num_classes, cell=m.cell,
      hidden_sizes=tuple(int(h) for h in m.hidden_sizes),
      gate_layers=_gate_layers(m.gate_layers), dropout_rate=m.dropout_rate,
      readout=m.readout, bidirectional=bool(m.bidirectional),
      unroll=int(m.unroll),
      # The input pipeline guarantees 1 <= length <= T; a per-step host
      # callback would gather the sharded lengths to one device.
      check_seq_lengths=False,
      dtype=None if m.dtype == 'float32' else jnp.dtype(m.dtype))


# ------------------------------------------------------------- optimizer --


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
        lr, {b: float(o.decay_factor) for b in boundaries if b > 0})
  if warmup > 0:
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main


def make_optimizer(config, num_steps: int) -> optax.GradientTransformation:
  """Clipping, (weight decay,) the optimizer with the schedule."""
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
  return optax.chain(*parts)


def make_plateau(config, info) -> optax.GradientTransformationExtraArgs:
  """reduce_on_plateau, stepped once per evaluation with the eval loss.

  Patience and cooldown are given in epochs and converted to evaluations
  here, so that they mean the same whatever ``eval_every_steps`` is.
  """
  o = config.optim
  _, steps_per_epoch = num_train_steps(config, info)
  eval_every = int(config.eval_every_steps) or steps_per_epoch
  evals_per_epoch = steps_per_epoch / eval_every
  return optax.contrib.reduce_on_plateau(
      factor=float(o.decay_factor),
      patience=max(1, math.ceil(float(o.plateau_patience) * evals_per_epoch)),
      cooldown=math.ceil(float(o.plateau_cooldown) * evals_per_epoch),
      min_scale=float(o.plateau_min_scale))


def num_train_steps(config, info) -> tuple[int, int]:
  """(training steps, steps per epoch) of ``config`` on the dataset."""
  num_train = info.splits[config.data.train_split]
  steps_per_epoch = max(1, num_train // config.batch_size)
  if config.num_train_steps > 0:
    return int(config.num_train_steps), steps_per_epoch
  return int(config.num_epochs) * steps_per_epoch, steps_per_epoch


def build(config, info, num_steps: int):
  """The model, optimizer, schedule, plateau transform and state initializer.

  Returns:
    ``(model, tx, schedule, plateau_tx, init_fn)``; ``init_fn()`` returns the
    initial `TrainState` (parameters from ``key(seed)``).
  """
  model = create_model(config, info.num_classes)
  schedule = make_schedule(config, num_steps)
  tx = make_optimizer(config, num_steps)
  plateau_tx = make_plateau(config, info)
  init_rng = jax.random.split(jax.random.key(config.seed))[0]
  x0 = jnp.zeros((1, info.num_frames, info.input_dim), jnp.float32)
  l0 = jnp.full((1,), info.num_frames, jnp.int32)

  def init_fn():
    params = model.init(init_rng, x0, l0)['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params),
                      plateau=plateau_tx.init(params))

  return model, tx, schedule, plateau_tx, init_fn


def load_run(workdir: str, checkpoint: str = 'latest'):
  """Config, dataset, model and restored state of a finished or running run.

  Args:
    workdir: The run's directory (with config.json and checkpoints/).
    checkpoint: 'latest', 'best' or a step number.

  Returns:
    ``(config, builder, info, model, state, step)``; the state is on the
    first device.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist: is {workdir!r} the '
                            '--workdir of a training run?')
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  check_config(config)
  builder, info = input_pipeline.prepare_dataset(config, workdir)
  steps, _ = num_train_steps(config, info)
  model, _, _, _, init_fn = build(config, info, steps)
  mngr = checkpoint_manager(workdir, config.keep_best, read_only=True)
  available = sorted(mngr.all_steps())
  if not available:
    raise FileNotFoundError(f'No checkpoint in {mngr.directory}.')
  if checkpoint == 'latest':
    step = mngr.latest_step()
  elif checkpoint == 'best':
    step = mngr.best_step() or mngr.latest_step()
  else:
    step = int(checkpoint)
    if step not in available:
      raise ValueError(f'No checkpoint at step {step} in {mngr.directory}; '
                       f'there are {available}.')
  abstract = abstract_state(init_fn, jax.sharding.SingleDeviceSharding(
      jax.local_devices()[0]))
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract)))
  mngr.close()
  return config, builder, info, model, restored['state'], step


# ------------------------------------------------------------------ steps --


def _cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def train_step(state: TrainState, batch: Mapping[str, jax.Array],
               rng: jax.Array, *, model: StackedRNNClassifier,
               tx: optax.GradientTransformation,
               schedule: optax.Schedule, axis_name: str | None = None):
  """One optimizer step on one (global) batch.

  Pure: the dropout key is ``fold_in(rng, step)`` (and, under pmap, the
  device index). Under `jax.jit` with a sharded batch the sums below run over
  the global batch; under `jax.pmap` (``axis_name`` set) they are `psum`-ed.

  Args:
    state: The train state.
    batch: ``x`` <f32>[B, T, D], ``length`` <i32>[B], ``label`` <i32>[B],
      ``mask`` <bool>[B] (rows that count).
    rng: The run's dropout key (the same at every step).
    model: The classifier.
    tx: The optimizer (without the plateau scale).
    schedule: Its learning-rate schedule, for the metrics.
    axis_name: The pmap axis, or None under jit.

  Returns:
    ``(new_state, metrics)``; metrics: ``loss``, ``accuracy``, ``grad_norm``,
    ``learning_rate`` (scalars) and ``params_finite`` (whether every new
    parameter is finite: no checkpoint is saved otherwise).
  """
  rng = jax.random.fold_in(rng, state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
  weights = batch['mask'].astype(jnp.float32)
  count = weights.sum()
  if axis_name is not None:
    count = jax.lax.psum(count, axis_name)
  count = jnp.maximum(count, 1.0)

  def loss_fn(params):
    logits = model.apply({'params': params}, batch['x'], batch['length'],
                         train=True, rngs={'dropout': rng})
    loss = (_cross_entropy(logits, batch['label']) * weights).sum() / count
    return loss, logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  correct = ((logits.argmax(-1) == batch['label']) * weights).sum() / count
  if axis_name is not None:
    grads, loss, correct = jax.lax.psum((grads, loss, correct), axis_name)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  scale = state.plateau.scale
  updates = jax.tree_util.tree_map(lambda u: (u * scale).astype(u.dtype),
                                   updates)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params,
                            opt_state=opt_state)
  metrics = {
      'loss': loss,
      'accuracy': correct,
      'grad_norm': optax.tree.norm(grads),
      'learning_rate': schedule(state.step) * scale,
      'params_finite': _all_finite(params),
  }
  return new_state, metrics


def eval_step(params, batch: Mapping[str, jax.Array], *,
              model: StackedRNNClassifier, num_classes: int,
              axis_name: str | None = None):
  """Sums over one evaluation batch (masked rows do not count).

  Returns:
    ``loss_sum``, ``correct``, ``count`` (scalars) and ``confusion``
    <f32>[C, C] (rows: true class, columns: predicted).
  """
  logits = model.apply({'params': params}, batch['x'], batch['length'],
                       train=False)
  weights = batch['mask'].astype(jnp.float32)
  pred = logits.argmax(-1)
  true_1h = jax.nn.one_hot(batch['label'], num_classes) * weights[:, None]
  out = {
      'loss_sum': (_cross_entropy(logits, batch['label']) * weights).sum(),
      'correct': ((pred == batch['label']) * weights).sum(),
      'count': weights.sum(),
      'confusion': true_1h.T @ jax.nn.one_hot(pred, num_classes),
  }
  if axis_name is not None:
    out = jax.lax.psum(out, axis_name)
  return out


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


# --------------------------------------------------------------- parallel --


class Parallel:
  """Places state and batches and runs the steps, by jit+mesh or by pmap.

  Both run the same `train_step` / `eval_step`. The state outside this class
  (for checkpoints) is always one unreplicated copy; `host_state` and
  `device_state` convert.
  """

  def __init__(self, mode: str, model, tx, schedule, plateau_tx,
               num_classes: int):
    self.mode = mode
    step = functools.partial(train_step, model=model, tx=tx,
                             schedule=schedule)
    evaluate = functools.partial(eval_step, model=model,
                                 num_classes=num_classes)

    def plateau_update(state, value):
      _, plateau = plateau_tx.update(
          updates=jnp.zeros(()), state=state.plateau, value=value)
      return state.replace(plateau=plateau)

    if mode == 'jit':
      self.mesh = Mesh(np.asarray(jax.devices()), (MESH_AXIS,))
      self.replicated = NamedSharding(self.mesh, PartitionSpec())
      self.data_sharding = NamedSharding(self.mesh, PartitionSpec(MESH_AXIS))
      self._step = jax.jit(step, donate_argnums=0)
      self._eval = jax.jit(evaluate)
      self._plateau = jax.jit(plateau_update)
      self.num_shards = len(jax.devices())
    else:
      self.devices = jax.local_devices()
      self.num_shards = len(self.devices)
      self.pmap_sharding = NamedSharding(
          Mesh(np.asarray(self.devices), (AXIS,)), PartitionSpec(AXIS))
      self._step = jax.pmap(functools.partial(step, axis_name=AXIS),
                            axis_name=AXIS, donate_argnums=0)
      self._eval = jax.pmap(functools.partial(evaluate, axis_name=AXIS),
                            axis_name=AXIS)
      self._plateau = jax.pmap(plateau_update, in_axes=(0, None))

  def state_sharding(self):
    if self.mode == 'jit':
      return self.replicated
    return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def check_batch_size(self, global_batch: int, what: str) -> None:
    if self.mode == 'jit':
      n, kind = len(jax.devices()), 'devices'
      b = global_batch
    else:
      n, kind = len(jax.local_devices()), 'local devices'
      b = global_batch // jax.process_count()
    if b % n:
      raise ValueError(f'{what}={global_batch} gives {b} rows, not divisible '
                       f'by the {n} {kind} (parallel={self.mode}).')

  def device_state(self, state):
    """One copy (with `state_sharding`) -> what the step functions take."""
    if self.mode == 'jit':
      return state
    return self._stack(state)

  def host_state(self, state):
    """The inverse of `device_state`."""
    if self.mode == 'jit':
      return state
    return jax.tree_util.tree_map(lambda x: x[0], state)

  def _stack(self, tree):
    """Replicates along a new leading device axis (pmap's layout)."""
    n = self.num_shards
    return jax.device_put(
        jax.tree_util.tree_map(
            lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), tree),
        self.pmap_sharding)

  def device_batch(self, batch: Mapping[str, np.ndarray]):
    arrays = {k: batch[k] for k in ('x', 'length', 'label', 'mask')}
    if self.mode == 'jit':
      return {k: jax.make_array_from_process_local_data(self.data_sharding, v)
              for k, v in arrays.items()}
    n = self.num_shards
    return jax.device_put(
        {k: v.reshape((n, v.shape[0] // n) + v.shape[1:])
         for k, v in arrays.items()}, self.pmap_sharding)

  def device_rng(self, rng):
    if self.mode == 'jit':  # works with several processes (numpy in, global out)
      data = np.asarray(jax.random.key_data(rng))
      return jax.jit(jax.random.wrap_key_data,
                     out_shardings=self.replicated)(data)
    return self._stack(rng)

  def train_step(self, state, batch, rng):
    state, metrics = self._step(state, batch, rng)
    if self.mode == 'pmap':
      metrics = jax.tree_util.tree_map(lambda x: x[0], metrics)
    return state, metrics

  def eval_step(self, state, batch):
    out = self._eval(state.params, batch)
    if self.mode == 'pmap':
      out = jax.tree_util.tree_map(lambda x: x[0], out)
    return out

  def plateau_update(self, state, value: float):
    return self._plateau(state, jnp.float32(value))



# ------------------------------------------------------------- evaluation --


def evaluate(par: Parallel, state, batches, num_classes: int) -> dict:
  """Accuracy, loss, per-class accuracy and confusion over `batches`."""
  totals = None
  for batch in batches:
    out = par.eval_step(state, par.device_batch(batch))
    totals = out if totals is None else jax.tree_util.tree_map(
        jnp.add, totals, out)
  totals = jax.device_get(totals)
  confusion = np.rint(np.asarray(totals['confusion'])).astype(np.int64)
  count = int(round(float(totals['count'])))
  per_class_total = confusion.sum(axis=1)
  per_class = [float(confusion[c, c] / per_class_total[c])
               if per_class_total[c] else None for c in range(num_classes)]
  return {
      'accuracy': float(totals['correct']) / max(count, 1),
      'loss': float(totals['loss_sum']) / max(count, 1),
      'num_examples': count,
      'per_class_accuracy': per_class,
      'confusion_matrix': confusion.tolist(),
  }


def write_eval_results(path: str, results: Mapping[str, Any], *, step: int,
                       split: str, config, class_names,
                       checkpoint: Mapping[str, Any] | None = None) -> dict:
  """Writes ``{"step", "split", "accuracy", ..., "config"}`` as JSON.

  ``checkpoint`` says which parameters were evaluated and why (``chosen_by``,
  the ``selection_split`` that chose them and its accuracy there).
  """
  out = {
      'step': int(step),
      'split': split,
      'checkpoint': dict(checkpoint or {}),
      'accuracy': results['accuracy'],
      'per_class_accuracy': results['per_class_accuracy'],
      'num_examples': results['num_examples'],
      'loss': results['loss'],
      'class_names': list(class_names),
      'confusion_matrix': results['confusion_matrix'],
      'config': json.loads(config.to_json_best_effort()),
  }
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(out, f, indent=2)
  os.replace(tmp, path)
  return out


# ------------------------------------------------------------ checkpoints --


def checkpoint_manager(workdir: str, keep_best: int,
                       read_only: bool = False) -> ocp.CheckpointManager:
  """Keeps the latest checkpoint and the best `keep_best` by accuracy."""
  policies = ocp.checkpoint_managers
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policies.AnyPreservationPolicy([
          policies.LatestN(n=1),
          policies.BestN(get_metric_fn=lambda m: m['accuracy'], n=keep_best,
                         keep_checkpoints_without_metrics=False),
      ]),
      cleanup_tmp_directories=True, create=not read_only,
      read_only=read_only)
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'), options=options)


def abstract_state(init_fn: Callable[[], TrainState], sharding):
  shapes = jax.eval_shape(init_fn)
  return jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
      shapes)


def restore_latest(mngr: ocp.CheckpointManager, workdir: str, abstract,
                   iterator, log: Callable[[str], None]):
  """Restores the newest readable checkpoint.

  A checkpoint that fails to restore (say, truncated by a crash while it was
  written) is moved to ``WORKDIR/corrupt_checkpoints/STEP`` and the previous
  one is tried, with a message saying so.

  Returns:
    ``(state or None, iterator, mngr)``; the manager is re-created when a
    checkpoint was moved away.
  """
  steps = sorted(mngr.all_steps(), reverse=True)
  failed = []
  for step in steps:
    args = {'state': ocp.args.StandardRestore(abstract)}
    if iterator is not None:
      args['data'] = grain.checkpoint.CheckpointRestore(iterator)
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(**args))
      state = restored['state']
      if int(jax.device_get(state.step)) != step:
        raise ValueError(f'it holds step {int(jax.device_get(state.step))}')
    except Exception as err:  # pylint: disable=broad-except
      msg = f'{type(err).__name__}: {str(err).splitlines()[0][:300]}'
      log(f'Checkpoint at step {step} in {mngr.directory} is unreadable '
          f'({msg}); trying an older one.')
      failed.append(step)
      continue
    if failed:
      log(f'Resuming from step {step} (the newer checkpoint(s) {failed} '
          f'could not be read and were moved to '
          f'{os.path.join(workdir, "corrupt_checkpoints")}).')
      mngr = _move_aside(mngr, workdir, failed)
    else:
      log(f'Resuming from checkpoint step {step} in {mngr.directory}.')
    return (state, restored['data'] if iterator is not None else None,
            mngr)
  if failed:
    log(f'No checkpoint in {mngr.directory} could be read ({failed}); '
        'starting from scratch.')
    mngr = _move_aside(mngr, workdir, failed)
  return None, iterator, mngr


def _move_aside(mngr, workdir, steps):
  directory = os.fspath(mngr.directory)
  mngr.close()
  if jax.process_index() == 0:
    dest = os.path.join(workdir, 'corrupt_checkpoints')
    os.makedirs(dest, exist_ok=True)
    for step in steps:
      src = os.path.join(directory, str(step))
      if os.path.exists(src):
        target = os.path.join(dest, str(step))
        if os.path.exists(target):
          shutil.rmtree(target)
        shutil.move(src, target)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices('moved corrupt checkpoints')
  return None  # the caller re-creates the manager


# ------------------------------------------------------------------- loop --


class _Preemption:
  """Records SIGTERM so that the loop can save and exit cleanly.

  With several processes jax's own preemption notifier (installed by
  `jax.distributed.initialize`) is used instead, through
  `CheckpointManager.reached_preemption`, so that all processes stop at the
  same step.
  """

  def __init__(self, enabled: bool = True):
    self.requested = False
    self.enabled = enabled
    self._previous = None

  def __enter__(self):
    if not self.enabled:
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
    return False


def initialize_distributed() -> None:
  """`jax.distributed.initialize()` when a multi-process environment is set.

  Recognized: ``JAX_COORDINATOR_ADDRESS`` with ``JAX_NUM_PROCESSES`` and
  ``JAX_PROCESS_ID`` (e.g. two processes on one machine), or the
  environments jax detects itself (SLURM, Open MPI, Cloud TPU, Kubernetes)
  when ``JAX_COORDINATOR_ADDRESS`` is unset. On CPU, the gloo collectives are
  used.
  """
  if jax.distributed.is_initialized():
    return
  address = os.environ.get('JAX_COORDINATOR_ADDRESS')
  num = os.environ.get('JAX_NUM_PROCESSES')
  pid = os.environ.get('JAX_PROCESS_ID')
  auto = any(k in os.environ for k in (
      'SLURM_JOB_ID', 'OMPI_COMM_WORLD_SIZE', 'TPU_WORKER_HOSTNAMES'))
  if not address and not auto:
    return
  if address and (num is None or pid is None):
    raise ValueError('JAX_COORDINATOR_ADDRESS is set: also set '
                     'JAX_NUM_PROCESSES and JAX_PROCESS_ID.')
  if jax.config.jax_platforms in (None, '', 'cpu') or os.environ.get(
      'JAX_PLATFORMS', '') == 'cpu':
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if address:
    jax.distributed.initialize(coordinator_address=address,
                               num_processes=int(num), process_id=int(pid))
  else:
    jax.distributed.initialize()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str
                       ) -> dict[str, Any]:
  """Trains, checkpoints and evaluates; resumes from WORKDIR when possible.

  Args:
    config: An experiment config (see train/configs/default.py).
    workdir: Where checkpoints, logs and results go.

  Returns:
    The final evaluation (what eval_results.json holds), plus ``preempted``.

  Raises:
    NonFiniteLossError: the loss became NaN or infinite (the message names
      the step and the last checkpoint, which is left intact).
    KeyError: the config has a key that does not exist.
  """
  check_config(config)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  primary = jax.process_index() == 0
  if primary:
    os.makedirs(workdir, exist_ok=True)
  log = reporting.Logger(primary)

  builder, info = input_pipeline.prepare_dataset(config, workdir)
  num_train = info.splits[config.data.train_split]
  num_steps, steps_per_epoch = num_train_steps(config, info)
  eval_every = int(config.eval_every_steps) or steps_per_epoch
  ckpt_every = int(config.checkpoint_every_steps) or eval_every

  model, tx, schedule, plateau_tx, init_fn = build(config, info, num_steps)
  par = Parallel(config.parallel, model, tx, schedule, plateau_tx,
                 info.num_classes)
  par.check_batch_size(config.batch_size, 'config.batch_size')
  par.check_batch_size(config.eval_batch_size, 'config.eval_batch_size')
  dropout_rng = jax.random.split(jax.random.key(config.seed))[1]

  sharding = par.state_sharding()
  abstract = abstract_state(init_fn, sharding)
  train_it = input_pipeline.train_iterator(config, builder, info)
  mngr = checkpoint_manager(workdir, config.keep_best)
  state, train_it, maybe_mngr = restore_latest(mngr, workdir, abstract,
                                               train_it, log)
  mngr = maybe_mngr or checkpoint_manager(workdir, config.keep_best)
  resumed = state is not None
  if state is None:
    state = jax.jit(init_fn, out_shardings=sharding)()
  start_step = int(jax.device_get(state.step))

  if primary:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
  writer = reporting.MetricWriter(workdir, primary, config.tensorboard,
                                  truncate_after=start_step)
  if not resumed:
    log(reporting.param_table(state.params))
  log(f'{info.name}: {num_train} training examples ({config.data.train_split}'
      f'), {info.num_classes} classes, input [T={info.num_frames}, '
      f'D={info.input_dim}]; {num_steps} steps of {config.batch_size} '
      f'({num_steps / steps_per_epoch:.1f} epochs); parallel='
      f'{config.parallel} over {par.num_shards} device(s), '
      f'{jax.process_count()} process(es).')

  dstate = par.device_state(state)
  drng = par.device_rng(dropout_rng)
  progress = reporting.Progress(config.progress, num_steps, start_step,
                                primary)
  pending: list[tuple[int, dict]] = []
  last_ckpt = mngr.latest_step()
  last_eval: dict[int, dict] = {}
  t_log, n_log = time.time(), 0
  preempted = False

  def flush_metrics(step):
    """Fetches the pending step metrics; fails fast on a non-finite loss."""
    nonlocal t_log, n_log, pending
    if not pending:
      return
    fetched = jax.device_get([m for _, m in pending])
    steps = [s for s, _ in pending]
    pending = []
    for s, m in zip(steps, fetched):
      loss_ok = math.isfinite(float(m['loss']))
      if not loss_ok or not bool(m['params_finite']):
        ckpt = mngr.latest_step()
        where = (f'the last checkpoint is step {ckpt} in {mngr.directory} '
                 '(left intact)') if ckpt is not None else (
                     'no checkpoint was written')
        what = (f'training loss ({float(m["loss"])})' if not loss_ok else
                'parameters (the loss was still finite)')
        progress.close()
        raise NonFiniteLossError(
            f'Non-finite {what} at step {s}; stopping without saving them. '
            f'{where}. Resuming would restart from there.')
    now = time.time()
    mean = {k: float(np.mean([float(m[k]) for m in fetched]))
            for k in fetched[0] if k != 'params_finite'}
    mean['learning_rate'] = float(fetched[-1]['learning_rate'])
    mean['examples_per_sec'] = n_log * config.batch_size / max(
        now - t_log, 1e-9)
    t_log, n_log = now, 0
    writer.write(step, {f'train/{k}': v for k, v in mean.items()})
    progress.update(step, mean)

  def run_eval(step, dstate):
    if step in last_eval:
      return last_eval[step], dstate
    res = evaluate(par, dstate, input_pipeline.eval_batches(
        config, builder, info, config.data.eval_split), info.num_classes)
    split = config.data.eval_split
    writer.write(step, {f'{split}/accuracy': res['accuracy'],
                        f'{split}/loss': res['loss']})
    progress.message(f'step {step}: {split} accuracy {res["accuracy"]:.4f} '
                     f'loss {res["loss"]:.4f} ({res["num_examples"]} '
                     'examples)')
    if config.optim.schedule == 'plateau':
      dstate = par.plateau_update(dstate, res['loss'])
    last_eval.clear()
    last_eval[step] = res
    return res, dstate

  def save(step, dstate, res):
    nonlocal last_ckpt
    flush_metrics(step)  # fails fast (and saves nothing) if not finite
    metrics = None if res is None else {'accuracy': res['accuracy'],
                                        'loss': res['loss']}
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(par.host_state(dstate)),
        data=grain.checkpoint.CheckpointSave(train_it)), metrics=metrics,
              force=True)
    last_ckpt = step

  try:
    with _Preemption(enabled=jax.process_count() == 1) as preemption:
      step = start_step
      while step < num_steps:
        batch = next(train_it)
        if step + 1 == config.inject_nan_at_step:
          batch = dict(batch, x=np.full_like(batch['x'], np.nan))
        dstate, metrics = par.train_step(dstate, par.device_batch(batch), drng)
        step += 1
        n_log += 1
        pending.append((step, metrics))
        progress.tick(step)
        if step % config.log_every_steps == 0 or step == num_steps:
          flush_metrics(step)
        res = None
        if step % eval_every == 0 or step % ckpt_every == 0 or (
            step == num_steps):
          flush_metrics(step)
          res, dstate = run_eval(step, dstate)
        if step % ckpt_every == 0 or step == num_steps:
          save(step, dstate, res)
        if res is not None:  # examples/s counts training time only
          t_log, n_log = time.time(), 0
        stop = preemption.requested
        if jax.process_count() > 1:
          stop = stop or mngr.reached_preemption(step)
        if stop and step < num_steps:
          flush_metrics(step)
          if last_ckpt != step:
            save(step, dstate, None)
          mngr.wait_until_finished()
          progress.close()
          log(f'Preempted (SIGTERM) at step {step}: saved a checkpoint in '
              f'{mngr.directory}; run the same command to resume.')
          preempted = True
          break
  except BaseException:
    # Let pending (finite) checkpoint writes finish, so that the last
    # checkpoint named in the error is complete and intact.
    progress.close()
    mngr.wait_until_finished()
    mngr.close()
    writer.close()
    raise
  mngr.wait_until_finished()
  progress.close()
  if preempted:
    writer.close()
    mngr.close()
    return {'preempted': True, 'step': step}

  # Final evaluation on the test split: its only use in the run.
  final_step = step
  chosen = {'step': step, 'chosen_by': 'latest: the final parameters'}
  if config.final_checkpoint == 'best' and mngr.best_step() is not None:
    final_step = mngr.best_step()
    restored = mngr.restore(final_step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract)))
    dstate = par.device_state(restored['state'])
    chosen = {'step': final_step,
              'chosen_by': f'best: highest {config.data.eval_split} accuracy '
                           f'among the kept checkpoints'}
  chosen['selection_split'] = config.data.eval_split
  if final_step in last_eval:
    chosen['selection_accuracy'] = last_eval[final_step]['accuracy']
  split = config.data.test_split
  res = evaluate(par, dstate, input_pipeline.eval_batches(
      config, builder, info, split), info.num_classes)
  out = {'preempted': False}
  if primary:
    out.update(write_eval_results(
        os.path.join(workdir, 'eval_results.json'), res, step=final_step,
        split=split, config=config, class_names=info.class_names,
        checkpoint=chosen))
    writer.write(final_step, {f'final_{split}/accuracy': res['accuracy']})
  else:
    out.update(res, step=final_step, split=split)
  writer.close()
  mngr.close()
  if primary and config.plots:
    reporting.plot_confusion(os.path.join(workdir, 'confusion_matrix.png'),
                             np.asarray(res['confusion_matrix']),
                             info.class_names, f'{info.name} {split}')
    reporting.plot_curves(os.path.join(workdir, 'metrics.jsonl'),
                          os.path.join(workdir, 'curves.png'))
  log(f'Final {split} accuracy: {100 * res["accuracy"]:.2f}% on '
      f'{res["num_examples"]} examples (step {final_step}).')
  outputs = [('checkpoints', os.path.join(workdir, 'checkpoints')),
             ('results', os.path.join(workdir, 'eval_results.json')),
             ('metrics', os.path.join(workdir, 'metrics.jsonl'))]
  if config.tensorboard:
    outputs.append(('tensorboard', os.path.join(workdir, 'tensorboard')))
  if config.plots:
    outputs += [('curves', os.path.join(workdir, 'curves.png')),
                ('confusion', os.path.join(workdir, 'confusion_matrix.png'))]
  log('\n'.join(f'  {k + ":":<13}{v}' for k, v in outputs))
  return out
