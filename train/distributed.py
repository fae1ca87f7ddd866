"""Several processes training together (`jax.distributed`).

`initialize` starts `jax.distributed` when the environment asks for it;
`sync`, `agree` and `any_process` are the collective points the trainer
needs outside the step functions (all processes wait; all take process 0's
decision; all learn whether any process raised a flag).
"""

from __future__ import annotations

import os
import sys
import threading
import time

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


# The coordination service's key under which a failing process leaves its
# FATAL line for the others.
FATAL_KEY = 'eleatt_jax/fatal'
ACK_KEY = 'eleatt_jax/fatal_ack'
# Set by an announcer other than process 0 just before it exits: process 0
# hosts the coordination service and must be the last to go.
DONE_KEY = 'eleatt_jax/fatal_done'
_announced: str | None = None  # this process's announced line
# Run by `watch_fatal` before it ends the process (os._exit skips `with`
# blocks and `finally` clauses).
_exit_hooks: list = []


def on_fatal_exit(hook):
  """Registers ``hook()`` to run before `watch_fatal` ends this process
  (e.g. to remove a lock file); returns a function that unregisters it."""
  _exit_hooks.append(hook)

  def unregister():
    if hook in _exit_hooks:
      _exit_hooks.remove(hook)

  return unregister


def _client():
  """jax's coordination-service client (None: one process)."""
  if jax.process_count() == 1:
    return None
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top

  return jax_distributed.global_state.client


def announce_fatal(line: str) -> str:
  """Leaves `line` for every process (`watch_fatal`) before this one stops;
  returns the line as all print it (``Process N: line``).

  A process that fails alone (a full disk on its host) would otherwise leave
  the others waiting at the next collective or at orbax's barrier (1200 s).
  Only the first announcement counts, of this process and of all: when
  another process announced first (this one's error is then most likely a
  collective it left), this one ends with that line (`_end_with`).
  """
  global _announced
  if _ending.locked():  # `watch_fatal` is ending this process
    _ending.acquire()  # blocks until it is gone
  if _announced is not None:
    return _announced
  _announced = f'Process {jax.process_index()}: {line}'
  client = _client()
  if client is not None:
    try:
      client.key_value_set(FATAL_KEY, _announced)
    except Exception:  # pylint: disable=broad-except
      try:
        first = client.key_value_try_get(FATAL_KEY)
      except Exception:  # pylint: disable=broad-except
        first = None
      if first and first != _announced:
        _end_with(client, first)
  return _announced


# Held by the thread that ends this process with another's line.
_ending = threading.Lock()


def _end_with(client, line: str) -> None:
  """Ends this process (exit status 1) with the FATAL `line` that another
  process announced; called by one thread only, others block here."""
  _ending.acquire()
  print(f'FATAL: {line}', file=sys.stderr, flush=True)
  sys.stdout.flush()
  for hook in list(_exit_hooks):
    try:
      hook()
    except Exception:  # pylint: disable=broad-except
      pass
  try:  # the announcer waits for this before it exits
    client.key_value_set(f'{ACK_KEY}/{jax.process_index()}', '1')
  except Exception:  # pylint: disable=broad-except
    pass
  if is_primary():
    # The others abort (SIGABRT) if the service is gone first.
    try:
      client.blocking_key_value_get(DONE_KEY, 20_000)
    except Exception:  # pylint: disable=broad-except
      pass  # gone already, or not listening: do not wait longer
    time.sleep(0.5)
  os._exit(1)  # pylint: disable=protected-access


def watch_fatal(poll_s: float = 1.0) -> None:
  """Starts a thread that ends this process (exit status 1, the same FATAL
  line) once another process has announced a fatal error: its main thread
  may be waiting in a collective that will never complete."""
  client = _client()
  if client is None:
    return

  def watch():
    while True:
      try:
        line = client.key_value_try_get(FATAL_KEY)
      except Exception:  # pylint: disable=broad-except
        line = None  # not set (or the service is gone)
      if line and _announced is None:
        _end_with(client, line)
      time.sleep(poll_s)

  threading.Thread(target=watch, name='fatal-watch', daemon=True).start()


def wait_until_heard(timeout_s: float = 20.0) -> None:
  """After `announce_fatal`: waits (at most `timeout_s`) until every other
  process has printed the line. Process 0 hosts jax's coordination service,
  and the others abort (SIGABRT) if it is gone first: as the announcer it
  waits a moment more; another announcer tells it (`DONE_KEY`) that it is
  about to exit, and process 0's `watch_fatal` exits after it.
  """
  client = _client()
  if client is None:
    return
  deadline = time.monotonic() + timeout_s
  for pid in range(jax.process_count()):
    if pid == jax.process_index():
      continue
    left_ms = max(1, int(1000 * (deadline - time.monotonic())))
    try:
      client.blocking_key_value_get(f'{ACK_KEY}/{pid}', left_ms)
    except Exception:  # pylint: disable=broad-except
      pass  # gone already, or not listening: do not wait longer
  if is_primary():
    time.sleep(1.0)
    return
  try:
    client.key_value_set(DONE_KEY, str(jax.process_index()))
  except Exception:  # pylint: disable=broad-except
    pass
