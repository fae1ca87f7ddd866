r"""Replays a sequence frame by frame through the exported step function.

  python -m train.stream --workdir=runs/demo [--split=test] [--index=0]
      [--export_dir=WORKDIR/export] [--plot=PNG]

Reads the export of ``python -m train.export`` (``WORKDIR/export``), takes
example ``index`` of ``split`` (the config's test split by default),
preprocessed as in evaluation, and feeds its valid frames one at a time to the
exported ``step`` (:func:`eleatt_jax.export.load_callables`: deserialized and
jitted; the model's own code is not used). Prints, per frame, the top class
and its probability, then the frame from which the prediction no longer
changed ("settled") and whether the final prediction is the label.
``--plot`` also writes the class probabilities over time
(:func:`eleatt_jax.viz.plot_streaming_probabilities`).

``--video=FILE`` streams a video file instead (a run of a ``video_folder`` or
``moving_digits`` config, ``model.frame_encoder='cnn'``): it is decoded and
sampled as the builder does (the config's frames and size,
:func:`eleatt_jax.datasets.video.load_video`), and each frame goes through the
exported step, which runs the frame CNN and then the EleAtt step.

  python -m train.stream --pretrained=NAME [--frames=RAW.npy]
      [--manual_dir=DIR] [--data_dir=DIR] [--split=...] [--index=0] [--plot=PNG]

streams a model of ``eleatt_jax.pretrained`` instead (its exported step):
the raw frames of ``--frames`` (a ``.npy`` as the card's ``raw_input`` says,
e.g. <float>[T0, 20, 3] Kinect v1 joints in metres for N-UCLA), preprocessed
with :func:`eleatt_jax.pretrained.preprocess`, or example ``index`` of a
split of the card's data set (N-UCLA: ``--manual_dir`` is the folder of its
JSON files).
"""

from __future__ import annotations

import os
import sys

from absl import flags

from eleatt_jax import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string('workdir', None, "The training run's --workdir.")
  flags.DEFINE_string(
      'split', None, "Split (default: the config's data.test_split)."
  )
  flags.DEFINE_integer('index', 0, 'Example of the split to replay.')
  flags.DEFINE_string(
      'export_dir', None, 'Export directory (default: WORKDIR/export).'
  )
  flags.DEFINE_string('plot', None, 'PNG of the probabilities over time.')
  flags.DEFINE_string(
      'video', None, 'A video file to stream instead of a split example.'
  )
  flags.DEFINE_string(
      'pretrained', None, 'A model of eleatt_jax.pretrained (not --workdir).'
  )
  flags.DEFINE_string(
      'frames', None, '--pretrained: a .npy of raw frames to stream.'
  )
  flags.DEFINE_string(
      'manual_dir', None, "--pretrained: the data set's source files."
  )
  flags.DEFINE_string('data_dir', None, '--pretrained: the tfds data_dir.')
  flags.mark_flags_as_mutual_exclusive(['workdir', 'pretrained'], required=True)


def settled_frame(top) -> int:
  """The first frame from which ``top[t]`` stays the same to the end."""
  t = len(top) - 1
  while t > 0 and top[t - 1] == top[-1]:
    t -= 1
  return t


