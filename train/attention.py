r"""Plots the EleAtt gate values a_t of one example.

  python -m train.attention --workdir=runs/demo --index=7 [--split=test]
      [--layer=0] [--checkpoint=latest]

a_t in [0, 1]^D is the attention the gate of a layer pays to each input
feature at each step (``eleatt_jax`` sows it as ``intermediates``). The plot
shows, for

* sequential MNIST (row-wise): the digit, a_t as a 28 x 28 image (row t is
  the gate over the pixels of row t) and the gated input a_t * x_t;
* pixel / permuted MNIST: a_t of each pixel put back at its place in the image;
* skeletons (x of J joints x 3 coordinates per body): a heat map of the mean
  of a_t over x, y, z, per joint over time;
* anything else: a_t as a [features x time] heat map.

Writes ``WORKDIR/attention_<split>_<index>.png`` (and the values in
``attention_<split>_<index>.npz``) and prints the path.

  python -m train.attention --pretrained=NAME [--manual_dir=DIR]
      [--data_dir=DIR] [--index=0] [--split=...] [--output=PNG]

plots a model of ``eleatt_jax.pretrained`` instead, on example ``index`` of
its card's data set (N-UCLA: ``--manual_dir`` is the folder of its JSON
files), to ``attention_<NAME>_<split>_<index>.png`` by default.
"""

from __future__ import annotations

import os

from absl import flags

