"""A user's own labelled sequences in the sequence-npz layout.

Registered as ``sequence_npz``. `manual_dir` holds one file per split,
``train.npz``, ``test.npz`` and optionally ``validation.npz``, each with

  * ``x``: <float32>[N, T_max, D], zero-padded after each sequence's end;
  * ``lengths``: <int32>[N], in 1..T_max;
  * ``y``: <int64>[N], in 0..C-1;
  * ``class_names``: <str>[C], the same in every split.

Each example holds ``x`` <float32>[length, D] (the padding is cut off),
``length``, ``label`` (a `ClassLabel` named by ``class_names``) and ``index``
(the row in its file). `load_sequence_npz` checks a file and says which key
and which row is wrong.

Splits: ``train``, ``validation`` and ``test``. With ``validation.npz`` the
``validation`` split is that file. Without it, ``validation`` is carved from
``train.npz``: a stratified `VALIDATION_FRACTION` (10%) of each class, at least
one example of each class with two or more, drawn with seed
`VALIDATION_SEED` (``_common.stratified_holdout``), so the same rows on every
machine; those rows leave ``train``, and their ``index`` is their row in
``train.npz``. Model selection then never looks at ``test``.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import tensorflow_datasets as tfds

from eleatt_jax.datasets import _common

SPLITS = ("train", "validation", "test")
#: Without validation.npz: the part of train.npz (per class) that becomes
#: ``validation``, and the seed of the draw.
VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 0
REQUIRED_KEYS = ("x", "lengths", "y", "class_names")


def _read_arrays(path: str) -> dict[str, np.ndarray]:
  """The `REQUIRED_KEYS` arrays of the archive at `path`, unchecked."""
  try:
    npz = np.load(path, allow_pickle=False)
    if not isinstance(npz, np.lib.npyio.NpzFile):  # A .npy file, renamed.
      raise _common.CorruptFileError(
          path,
          "whole file",
          "a .npz archive (a zip of arrays x, lengths, y,"
          f" class_names), found a single .npy array {npz.dtype}"
          f"{list(npz.shape)}",
      )
    with npz:
      missing = [k for k in REQUIRED_KEYS if k not in npz.files]
      if missing:
        raise _common.CorruptFileError(
            path,
            f"key {missing[0]!r}",
            f"the keys {list(REQUIRED_KEYS)}; missing {missing}, found"
            f" {sorted(npz.files)}",
        )
      return {k: npz[k] for k in REQUIRED_KEYS}
  except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
    if isinstance(err, _common.CorruptFileError):
      raise
    raise _common.CorruptFileError(
        path,
        "whole file",
        "a readable .npz archive without pickled"
        f" objects ({type(err).__name__}: {err})",
    ) from None


def _check_shapes(
    path: str,
    x: np.ndarray,
    lengths: np.ndarray,
    y: np.ndarray,
    names: np.ndarray,
) -> None:
  """Raises `CorruptFileError` for an array of the wrong rank, size or dtype."""
  if x.ndim != 3 or not np.issubdtype(x.dtype, np.floating):
    raise _common.CorruptFileError(
        path,
        "key 'x'",
        f"a float array [N, T_max, D], got {x.dtype}{list(x.shape)}",
    )
  n = x.shape[0]
  for key, arr in (("lengths", lengths), ("y", y)):
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
      raise _common.CorruptFileError(
          path,
          f"key {key!r}",
          f"an integer array [N={n}], got {arr.dtype}{list(arr.shape)}",
      )
  if names.ndim != 1 or names.dtype.kind not in "US" or not len(names):
    raise _common.CorruptFileError(
        path,
        "key 'class_names'",
        f"a non-empty str array [C], got {names.dtype}{list(names.shape)}",
    )


def _decode_class_names(path: str, names: np.ndarray) -> tuple[str, ...]:
  """The class names as str, bytes decoded as UTF-8 (not "b'running'")."""
  if names.dtype.kind != "S":
    return tuple(str(c) for c in names)
  decoded = []
  for i, c in enumerate(names):
    try:
      decoded.append(c.decode("utf-8"))
    except UnicodeDecodeError:
      raise _common.CorruptFileError(
          path, f"key 'class_names', row {i}", f"UTF-8 text, got {bytes(c)!r}"
      ) from None
  return tuple(decoded)


def _check_rows(
    path: str,
    x: np.ndarray,
    lengths: np.ndarray,
    y: np.ndarray,
    num_classes: int,
) -> None:
  """Raises `CorruptFileError` naming the first row with a wrong value."""
  t_max = x.shape[1]
  bad = np.flatnonzero((lengths < 1) | (lengths > t_max))
  if bad.size:
    i = int(bad[0])
    raise _common.CorruptFileError(
        path,
        f"key 'lengths', row {i}",
        f"a length in 1..T_max={t_max}, got {int(lengths[i])}",
    )
  bad = np.flatnonzero((y < 0) | (y >= num_classes))
  if bad.size:
    i = int(bad[0])
    raise _common.CorruptFileError(
        path,
        f"key 'y', row {i}",
        f"a label in 0..{num_classes - 1} (C={num_classes} class_names), got"
        f" {int(y[i])}",
    )
  finite = np.isfinite(x).all(axis=(1, 2))
  if not finite.all():
    i = int(np.flatnonzero(~finite)[0])
    raise _common.CorruptFileError(
        path, f"key 'x', row {i}", "finite values (found NaN or inf)"
    )
  pad = np.arange(t_max)[None, :] >= lengths[:, None]  # [N, T_max]
  pad_nonzero = (np.abs(x) * pad[:, :, None]).sum(axis=(1, 2)) > 0
  if pad_nonzero.any():
    i = int(np.flatnonzero(pad_nonzero)[0])
    raise _common.CorruptFileError(
        path,
        f"key 'x', row {i}",
        f"zeros after the sequence end (lengths[{i}]={int(lengths[i])}), found"
        " non-zero values there: is `lengths` wrong?",
    )


def load_sequence_npz(
    path: os.PathLike[str] | str,
    class_names: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
  """Loads and checks a sequence-npz file.

  Args:
    path: ``train.npz`` or the like.
    class_names: When given, the file's ``class_names`` must be equal to it.

  Returns:
    ``{"x": <float32>[N, T_max, D], "lengths": <int32>[N], "y": <int64>[N],
    "class_names": tuple of C str}``.

  Raises:
    CorruptFileError: naming the file, the key and the row that is wrong.
  """
  path = os.fspath(path)
  data = _read_arrays(path)
  x, lengths, y, names = (data[k] for k in REQUIRED_KEYS)
  _check_shapes(path, x, lengths, y, names)
  names = _decode_class_names(path, names)
  if class_names is not None and names != tuple(class_names):
    raise _common.CorruptFileError(
        path,
        "key 'class_names'",
        "the class_names of the other splits"
        f" {list(class_names)}, got {list(names)}",
    )
  _check_rows(path, x, lengths, y, len(names))
  return {
      "x": x.astype(np.float32, copy=False),
      "lengths": lengths.astype(np.int32),
      "y": y.astype(np.int64),
      "class_names": names,
  }


class SequenceNpz(_common.ManualBuilder):
  """Labelled sequences of the user's own, from sequence-npz files."""

  name = "sequence_npz"
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = _common.release_notes({
      "1.1.0": (
          "Always a validation split: validation.npz, or else a seeded"
          " stratified 10% of train.npz. class_names saved as bytes are"
          " decoded."
      ),
  })
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Put `train.npz` and `test.npz` (and optionally `validation.npz`) directly in
`manual_dir`. Each holds `x` float32 (N, T_max, D) zero-padded after each
sequence's end, `lengths` int32 (N,), `y` int64 (N,) in 0..C-1 and
`class_names` str (C,), the same in every split. Without `validation.npz`, a
seeded stratified 10% of `train.npz` becomes the validation split.
"""

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            # D is only known from the data, hence the "bytes" encoding.
            "x": tfds.features.Tensor(
                shape=(None, None), dtype=np.float32, encoding="bytes"
            ),
            "length": np.int32,
            "label": tfds.features.ClassLabel(),  # Names set from the data.
            "index": np.int32,
        }),
        supervised_keys=("x", "label"),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = dl_manager.manual_dir
    present = [s for s in SPLITS if (manual_dir / f"{s}.npz").exists()]
    _common.check_manual_dir(
        manual_dir,
        "train.npz and test.npz (and optionally validation.npz)",
        bool(present),
        self.name,
        self.MANUAL_DOWNLOAD_INSTRUCTIONS,
    )
    for s in ("train", "test"):
      if s not in present:
        raise _common.ManualDirError(
            f"{self.name}: {os.fspath(manual_dir / f'{s}.npz')} is missing;"
            " expected train.npz and test.npz (and optionally"
            " validation.npz)"
        )
    data, class_names = {}, None
    for s in present:
      data[s] = load_sequence_npz(manual_dir / f"{s}.npz", class_names)
      class_names = data[s]["class_names"]
    dims = {s: d["x"].shape[2] for s, d in data.items()}
    if len(set(dims.values())) != 1:
      raise _common.CorruptFileError(
          manual_dir / f"{present[-1]}.npz",
          "key 'x'",
          f"the same feature size D in every split, got {dims}",
      )
    self.info.features["label"].names = list(class_names)
    rows = {s: np.arange(len(d["y"])) for s, d in data.items()}
    if "validation" not in data:
      kept, held = _common.stratified_holdout(
          data["train"]["y"], VALIDATION_FRACTION, VALIDATION_SEED
      )
      if not len(held) or not len(kept):
        raise _common.CorruptFileError(
            manual_dir / "train.npz",
            "key 'y'",
            "a class with two or more examples, to carve a validation split"
            " from (or give validation.npz)",
        )
      data["validation"] = data["train"]
      rows["train"], rows["validation"] = kept, held
    return {s: self._generate_split(data[s], rows[s]) for s in SPLITS}

  def _generate_split(self, data, rows):
    """Yields the examples of `rows` (indices into the file's arrays)."""
    for i in rows:
      i = int(i)
      length = data["lengths"][i]
      yield i, {
          "x": data["x"][i, :length],
          "length": length,
          "label": data["y"][i],
          "index": i,
      }

  def _generate_examples(self, **kwargs):  # Unused: see _split_generators.
    raise NotImplementedError
