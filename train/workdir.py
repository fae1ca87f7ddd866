"""The run's directory: one trainer at a time, and never a run destroyed.

* `WorkdirLock`: an exclusive `fcntl.flock` on ``WORKDIR/train.lock``, which
  holds the holder's pid and host. A second trainer exits at once naming
  them; the kernel drops the lock of a killed process, so a stale lock file
  never blocks a rerun. A run that ends (or fails) removes it.
* `check_previous_run`: a rerun whose config differs from the saved
  config.json in what changes the model or data, or whose data files differ
  from those the run was trained on (`data_source`), is refused, naming the
  keys (both data sources); with ``config.overwrite`` the old run, with all
  that was written for it (`RUN_OUTPUTS`), is moved to ``WORKDIR/replaced/N``.
* `move_aside`: moves a path into a folder under a fresh name; nothing is
  ever deleted or replaced.
* `write_atomically`: a file (text, JSON, a PNG) is replaced only by a
  complete new version; `append_whole`: a line or record is appended whole
  or not at all.
* `disk_full_error`: a write that failed for want of space (ENOSPC, EDQUOT,
  EFBIG), anywhere in an exception's chain (orbax's background writes
  included), as a short `DiskFullError`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from typing import BinaryIO

from train import config_lib
from train import distributed

LOCK_FILE = 'train.lock'
REPLACED = 'replaced'
# What a run writes in WORKDIR, its own and that of the commands run on it
# (train.eval, train.export, train.attention), and the data built there: all
# of it belongs to the run, and `check_previous_run` moves all of it aside.
RUN_OUTPUTS = (
    'checkpoints',
    'corrupt_checkpoints',
    'config.json',
    'data_source.json',
    'metrics.jsonl',
    'eval_results.json',
    'eval_results_*.json',
    'tensorboard',
    'confusion_matrix.png',
    'confusion_matrix_*.png',
    'curves.png',
    'export',
    'attention_*.png',
    'attention_*.npz',
    'tfds',  # sequence_npz data built in the workdir (no data.data_dir)
)
DATA_SOURCE = 'data_source.json'


class WorkdirError(RuntimeError):
  """The workdir is in use, or holds another run, or its disk is full."""


class DiskFullError(WorkdirError):
  """A write failed for want of space: disk, quota or file-size limit."""


# What each errno of a write that cannot be made means.
DISK_FULL = {
    errno.ENOSPC: 'no space left on device (ENOSPC): the disk is full',
    errno.EDQUOT: 'disk quota exceeded (EDQUOT)',
    errno.EFBIG: 'file too large (EFBIG): over the file-size limit',
}
# tensorstore (orbax's array writes) reports an OSError's errno in its text.
_OS_ERROR_CODE = re.compile(r"os_error_code='(\d+)'")
_LOCAL_FILE = re.compile(r'local file "([^"]+)"')


def disk_full_errno(
    err: BaseException | str | None,
) -> tuple[int, str | None] | None:
  """``(errno, file or None)`` if `err` is or wraps a failed write for want
  of space (its cause, context, exception group or tensorstore's text)."""
  todo, seen, found = [err], set(), []
  while todo:
    e = todo.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    m = _OS_ERROR_CODE.search(str(e))
    if isinstance(e, OSError) and e.errno in DISK_FULL:
      found.append((e.errno, e.filename))
    elif m and int(m.group(1)) in DISK_FULL:
      path = _LOCAL_FILE.search(str(e))
      found.append((int(m.group(1)), path.group(1) if path else None))
    if isinstance(e, BaseException):
      todo += [e.__cause__, e.__context__, *getattr(e, 'exceptions', ())]
  # The first found, or better the first that names its file.
  return next((f for f in found if f[1]), found[0] if found else None)


def disk_full_error(
    err: BaseException | str, workdir: str
) -> DiskFullError | None:
  """A `DiskFullError` explaining `err`, or None if it is not one."""
  found = disk_full_errno(err)
  if found is None:
    return None
  code, path = found
  # A bare file write (orbax's metadata JSON) names no file; then it was the
  # checkpoint being written.
  path = path or _unfinished_checkpoint(workdir)
  steps = checkpoint_steps(workdir)
  ckpts = os.path.join(workdir, 'checkpoints')
  kept = (
      'the checkpoints written before (steps '
      f'{", ".join(map(str, steps))} in {ckpts}) are intact'
      if steps
      else 'no checkpoint was written yet'
  )
  return DiskFullError(
      f'Writing {path or "in " + workdir} failed: {DISK_FULL[code]}. The run '
      f'in {workdir} stopped; {kept} (an unfinished one is left as '
      '*.orbax-checkpoint-tmp, which the next run removes). Free some space '
      '(or raise the quota or limit) and run the same command to resume from '
      'the last checkpoint.'
  )


def _unfinished_checkpoint(workdir: str) -> str | None:
  """The newest orbax temporary checkpoint folder in `workdir`, if any."""
  ckpts = os.path.join(workdir, 'checkpoints')
  try:
    names = [n for n in os.listdir(ckpts) if '.orbax-checkpoint-tmp' in n]
  except OSError:
    return None
  paths = [os.path.join(ckpts, n) for n in names]
  return max(paths, key=os.path.getmtime) if paths else None


@contextlib.contextmanager
def stop_if_disk_full(workdir: str):
  """Turns a failed write for want of space into a `DiskFullError`."""
  try:
    yield
  except DiskFullError:
    raise
  except Exception as err:  # pylint: disable=broad-except
    full = disk_full_error(err, workdir)
    if full is None:
      raise
    raise full from err


def checkpoint_steps(workdir: str) -> list[int]:
  """The complete checkpoints' steps (orbax names one by its step only once
  it is complete)."""
  try:
    names = os.listdir(os.path.join(workdir, 'checkpoints'))
  except OSError:
    return []
  return sorted(int(n) for n in names if n.isdigit())


def write_atomically(
    path: str, content: str | bytes | Callable[[BinaryIO], None]
) -> None:
  """Replaces `path` by `content` only once all of it is written.

  `content` is text, bytes, or a function that writes into the binary file it
  is given (``fig.savefig``, ``np.savez``). A failure (a full disk) leaves the
  old file whole and no temporary file; an `OSError` names `path`.
  """
  tmp = path + '.tmp'
  try:
    with open(tmp, 'wb') as f:
      if callable(content):
        content(f)
      else:
        f.write(content.encode() if isinstance(content, str) else content)
    os.replace(tmp, path)
  except BaseException as err:
    if os.path.lexists(tmp):
      os.remove(tmp)
    # A failed write(2) names no file; the error must say which one.
    if isinstance(err, OSError) and err.errno and err.filename in (None, tmp):
      raise OSError(err.errno, err.strerror, path) from err
    raise


def append_whole(path: str, data: bytes) -> None:
  """Appends all of `data` to `path` or, if the disk is full, nothing (the
  part that was written is cut off again) and raises, naming `path`."""
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    size = os.fstat(fd).st_size
    view = memoryview(data)
    while view:
      view = view[os.write(fd, view) :]
  except OSError as err:
    os.ftruncate(fd, size)
    raise OSError(err.errno, err.strerror, path) from err
  finally:
    os.close(fd)


def fresh_name(directory: str, name: str) -> str:
  """``directory/name``, or ``name.1``, ``name.2``... if that exists."""
  path, n = os.path.join(directory, name), 0
  while os.path.lexists(path):
    n += 1
    path = os.path.join(directory, f'{name}.{n}')
  return path


def move_aside(src: str, directory: str, name: str | None = None) -> str:
  """Moves `src` into `directory` under a name not yet taken there."""
  os.makedirs(directory, exist_ok=True)
  target = fresh_name(directory, name or os.path.basename(src))
  shutil.move(src, target)
  return target


# What the start of a run makes in WORKDIR before its first checkpoint.
HALF_MADE = (
    'tfds',
    'checkpoints',
    'tensorboard',
    'metrics.jsonl',
    'config.json',
    'data_source.json',
)


@contextlib.contextmanager
def undo_failed_start(workdir: str):
  """Removes what a run that fails before its first checkpoint made.

  Such a run leaves nothing a rerun could resume from, and a half-built
  dataset or an empty ``checkpoints/`` would only mislead (the failure's
  message is the news). Only the `HALF_MADE` entries that did not exist on
  entry are removed (a moved-aside run in ``replaced/`` or damaged
  checkpoints in ``corrupt_checkpoints/`` are never touched); to be entered
  while holding the workdir's lock.
  """
  try:
    before = set(os.listdir(workdir))
  except OSError:
    before = set()
  try:
    yield
  except BaseException:
    if distributed.is_primary() and not checkpoint_steps(workdir):
      for name in HALF_MADE:
        path = os.path.join(workdir, name)
        if name in before or not os.path.lexists(path):
          continue
        if os.path.isdir(path) and not os.path.islink(path):
          shutil.rmtree(path, ignore_errors=True)
        else:
          with contextlib.suppress(OSError):
            os.remove(path)
    raise


class WorkdirLock:
  """Holds ``WORKDIR/train.lock`` (process 0) while the run lasts."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd = None
    self._unregister = None

  def __enter__(self):
    held = None
    if distributed.is_primary():
      os.makedirs(os.path.dirname(self.path), exist_ok=True)
      fd, held = _lock_file(self.path)
      if fd is not None:
        self._fd = fd
        # Another process's fatal error ends this one from a thread, past
        # `__exit__` (`distributed.watch_fatal`): the file goes then too.
        self._unregister = distributed.on_fatal_exit(self._remove_file)
        os.ftruncate(fd, 0)
        os.write(
            fd,
            f'pid {os.getpid()} on host {socket.gethostname()} '
            f'since {time.strftime("%Y-%m-%d %H:%M:%S")}\n'.encode(),
        )
    if not distributed.agree(held is None):
      raise WorkdirError(
          f'{os.path.dirname(self.path)} is in use by another trainer '
          f'({held or "see " + self.path}); wait for it to end or give '
          'another --workdir.'
      )
    return self

  def _remove_file(self) -> None:
    # Removed while still held: a trainer that opened it meanwhile finds,
    # once it holds the lock, that the file is gone, and opens a new one.
    with contextlib.suppress(OSError):
      os.remove(self.path)

  def __exit__(self, *exc):
    if self._unregister is not None:
      self._unregister()
      self._unregister = None
    if self._fd is not None:
      self._remove_file()
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None
    return False


def _lock_file(path: str) -> tuple[int | None, str | None]:
  """``(fd, None)`` holding `path`'s lock, or ``(None, holder)``."""
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      held = os.read(fd, 1000).decode(errors='replace').strip()
      os.close(fd)
      return None, held
    try:
      same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
      same = False
    if same:
      return fd, None
    os.close(fd)  # the holder removed it as we waited: lock the new one


def require_run(workdir: str) -> str:
  """``WORKDIR/config.json`` of a training run, or a FileNotFoundError that
  says which of the two is missing (for train.eval, export, stream...)."""
  if not os.path.isdir(workdir):
    raise FileNotFoundError(
        f'--workdir={workdir} does not exist; give the --workdir of a '
        'training run (python -m train.main --workdir=...).'
    )
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'{path} does not exist: is {workdir!r} the '
        '--workdir of a training run?'
    )
  return path


