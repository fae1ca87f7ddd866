"""Shared machinery of the eleatt-jax dataset builders.

Every builder here is a `tfds.core.GeneratorBasedBuilder` that writes
`array_record` shards by default (so that no TensorFlow is needed to write or to
read them) and that reads the user's own download from `manual_dir`.

Bad input raises `CorruptFileError`, whose message names the file, the position
(line, byte offset, key or row) and what was expected there. A builder created
with `skip_corrupt=True` (in Python: `tfds.builder("nucla", skip_corrupt=True)`;
on the command line: `nucla/xview/skip_corrupt=True`) skips such files instead,
counts them and prints the count and the names once generation is done.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

#: The file format our builders write unless told otherwise.
DEFAULT_FILE_FORMAT = "array_record"


class CorruptFileError(ValueError):
  """A source file does not follow the expected format.

  Attributes:
    path: The offending file.
    where: Position in the file: ``"line 12"``, ``"byte offset 16"``,
      ``"key 'skeletons'"``, ``"row 3"``...
    expected: What the parser expected to find there.
  """

  def __init__(self, path: os.PathLike[str] | str, where: str, expected: str):
    self.path = os.fspath(path)
    self.where = where
    self.expected = expected
    super().__init__(f"{self.path}: {where}: {expected}")


class ManualDirError(FileNotFoundError):
  """The manual directory does not hold what a builder needs."""


def check_manual_dir(
    manual_dir: epath.Path,
    expected: str,
    found_any: bool,
    name: str,
    instructions: str = "",
) -> None:
  """Raises a `ManualDirError` that says what was expected in `manual_dir`.

  Args:
    manual_dir: The directory the user gave.
    expected: Short description of the expected files.
    found_any: Whether at least one expected file was found.
    name: The dataset name, for the message.
    instructions: The builder's MANUAL_DOWNLOAD_INSTRUCTIONS, appended.
  """
  if found_any:
    return
  try:
    listing = sorted(p.name for p in epath.Path(manual_dir).iterdir())[:10]
  except OSError:
    listing = []
  raise ManualDirError(
      f"{name}: manual_dir {os.fspath(manual_dir)!r} holds no {expected};"
      f" its first entries are {listing}."
      + (f" Expected layout:\n{instructions}" if instructions else ""))


class CorruptCounter:
  """Counts the source files skipped with ``skip_corrupt=True``."""

  def __init__(self):
    self._lock = threading.Lock()
    self.skipped: dict[str, list[str]] = collections.defaultdict(list)

  def add(self, split: str, err: CorruptFileError) -> None:
    with self._lock:
      self.skipped[split].append(str(err))

  @property
  def count(self) -> int:
    return sum(len(v) for v in self.skipped.values())

  def report(self, name: str, file=None) -> None:
    """Prints how many files were skipped, and which."""
    if not self.count:
      return
    file = file or sys.stderr
    print(f"{name}: skipped {self.count} corrupt file(s):", file=file)
    for split, errs in sorted(self.skipped.items()):
      for err in errs:
        print(f"  [{split}] {err}", file=file)


class ManualBuilder(tfds.core.GeneratorBasedBuilder):
  """Base class: array_record output, manual_dir input, `skip_corrupt`.

  Subclasses implement `_split_generators` with `self._examples(...)`, which
  wraps a per-file reader and applies the `skip_corrupt` policy.
  """

  def __init__(self, *, skip_corrupt: bool = False, file_format=None, **kwargs):
    """Creates the builder.

    Args:
      skip_corrupt: Skip (and count) source files that fail to parse, instead
        of raising `CorruptFileError`.
      file_format: Output file format; ``"array_record"`` by default, which
        `tfds.data_source` reads with random access and without TensorFlow.
      **kwargs: Forwarded to `tfds.core.GeneratorBasedBuilder`.
    """
    self.skip_corrupt = bool(skip_corrupt)
    self.corrupt = CorruptCounter()
    super().__init__(file_format=file_format or DEFAULT_FILE_FORMAT, **kwargs)

  def _examples(
      self,
      split: str,
      items: Iterable[Any],
      read_fn,
  ) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields `(key, example)` from `read_fn(item)`, honouring skip_corrupt.

    Args:
      split: Split name (for the skip report).
      items: Inputs for `read_fn` (usually paths).
      read_fn: ``item -> (key, example)``; raises `CorruptFileError`.
    """
    for item in items:
      try:
        yield read_fn(item)
      except CorruptFileError as err:
        if not self.skip_corrupt:
          raise
        self.corrupt.add(split, err)

  def _require_nonempty(
      self, manual_dir, split_files: dict[str, list[Any]], what: dict[str, str]
  ) -> None:
    """Raises `ManualDirError` naming the splits that found no source file.

    tfds cannot write an empty split, so a partial download (say, N-UCLA
    without view 3) must fail here, with a message that says what is missing.

    Args:
      manual_dir: The directory searched.
      split_files: Split name -> the source files found for it.
      what: Split name -> description of what that split needs.
    """
    empty = [s for s, files in split_files.items() if not files]
    if empty:
      needs = "; ".join(f"{s!r} needs {what[s]}" for s in empty)
      config = self.builder_config.name if self.builder_config else ""
      raise ManualDirError(
          f"{self.name}/{config}: no source file found in manual_dir {os.fspath(manual_dir)!r} for"
          f" split(s) {empty}: {needs}.")

  def _download_and_prepare(self, dl_manager, download_config):
    """Generates the splits, then reports the files skipped as corrupt."""
    self.corrupt = CorruptCounter()
    out = super()._download_and_prepare(dl_manager, download_config)
    self.corrupt.report(self.name)
    return out


def held_out_subjects(subjects: Iterable[int], num: int,
                      seed: int = 0) -> tuple[int, ...]:
  """`num` of `subjects`, drawn without replacement by a seeded generator.

  The builders fix the result in their code (so that a split never depends
  on the NumPy version); their tests check it against this function.

  >>> held_out_subjects(range(1, 11), 1)
  (9,)
  """
  rng = np.random.default_rng(seed)
  picked = rng.choice(sorted(subjects), num, replace=False)
  return tuple(sorted(int(s) for s in picked))


def list_files(root: os.PathLike[str] | str, suffix: str) -> list[epath.Path]:
  """All files below `root` whose name ends with `suffix`, sorted.

  Args:
    root: A local directory (searched recursively, following no links).
    suffix: For example ``".skeleton"``.

  Returns:
    The paths, sorted so that example order is stable.
  """
  found = []
  for dirpath, dirnames, filenames in os.walk(os.fspath(root)):
    dirnames.sort()
    found.extend(os.path.join(dirpath, f) for f in filenames
                 if f.endswith(suffix) and not f.startswith("."))
  return [epath.Path(p) for p in sorted(found)]


def float32_array(
    values: Any, path: os.PathLike[str] | str, where: str, shape_doc: str
) -> np.ndarray:
  """`np.asarray(values, float32)` with a `CorruptFileError` on failure."""
  try:
    arr = np.asarray(values, dtype=np.float32)
  except (TypeError, ValueError) as err:
    raise CorruptFileError(
        path, where, f"numbers of shape {shape_doc} ({err})"
    ) from None
  if not np.all(np.isfinite(arr)):
    raise CorruptFileError(path, where, f"finite numbers of shape {shape_doc}")
  return arr