def replay(
    workdir: str,
    split: str | None = None,
    index: int = 0,
    export_dir: str | None = None,
    plot: str | None = None,
    out=None,
    video: str | None = None,
) -> dict:
  """Streams example ``index`` through the exported step; returns a summary.

  Returns:
    ``{'probabilities': [T, C], 'top': [T], 'settled_frame', 'label',
    'prediction', 'classes'}``.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top

  out = out or sys.stdout  # at call time: a test may have replaced it
  workdir = os.path.abspath(os.path.expanduser(workdir))
  export_dir = export_dir or os.path.join(workdir, 'export')
  functions, card = _load_export(workdir, export_dir)
  if video:
    info, split, batch = _load_video(workdir, video)
  else:
    info, split, batch = _load_example(workdir, split, index)
  x = np.asarray(batch['x'], np.float32)
  length = int(batch['length'][0])
  label = int(batch['label'][0])
  if x.shape[-1] != card['input']['D']:
    raise ValueError(
        f'The data has D={x.shape[-1]} features, the export '
        f'expects D={card["input"]["D"]}.'
    )
  classes = card['classes']
  print(
      f'{video}: {length} frames'
      if video
      else (
          f'{info.name} {split} #{index}: {length} frames, label '
          f'{classes[label]!r}'
      ),
      file=out,
  )
  return _stream_and_report(
      functions,
      x,
      length,
      classes,
      label,
      plot,
      title=f'{info.name} {split} #{index}, streamed frame by frame',
      out=out,
      no_label=' (a video file: no label)',
  )


def replay_pretrained(
    name: str,
    frames: str | None = None,
    split: str | None = None,
    index: int = 0,
    manual_dir: str | None = None,
    data_dir: str | None = None,
    plot: str | None = None,
    out=None,
) -> dict:
  """Streams raw ``frames`` (a .npy path) or example ``index`` of ``split``
  through the exported step of pretrained model ``name``; returns the
  summary of :func:`replay` (``label`` None for raw frames)."""
  # pylint: disable=g-import-not-at-top
  import numpy as np
  from eleatt_jax import pretrained
  # pylint: enable=g-import-not-at-top

  out = out or sys.stdout  # at call time: a test may have replaced it
  card = pretrained.card(name)
  functions = pretrained.load_exported(name, ('initialize_carry', 'step'))
  if frames:
    try:
      raw = np.load(frames)
    except (OSError, ValueError) as e:
      raise ValueError(
          f'--frames={frames}: not a readable .npy file ({e}); expected '
          f'{card["raw_input"]["shape"]}: {card["raw_input"]["what"]}.'
      ) from e
    x, lengths = pretrained.preprocess(card, raw, test_time=False)
    label, what = None, f'{frames} ({len(raw)} raw frames)'
  else:
    from train import pretrained_run  # pylint: disable=g-import-not-at-top
    from train import input_pipeline  # pylint: disable=g-import-not-at-top

    run = pretrained_run.load(name, manual_dir, data_dir)
    split = split or run.config.data.test_split
    if split not in run.info.splits:
      raise ValueError(
          f'--split={split!r}: {run.info.name} has the splits '
          f'{sorted(run.info.splits)}.'
      )
    batch, _ = input_pipeline.get_example(
        run.config, run.builder, run.info, split, index
    )
    x, lengths = batch['x'], batch['length']
    label, what = int(batch['label'][0]), f'{run.info.name} {split} #{index}'
  x = np.asarray(x, np.float32)
  length = int(lengths[0])
  classes = card['classes']
  print(
      f'{name} on {what}: {length} frames'
      + (f', label {classes[label]!r}' if label is not None else ''),
      file=out,
  )
  return _stream_and_report(
      functions,
      x,
      length,
      classes,
      label,
      plot,
      title=f'{name} on {what}, streamed frame by frame',
      out=out,
  )


def _stream_and_report(
    functions,
    x,
    length: int,
    classes,
    label: int | None,
    plot: str | None,
    title: str,
    out,
    no_label: str = '',
) -> dict:
  """Streams ``x[:, :length]`` through the exported step, prints where the
  prediction settled (and whether it is ``label``; None or < 0: unknown,
  ``no_label`` is said instead), plots; returns the summary of `replay`."""
  carry = functions['initialize_carry'](x[:, 0])
  probabilities = _stream_frames(
      functions['step'], carry, x, length, classes, out
  )
  top = probabilities.argmax(axis=1)
  settled = settled_frame(top)
  prediction = int(top[-1])
  known = label is not None and label >= 0
  verdict = (
      f' ({"correct" if prediction == label else "wrong"}; label '
      f'{classes[label]!r})'
      if known
      else no_label
  )
  print(
      f'Settled on {classes[prediction]!r} at frame {settled} of {length}'
      f'{verdict}.',
      file=out,
      flush=True,
  )
  if plot:
    _plot(
        plot,
        probabilities,
        classes,
        label if known else None,
        settled,
        title,
        out,
    )
  return {
      'probabilities': probabilities,
      'top': top,
      'settled_frame': settled,
      'label': label,
      'prediction': prediction,
      'classes': classes,
  }


def _load_export(workdir: str, export_dir: str) -> tuple[dict, dict]:
  """The exported ``initialize_carry`` and ``step``, and the export's card."""
  # pylint: disable=g-import-not-at-top
  import json
  from eleatt_jax import export as export_lib
  from train import workdir as workdir_lib
  # pylint: enable=g-import-not-at-top
  workdir_lib.require_run(workdir)
  if not os.path.exists(os.path.join(export_dir, export_lib.CARD)):
    raise FileNotFoundError(
        f'{export_dir} holds no export: run `python -m train.export '
        f'--workdir={workdir}` first.'
    )
  functions = export_lib.load_callables(
      export_dir, ('initialize_carry', 'step')
  )
  with open(os.path.join(export_dir, export_lib.CARD)) as f:
    card = json.load(f)
  return functions, card