def data_source(config) -> dict[str, object] | None:
  """What a run reads, where only a path in the config names it.

  For data built from files (sequence_npz: the ``*.npz`` of ``data.path``)
  the folder and each file's SHA-256: the same files elsewhere are the same
  data, other files at the same path are not. None for tfds data sets named
  by ``data.name`` alone (the name is a run-defining key already).
  """
  if config.data.name.split('/')[0] != 'sequence_npz':
    return None
  folder = config.data.manual_dir or config.data.path
  if not folder:
    return None
  folder = os.path.abspath(os.path.expanduser(folder))
  files = {}
  for path in sorted(glob.glob(os.path.join(glob.escape(folder), '*.npz'))):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
      for block in iter(lambda: f.read(1 << 20), b''):
        digest.update(block)
    files[os.path.basename(path)] = digest.hexdigest()
  return {'path': folder, 'files': files}


def write_data_source(config, workdir: str) -> None:
  """Records `data_source` in WORKDIR (process 0), for `check_previous_run`."""
  source = data_source(config)
  if source is not None and distributed.is_primary():
    write_atomically(
        os.path.join(workdir, DATA_SOURCE), json.dumps(source, indent=2)
    )


def _other_data(saved_config, config, workdir: str) -> list[str]:
  """A one-item list naming both data sources if this run's data differ
  from those the run in `workdir` was trained on (else empty)."""
  new = data_source(config)
  if new is None:
    return []
  try:
    with open(os.path.join(workdir, DATA_SOURCE)) as f:
      old = json.load(f)
  except FileNotFoundError:
    # A run from before data_source.json: its data.path is all we know.
    old_path = saved_config.get('data', {}).get('manual_dir') or (
        saved_config.get('data', {}).get('path')
    )
    if old_path and os.path.abspath(old_path) != new['path']:
      return [f'the data (data.path {old_path} before, {new["path"]} now)']
    return []
  except ValueError:
    return [f'{DATA_SOURCE} (unreadable)']
  if old.get('files') == new['files']:
    return []
  where = (
      f'{old.get("path")} before, {new["path"]} now'
      if old.get('path') != new['path']
      else f'{new["path"]}, whose files changed since'
  )
  return [f'the data (data.path: {where})']


