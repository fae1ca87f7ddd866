"""Data parallelism: where the state and batches live, how the steps run.

`DataParallel` (the default) is `jax.jit` over a `Mesh` of every device of
every process, the batch `NamedSharding`-ed along it and the state
replicated. `PmapParallel` (``config.parallel='pmap'``) is a thin switch to
`jax.pmap` with ``psum``, kept only for comparison (pmap is in maintenance
mode upstream). Both run the same `train.steps` functions and have the same
interface; outside them the state is one unreplicated copy (`host_state`,
`device_state` convert).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from train import steps

MESH_AXIS = 'data'  # jit mesh axis name
PMAP_AXIS = 'batch'  # pmap axis name
DEVICE_KEYS = ('x', 'length', 'label', 'mask')  # what the steps read


def _step_fns(exp, num_classes: int, axis_name: str | None = None):
  """The train, eval and plateau functions of an `Experiment`, unjitted."""
  train = functools.partial(
      steps.train_step,
      model=exp.model,
      tx=exp.tx,
      schedule=exp.schedule,
      axis_name=axis_name,
      label_smoothing=exp.label_smoothing,
  )
  evaluate = functools.partial(
      steps.eval_step,
      model=exp.model,
      num_classes=num_classes,
      axis_name=axis_name,
  )
  plateau = functools.partial(steps.plateau_update, plateau_tx=exp.plateau_tx)
  return train, evaluate, plateau


class DataParallel:
  """jit over a Mesh of all devices: the batch split, the state replicated."""

  name = 'jit'
  kind = 'devices'

  def __init__(self, exp, num_classes: int):
    self.mesh = Mesh(np.asarray(jax.devices()), (MESH_AXIS,))
    self.replicated = NamedSharding(self.mesh, PartitionSpec())
    self.data_sharding = NamedSharding(self.mesh, PartitionSpec(MESH_AXIS))
    self.num_shards = len(jax.devices())
    train, evaluate, plateau = _step_fns(exp, num_classes)
    self._eval_params = exp.eval_params
    self._step = jax.jit(train, donate_argnums=0)
    self._eval = jax.jit(evaluate)
    self._plateau = jax.jit(plateau)

  def state_sharding(self):
    """Where one copy of the state lives (for init and restore)."""
    return self.replicated

  def rows(self, global_batch: int) -> int:
    """Rows of a global batch that the devices of `kind` split."""
    return global_batch

  def check_batch_size(self, global_batch: int, what: str) -> None:
    b = self.rows(global_batch)
    if b % self.num_shards:
      raise ValueError(
          f'{what}={global_batch} gives {b} rows, not divisible by the '
          f'{self.num_shards} {self.kind} (parallel={self.name}).'
      )

  def device_state(self, state):
    """One copy (with `state_sharding`) -> what the step functions take."""
    return state

  def host_state(self, state):
    """The inverse of `device_state`."""
    return state

  def device_batch(self, batch: Mapping[str, np.ndarray]):
    """This process's rows -> the global batch, sharded over the mesh."""
    return {
        k: jax.make_array_from_process_local_data(self.data_sharding, batch[k])
        for k in DEVICE_KEYS
    }

  def device_rng(self, rng):
    # NumPy in, a global array out: works with several processes.
    data = np.asarray(jax.random.key_data(rng))
    return jax.jit(jax.random.wrap_key_data, out_shardings=self.replicated)(
        data
    )

  def train_step(self, state, batch, rng):
    return self._step(state, batch, rng)

  def eval_step(self, state, batch):
    return self._eval(self._eval_params(state), batch)

  def plateau_update(self, state, value: float):
    return self._plateau(state, jnp.float32(value))


def _first(tree):
  return jax.tree_util.tree_map(lambda x: x[0], tree)


class PmapParallel(DataParallel):
  """``config.parallel='pmap'``: the same steps under `jax.pmap` and psum."""

  kind = 'local devices'
  name = 'pmap'

  def __init__(self, exp, num_classes: int):  # pylint: disable=super-init-not-called
    self.devices = jax.local_devices()
    self.num_shards = len(self.devices)
    self.sharding = NamedSharding(
        Mesh(np.asarray(self.devices), (PMAP_AXIS,)), PartitionSpec(PMAP_AXIS)
    )
    train, evaluate, plateau = _step_fns(exp, num_classes, PMAP_AXIS)
    self._eval_params = exp.eval_params
    self._step = jax.pmap(train, axis_name=PMAP_AXIS, donate_argnums=0)
    self._eval = jax.pmap(evaluate, axis_name=PMAP_AXIS)
    self._plateau = jax.pmap(plateau, in_axes=(0, None))

  def state_sharding(self):
    return jax.sharding.SingleDeviceSharding(self.devices[0])

  def rows(self, global_batch: int) -> int:
    return global_batch // jax.process_count()

  def device_state(self, state):
    return self._replicate(state)

  def host_state(self, state):
    return _first(state)

  def _replicate(self, tree):
    """Along a new leading device axis (pmap's layout)."""
    n = self.num_shards
    return jax.device_put(
        jax.tree_util.tree_map(
            lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), tree
        ),
        self.sharding,
    )

  def device_batch(self, batch: Mapping[str, np.ndarray]):
    n = self.num_shards
    return jax.device_put(
        {
            k: batch[k].reshape((n, -1) + batch[k].shape[1:])
            for k in DEVICE_KEYS
        },
        self.sharding,
    )

  def device_rng(self, rng):
    return self._replicate(rng)

  def train_step(self, state, batch, rng):
    state, metrics = self._step(state, batch, rng)
    return state, _first(metrics)

  def eval_step(self, state, batch):
    return _first(self._eval(self._eval_params(state), batch))


def create(mode: str, exp, num_classes: int) -> DataParallel:
  """The runner of ``config.parallel`` (`mode`: 'jit' or 'pmap')."""
  return (PmapParallel if mode == 'pmap' else DataParallel)(exp, num_classes)