def _load_example(workdir: str, split: str | None, index: int):
  """Example ``index`` of ``split`` (default: the run's test split),
  preprocessed as in evaluation: ``(DatasetInfo, split, batch of 1)``."""
  # pylint: disable=g-import-not-at-top
  import json
  from train import config_lib
  from train import input_pipeline
  # pylint: enable=g-import-not-at-top
  with open(os.path.join(workdir, 'config.json')) as f:
    config = config_lib.from_json(json.load(f))
  builder, info = input_pipeline.prepare_dataset(config, workdir)
  split = split or config.data.test_split
  if split not in info.splits:
    raise ValueError(
        f'--split={split!r}: {info.name} has the splits {sorted(info.splits)}.'
    )
  batch, _ = input_pipeline.get_example(config, builder, info, split, index)
  return info, split, batch


def _load_video(workdir: str, path: str):
  """A video file, decoded and sampled as the run's builder stores videos:
  ``(DatasetInfo, 'video', batch of 1 with label -1)``."""
  # pylint: disable=g-import-not-at-top
  import json
  import numpy as np
  from eleatt_jax.datasets import video as video_lib
  from train import config_lib
  from train import input_pipeline
  # pylint: enable=g-import-not-at-top
  with open(os.path.join(workdir, 'config.json')) as f:
    config = config_lib.from_json(json.load(f))
  _, info = input_pipeline.prepare_dataset(config, workdir)
  if len(info.frame_shape) != 3:
    raise ValueError(
        f'--video: the run in {workdir} trains on {info.name}, not on video'
        " frames (data.preprocess='video')."
    )
  size, _, channels = info.frame_shape
  frames = video_lib.load_video(path, info.num_frames, size, channels == 1)
  x = frames.reshape(1, len(frames), -1).astype(np.float32) / 255.0
  batch = {
      'x': x,
      'length': np.array([len(frames)], np.int32),
      'label': np.array([-1], np.int32),
  }
  return info, 'video', batch


def _stream_frames(step, carry, x, length: int, classes, out):
  """Feeds ``x[:, t]`` for t < ``length`` to the jitted ``step`` (compiled at
  the first frame), printing each frame's top class; returns [T, C]."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  probabilities = []
  for t in range(length):
    carry, _, probs = step(carry, x[:, t])
    p = np.asarray(probs[0])
    probabilities.append(p)
    top = int(p.argmax())
    print(f'frame {t:4d}: {classes[top]:<20s} {p[top]:.3f}', file=out)
  return np.stack(probabilities)


def _plot(path, probabilities, classes, label, settled, title, out) -> None:
  """Writes the class probabilities over time to the PNG ``path``."""
  # pylint: disable=g-import-not-at-top
  from eleatt_jax import viz
  from train import reporting
  # pylint: enable=g-import-not-at-top

  fig = viz.plot_streaming_probabilities(
      probabilities,
      classes,
      true_class=label,
      settled_frame=settled,
      title=title,
  )
  reporting.save_png(fig, path)
  print(f'Wrote {path}.', file=out)


def main(argv):
  from train import reporting  # pylint: disable=g-import-not-at-top

  reporting.start_command(argv)
  if FLAGS.pretrained:
    replay_pretrained(
        FLAGS.pretrained,
        FLAGS.frames,
        FLAGS.split,
        FLAGS.index,
        FLAGS.manual_dir,
        FLAGS.data_dir,
        FLAGS.plot,
    )
    return
  replay(
      FLAGS.workdir,
      FLAGS.split,
      FLAGS.index,
      FLAGS.export_dir,
      FLAGS.plot,
      video=FLAGS.video,
  )


if __name__ == '__main__':
  define_flags()
  cli.run_absl(main)
