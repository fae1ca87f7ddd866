r"""The features route: a pretrained ImageNet backbone over every frame, once.

  python -m train.video_features --dataset=video_folder/t16_s112 \
      --manual_dir=/data/UCF-101 --data_dir=/data/tfds \
      --backbone=MobileNetV3Small --weights=imagenet --output=/data/ucf_feats

Builds (or reads) the tfds video dataset, runs the Keras 3 backbone
(:class:`eleatt_jax.frame_encoders.KerasBackbone`, on the JAX backend) over
every frame of its train, validation and test splits and writes
``train.npz``, ``validation.npz`` and ``test.npz`` in the sequence-npz layout
(x <float32>[N, T, F], lengths, y, class_names) into ``--output``. Then train
an EleAtt-GRU on them with the sequence-npz config::

  python -m train.main --config=train/configs/npz.py --workdir=runs/ucf_feats \
      --config.data.path=/data/ucf_feats

``--weights=imagenet`` downloads the weights on first use (into
``~/.keras/models``); ``--weights=none`` runs the same code with random
weights (what the tests do, offline). Needs ``pip install
'eleatt-jax[video,keras]'``.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string(
      'dataset', None, "tfds name of the video dataset, 'builder/config'."
  )
  flags.DEFINE_string('manual_dir', None, 'The videos (built on first use).')
  flags.DEFINE_string('data_dir', None, 'tfds data_dir (default: tfds).')
  flags.DEFINE_string('backbone', 'MobileNetV3Small', 'keras.applications.')
  flags.DEFINE_string('weights', 'imagenet', "'imagenet' or 'none'.")
  flags.DEFINE_string('output', None, 'Folder for the .npz files.')
  flags.DEFINE_integer('batch_frames', 256, 'Frames per backbone call.')
  flags.mark_flags_as_required(['dataset', 'output'])


def write_features(
    dataset: str,
    output: str,
    *,
    manual_dir: str | None = None,
    data_dir: str | None = None,
    backbone: str = 'MobileNetV3Small',
    weights: str | None = 'imagenet',
    batch_frames: int = 256,
) -> dict[str, str]:
  """Builds `dataset` if needed and writes its per-frame features; returns
  split -> path."""
  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds
  import eleatt_jax.datasets  # noqa: F401  # registers the builders
  from eleatt_jax import frame_encoders
  # pylint: enable=g-import-not-at-top
  builder = tfds.builder(dataset, data_dir=data_dir)
  if not builder.is_prepared():
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
  size = builder.info.features['frames'].shape[1]
  encoder = frame_encoders.KerasBackbone(
      backbone, size, None if weights in (None, 'none') else weights
  )
  splits = ('train', 'validation', 'test')
  written = frame_encoders.extract_features(
      {s: builder.as_data_source(s) for s in splits},
      builder.info.features['label'].names,
      encoder,
      output,
      batch_frames=batch_frames,
  )
  print(
      f'Wrote {encoder.feature_size}-feature sequences of {dataset} '
      f'({backbone}, weights={weights}) to {os.path.abspath(output)}: '
      + ', '.join(sorted(os.path.basename(p) for p in written.values())),
      flush=True,
  )
  return written


def main(argv):
  del argv
  write_features(
      FLAGS.dataset,
      FLAGS.output,
      manual_dir=FLAGS.manual_dir,
      data_dir=FLAGS.data_dir,
      backbone=FLAGS.backbone,
      weights=FLAGS.weights,
      batch_frames=FLAGS.batch_frames,
  )


if __name__ == '__main__':
  define_flags()
  app.run(main)
