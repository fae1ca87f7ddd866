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


class DuplicateKeyError(CorruptFileError):
  """Two source files give the same example key (the same sample twice).

  Neither file is damaged, so ``skip_corrupt=True`` does not skip them: the
  user must remove one (for example an N-UCLA sample unpacked into two
  folders). `path` is the second file; the message names both.
  """

  def __init__(self, key: str, first: Any, second: Any):
    """Creates the error.

    Args:
      key: The example key both give.
      first: The source (a path, or a table row) that gave it first.
      second: The source that gave it again.
    """
    self.key = key
    self.first = _describe(first)
    super().__init__(
        _describe(second),
        f"example key {key!r}",
        f"one source per sample, but {self.first} gives the same key: remove"
        " one of the two",
    )


def _describe(item: Any) -> str:
  """A path as a string; any other source item (a table row) as its repr."""
  if isinstance(item, (str, os.PathLike)):
    return os.fspath(item)
  return repr(item)


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
      + (f" Expected layout:\n{instructions}" if instructions else "")
  )


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
    # Split -> example key -> the source item that gave it (see `_examples`).
    self._seen_keys: dict[str, dict[str, Any]] = {}
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
    seen = self._seen_keys.setdefault(split, {})
    for item in items:
      try:
        key, example = read_fn(item)
      except DuplicateKeyError:
        raise
      except CorruptFileError as err:
        self.reject(split, err)
        continue
      if key in seen:
        raise DuplicateKeyError(key, seen[key], item)
      seen[key] = item
      yield key, example

  def reject(self, split: str, err: CorruptFileError) -> None:
    """Raises `err`, or counts it when the builder skips corrupt files.

    For the files a builder rejects before reading them (a file name that is
    not a sample name, say), so that ``skip_corrupt=True`` skips those too.

    Args:
      split: The split the file was meant for (``"unassigned"`` when the
        file name does not say).
      err: What is wrong with the file.
    """
    if not self.skip_corrupt or isinstance(err, DuplicateKeyError):
      raise err
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
          f"{self.name}/{config}: no source file found in manual_dir"
          f" {os.fspath(manual_dir)!r} for split(s) {empty}: {needs}."
      )

  def _download_and_prepare(self, dl_manager, download_config):
    """Generates the splits, then reports the files skipped as corrupt."""
    self.corrupt = CorruptCounter()
    self._seen_keys = {}
    out = super()._download_and_prepare(dl_manager, download_config)
    self.corrupt.report(self.name)
    return out


def release_notes(later: dict[str, str]) -> dict[str, str]:
  """A builder's RELEASE_NOTES: the initial 1.0.0, then `later` versions."""
  return {"1.0.0": "Initial release.", **later}


def skeleton_features(
    skeleton_shape: tuple[int | None, ...],
    label: tfds.features.ClassLabel,
    **ids: Any,
) -> tfds.features.FeaturesDict:
  """The features of a skeleton example, in the order every builder writes.

  Args:
    skeleton_shape: Of the float32 ``skeleton``, ``(None, ...)`` (time first).
    label: The ``label`` feature.
    **ids: The dataset's own features (subject, view, ...), between ``label``
      and ``sample_name``.

  Returns:
    ``skeleton``, ``length`` (int32), ``label``, the `ids`, ``sample_name``.
  """
  return tfds.features.FeaturesDict({
      "skeleton": tfds.features.Tensor(shape=skeleton_shape, dtype=np.float32),
      "length": np.int32,
      "label": label,
      **ids,
      "sample_name": tfds.features.Text(),
  })


def held_out_subjects(
    subjects: Iterable[int], num: int, seed: int = 0
) -> tuple[int, ...]:
  """`num` of `subjects`, drawn without replacement by a seeded generator.

  The builders fix the result in their code (so that a split never depends
  on the NumPy version); their tests check it against this function.

  >>> held_out_subjects(range(1, 11), 1)
  (9,)
  """
  rng = np.random.default_rng(seed)
  picked = rng.choice(sorted(subjects), num, replace=False)
  return tuple(sorted(int(s) for s in picked))


def stratified_holdout(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Splits indices into (kept, held out), `fraction` of each class held out.

  Each class holds out ``round(fraction * n_c)`` of its ``n_c`` examples, and
  at least one when it has two or more (so that a tiny data set still gets a
  non-empty held-out part), drawn by ``np.random.default_rng(seed)``.

  Args:
    labels: <int>[N] class labels.
    fraction: In (0, 1), e.g. 0.1.
    seed: Seed of the draw.

  Returns:
    Two sorted <int64> index arrays into `labels`, disjoint, covering 0..N-1.

  >>> labels = np.array([0] * 10 + [1] * 20)
  >>> kept, held = stratified_holdout(labels, 0.1, seed=0)
  >>> len(kept), len(held), labels[held].tolist()
  (27, 3, [0, 1, 1])
  """
  if not 0 < fraction < 1:
    raise ValueError(f"fraction must be in (0, 1), got {fraction}")
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  kept, held = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    k = int(round(fraction * len(idx)))
    if k == 0 and len(idx) >= 2:
      k = 1
    held.append(idx[:k])
    kept.append(idx[k:])
  return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


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
    found.extend(
        os.path.join(dirpath, f)
        for f in filenames
        if f.endswith(suffix) and not f.startswith(".")
    )
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