def check_previous_run(config, workdir: str) -> None:
  """Refuses a config that differs from the run already in `workdir`.

  Raises:
    WorkdirError: config.json differs in keys that change the model or data
      (named in the message) and ``config.overwrite`` is False.
  """
  path = os.path.join(workdir, 'config.json')
  differing = []
  if distributed.is_primary() and os.path.exists(path):
    with open(path) as f:
      try:
        saved = json.load(f)
      except ValueError:
        saved = {'unreadable config.json': True}
    differing = config_lib.run_defining_diff(saved, config) or (
        ['config.json (unreadable)']
        if 'unreadable config.json' in saved
        else []
    )
    differing += _other_data(saved, config, workdir)
  if not distributed.agree(bool(differing)):
    return
  if not config.overwrite:
    if differing:  # process 0 explains; the others just stop
      raise WorkdirError(
          f'{workdir} holds a run whose config differs in '
          + ', '.join(differing)
          + '; resuming it with this config would mix '
          'two runs. Give another --workdir, or --config.overwrite=True to '
          f'move the old run into {os.path.join(workdir, REPLACED)}/.'
      )
    raise WorkdirError(f'{workdir} holds a run with another config.')
  if distributed.is_primary():
    n = 1
    while os.path.lexists(os.path.join(workdir, REPLACED, str(n))):
      n += 1
    target = os.path.join(workdir, REPLACED, str(n))
    os.makedirs(target)
    for pattern in RUN_OUTPUTS:
      for path in sorted(
          glob.glob(os.path.join(glob.escape(workdir), pattern))
      ):
        shutil.move(path, os.path.join(target, os.path.basename(path)))
    print(
        f'The previous run in {workdir} (config differing in '
        f'{", ".join(differing)}) was moved to {target}.',
        flush=True,
    )
  distributed.sync('previous run moved aside')
