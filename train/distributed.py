"""Several processes training together (`jax.distributed`).

`initialize` starts `jax.distributed` when the environment asks for it;
`sync`, `agree` and `any_process` are the collective points the trainer
needs outside the step functions (all processes wait; all take process 0's
decision; all learn whether any process raised a flag).
"""

from __future__ import annotations

import os

import jax
import numpy as np


def initialize() -> None:
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
  auto = any(
      k in os.environ
      for k in ('SLURM_JOB_ID', 'OMPI_COMM_WORLD_SIZE', 'TPU_WORKER_HOSTNAMES')
  )
  if not address and not auto:
    return
  if address and (num is None or pid is None):
    raise ValueError(
        'JAX_COORDINATOR_ADDRESS is set: also set '
        'JAX_NUM_PROCESSES and JAX_PROCESS_ID.'
    )
  if (
      jax.config.jax_platforms in (None, '', 'cpu')
      or os.environ.get('JAX_PLATFORMS', '') == 'cpu'
  ):
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if address:
    jax.distributed.initialize(
        coordinator_address=address, num_processes=int(num), process_id=int(pid)
    )
  else:
    jax.distributed.initialize()


def is_primary() -> bool:
  """Process 0: the one that writes the shared files and reports."""
  return jax.process_index() == 0


def sync(name: str) -> None:
  """All processes wait here (a no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices(name)


def agree(flag: bool) -> bool:
  """Process 0's `flag`, on every process."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def any_process(flag: bool) -> bool:
  """True on every process if `flag` is True on any."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))