from eleatt_jax import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program)."""
  flags.DEFINE_string('workdir', None, "The training run's --workdir.")
  flags.DEFINE_integer('index', 0, 'Example index in the split.')
  flags.DEFINE_string(
      'split', None, "Split (default: the config's data.test_split)."
  )
  flags.DEFINE_integer(
      'layer',
      0,
      'Recurrent layer whose gate is shown (0: the '
      'one that sees the input features).',
  )
  flags.DEFINE_string('checkpoint', 'latest', "'latest', 'best' or a step.")
  flags.DEFINE_string('output', None, 'PNG to write (default in WORKDIR).')
  flags.DEFINE_string(
      'pretrained', None, 'A model of eleatt_jax.pretrained (not --workdir).'
  )
  flags.DEFINE_string(
      'manual_dir', None, "--pretrained: the data set's source files."
  )
  flags.DEFINE_string('data_dir', None, '--pretrained: the tfds data_dir.')
  flags.mark_flags_as_mutual_exclusive(['workdir', 'pretrained'], required=True)


def gate_values(model, params, batch, layer: int):
  """a_t of `layer` for a batch: <float32>[B, T, D], and the logits."""
  # pylint: disable=g-import-not-at-top
  import jax
  import numpy as np
  # pylint: enable=g-import-not-at-top
  logits, state = model.apply(
      {'params': params},
      batch['x'],
      batch['length'],
      train=False,
      mutable='intermediates',
  )
  inter = state.get('intermediates', {})
  name = f'layer_{layer}'
  if name not in inter:
    gated = sorted(inter)
    raise ValueError(
        f'Layer {layer} has no EleAtt gate (cell={model.cell!r}, '
        f'gate_layers={model.gate_layers!r}); layers with a gate: '
        f'{gated or "none"}.'
    )
  leaves = [
      v
      for path, v in jax.tree_util.tree_flatten_with_path(inter[name])[0]
      if 'attention' in jax.tree_util.keystr(path)
  ]
  # Bidirectional layers have two gates (forward first): show the forward.
  return np.asarray(leaves[0]), np.asarray(logits)


def _mnist_mode(name: str) -> str | None:
  if not name.startswith('sequential_mnist/'):
    return None
  cfg = name.split('/', 1)[1]
  for mode in ('pmnist', 'pixel', 'row'):
    if cfg.endswith(mode):
      return mode
  return None


def plot_attention(
    workdir: str,
    index: int,
    split: str | None = None,
    layer: int = 0,
    checkpoint: str = 'latest',
    output: str | None = None,
    run=None,
) -> str:
  """Writes the attention plot of example `index`; returns its path.

  ``run``: a `checkpoints.LoadedRun` to plot instead of ``workdir``'s
  checkpoint (`train.pretrained_run.load`); ``workdir`` is then where the
  default output goes.
  """
  # pylint: disable=g-import-not-at-top
  import numpy as np
  from train import checkpoints
  from train import input_pipeline
  from train import reporting
  from train import workdir as workdir_lib
  # pylint: enable=g-import-not-at-top
  workdir = os.path.abspath(os.path.expanduser(workdir))
  run = run or checkpoints.load_run(workdir, checkpoint)
  config, builder, info, step = run.config, run.builder, run.info, run.step
  model, state = run.model, run.state
  split = split or config.data.test_split
  batch, _ = input_pipeline.get_example(config, builder, info, split, index)
  a, logits = gate_values(model, state.params, batch, layer)
  a = a[0]
  x = batch['x'][0]
  length = int(batch['length'][0])
  label = int(batch['label'][0])
  pred = int(logits[0].argmax())
  names = info.class_names
  title = (
      f'{info.name} {split} #{index}: true {names[label]}, predicted '
      f'{names[pred]} (step {step}, layer {layer} gate)'
  )
  from eleatt_jax import viz  # pylint: disable=g-import-not-at-top

  reporting._pyplot()  # selects Agg  # pylint: disable=protected-access
  mode = _mnist_mode(info.name)
  output = output or os.path.join(workdir, f'attention_{split}_{index}.png')
  if mode is not None and layer == 0:
    fig = viz.plot_mnist_attention(x, a, mode=mode, title=title)
  else:
    a_valid = a[:length]
    skeleton = (
        config.data.preprocess == 'skeleton'
        and layer == 0
        and a_valid.shape[-1] % 3 == 0
    )
    values = viz.joint_attention(a_valid) if skeleton else a_valid
    fig = viz.plot_attention_heatmap(
        values,
        feature_labels=viz.joint_labels(values.shape[-1], _num_joints(builder))
        if skeleton
        else None,
        ylabel='joint (of body m: row m * J + j)'
        if skeleton
        else 'input feature',
        colorbar_label='a_t (mean over x, y, z)' if skeleton else 'a_t',
        title=title,
        figsize=(10, 6),
    )
  reporting.save_png(fig, output)
  workdir_lib.write_atomically(
      os.path.splitext(output)[0] + '.npz',
      lambda f: np.savez(
          f, attention=a[:length], x=x[:length], label=label, prediction=pred
      ),
  )
  print(
      f'Attention of {split} example {index} (true {names[label]}, '
      f'predicted {names[pred]}): {output}',
      flush=True,
  )
  return output


def _num_joints(builder) -> int | None:
  """J of the dataset's ``skeleton`` feature ``[T, (M,) J, 3]``, if any."""
  features = builder.info.features
  if 'skeleton' not in features:
    return None
  return features['skeleton'].shape[-2]


def main(argv):
  from train import reporting  # pylint: disable=g-import-not-at-top

  reporting.start_command(argv)
  if FLAGS.pretrained:
    from train import pretrained_run  # pylint: disable=g-import-not-at-top

    run = pretrained_run.load(
        FLAGS.pretrained, FLAGS.manual_dir, FLAGS.data_dir
    )
    split = FLAGS.split or run.config.data.test_split
    plot_attention(
        os.getcwd(),
        FLAGS.index,
        split,
        FLAGS.layer,
        output=FLAGS.output
        or f'attention_{FLAGS.pretrained}_{split}_{FLAGS.index}.png',
        run=run,
    )
    return
  plot_attention(
      FLAGS.workdir,
      FLAGS.index,
      FLAGS.split,
      FLAGS.layer,
      FLAGS.checkpoint,
      FLAGS.output,
  )


if __name__ == '__main__':
  define_flags()
  cli.run_absl(main)
