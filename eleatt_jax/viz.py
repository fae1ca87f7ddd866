"""Plots for EleAtt models: skeletons, attention, training curves, confusion.

Install the plotting extra (``pip install "eleatt-jax[notebooks]"``, or just
``matplotlib``). ``import eleatt_jax`` never imports this module, and this
module imports matplotlib only inside the functions that draw, so it can be
imported (and its NumPy helpers used) without matplotlib.

Every ``plot_*`` function returns a ``matplotlib.figure.Figure`` made with
``pyplot`` (so it shows inline in a notebook); write it with
:func:`save_figure`. The figures and what their axes are:

===============================  ==============================================
:func:`plot_skeleton`            one axis per frame ("frame t"), bones drawn
                                 from the joint topology; with ``joint_values``
                                 the joints are coloured by them (+ a colorbar)
:func:`plot_skeleton_attention`  the same with joints coloured by the EleAtt
                                 gate (mean over x, y, z per joint)
:func:`animate_skeleton`         an animated GIF of a sequence (optionally with
                                 attention colours)
:func:`plot_attention_heatmap`   a_t as [feature or joint x time] (+ colorbar)
:func:`plot_mnist_attention`     digit | gate a_t as an image | gated input
:func:`plot_training_curves`     one axis per metric (loss, accuracy), one line
                                 per run
:func:`plot_confusion_matrix`    rows true class, columns predicted (+ colorbar)
===============================  ==============================================

The gate of the first layer of a skeleton model has D = bodies x joints x 3
values per frame (the input is flattened ``[T, M, J, 3] -> [T, M*J*3]``, as
``eleatt_jax.datasets.preprocessing.flatten`` does). :func:`joint_attention`
reduces it to one value per joint by averaging the x, y and z gates of the
joint (``reduce='max'`` takes the largest instead):

>>> import numpy as np
>>> a = np.zeros((4, 2 * 20 * 3), np.float32)      # T=4, 2 bodies, 20 joints
>>> a[:, 3:6] = [0.3, 0.6, 0.9]                     # body 0, joint 1: x, y, z
>>> per_joint = joint_attention(a)
>>> per_joint.shape, round(float(per_joint[0, 1]), 3)
((4, 40), 0.6)
>>> skeleton_topology(25)[1][:3]                     # NTU: Kinect v2 bones
((0, 1), (1, 20), (20, 2))
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

# -----------------------------------------------------------------------------
# Skeleton topologies (0-based joint indices) live in
# `eleatt_jax.datasets.skeletons`, beside the builders that read those joints.
# They are re-exported here under their old names (`viz.NTU_BONES`,
# `viz.KINECT_V1_JOINT_NAMES`, ...), imported on first use: importing
# `eleatt_jax.datasets` registers the tfds builders, which `import
# eleatt_jax.viz` should not pay for.
_TOPOLOGY_NAMES = (
    'NTU_JOINT_NAMES',
    'NTU_BONES',
    'KINECT_V1_JOINT_NAMES',
    'KINECT_V1_BONES',
    'HAND_JOINT_NAMES',
    'HAND_BONES',
)


def _skeletons():
  """`eleatt_jax.datasets.skeletons`, imported on first use."""
  from eleatt_jax.datasets import skeletons  # pylint: disable=g-import-not-at-top

  return skeletons


def __getattr__(name: str) -> Any:
  """The topology constants of `eleatt_jax.datasets.skeletons` (PEP 562)."""
  if name in _TOPOLOGY_NAMES:
    return getattr(_skeletons(), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
  return sorted(list(globals()) + list(_TOPOLOGY_NAMES))


def skeleton_topology(
    num_joints: int,
) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
  """(joint names, bones) for 25 (NTU, Kinect v2), 20 (Kinect v1) or 22 joints.

  See `eleatt_jax.datasets.skeletons.skeleton_topology`.

  Raises:
    ValueError: for another joint count (pass ``bones=`` to the plots then).
  """
  return _skeletons().skeleton_topology(num_joints)


def joint_attention(
    attention: Any, coords: int = 3, reduce: str = 'mean'
) -> np.ndarray:
  """Per-joint attention from gate values over flattened joint coordinates.

  Args:
    attention: ``<f>[..., D]`` gate values a_t with D = joints x ``coords``
      (bodies x joints x coords for several bodies), in the C order of
      ``[..., M, J, coords]``.
    coords: coordinates per joint (3: x, y, z).
    reduce: ``'mean'`` (average of the joint's x, y, z gates) or ``'max'``.

  Returns:
    ``<float32>[..., D // coords]``: one value per joint (body-major: body m,
    joint j at m * J + j).
  """
  a = np.asarray(attention, np.float32)
  if a.shape[-1] % coords:
    raise ValueError(
        f'the last axis ({a.shape[-1]}) is not joints x {coords} coordinates'
    )
  a = a.reshape(a.shape[:-1] + (a.shape[-1] // coords, coords))
  if reduce == 'mean':
    return a.mean(-1)
  if reduce == 'max':
    return a.max(-1)
  raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")


def joint_labels(num_values: int, num_joints: int | None = None) -> list[str]:
  """Names of per-joint values (as :func:`joint_attention` orders them).

  Args:
    num_values: M x J values, body-major (body m, joint j at m * J + j).
    num_joints: J (default: ``num_values``, one body).

  Returns:
    The joint names of a known skeleton (see :func:`skeleton_topology`),
    prefixed with the body (``'1: head'``) when there are several bodies;
    else the indices ``'0'``, ``'1'``, ...

  >>> joint_labels(20)[:2], joint_labels(50, 25)[25]
  (['hip_center', 'spine'], '1: spine_base')
  """
  num_joints = num_joints or num_values
  try:
    names = skeleton_topology(num_joints)[0]
  except ValueError:
    names = None
  if names is None or num_values % num_joints:
    return [str(i) for i in range(num_values)]
  if num_values == num_joints:
    return list(names)
  return [
      f'{m}: {name}' for m in range(num_values // num_joints) for name in names
  ]


# -----------------------------------------------------------------------------
# Matplotlib helpers.


def _pyplot():
  """matplotlib.pyplot, imported on first use (it is an optional extra)."""
  try:
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError(
        'eleatt_jax.viz needs matplotlib: pip install "eleatt-jax[notebooks]" '
        '(or pip install matplotlib)'
    ) from err
  return plt


def save_figure(
    fig, path: str | os.PathLike[str], dpi: int = 100, close: bool = False
) -> str:
  """Writes ``fig`` to ``path`` (parent folders created); returns the path."""
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  fig.savefig(path, dpi=dpi, bbox_inches='tight')
  if close:
    _pyplot().close(fig)
  return path


def _as_bodies(skeleton: Any) -> np.ndarray:
  """<f>[T, J, C] or <f>[T, M, J, C] -> <float32>[T, M, J, C]."""
  x = np.asarray(skeleton, np.float32)
  if x.ndim == 3:
    x = x[:, None]
  if x.ndim != 4 or x.shape[-1] < 2:
    raise ValueError(
        'expected a skeleton sequence [T, J, 3] or [T, M, J, 3],'
        f' got shape {x.shape}'
    )
  return x


def _joint_values_per_body(
    joint_values: Any, shape: tuple[int, ...]
) -> np.ndarray | None:
  """[T, M*J] or [T, J] or [T, M, J] -> [T, M, J] (or None)."""
  if joint_values is None:
    return None
  v = np.asarray(joint_values, np.float32)
  t, m, j = shape[:3]
  if v.ndim == 2 and v.shape == (t, m * j):
    return v.reshape(t, m, j)
  if v.ndim == 2 and v.shape == (t, j):
    return np.repeat(v[:, None], m, axis=1)
  if v.shape == (t, m, j):
    return v
  raise ValueError(
      'joint_values must be [T, M*J], [T, J] or [T, M, J] for a '
      f'skeleton of {t} frames, {m} bodies, {j} joints; got '
      f'shape {v.shape}'
  )


def _limits(x: np.ndarray, dims: tuple[int, int], pad: float = 0.08):
  """Common axis limits over the present bodies of all frames."""
  present = np.any(x != 0, axis=(-2, -1))  # [T, M]
  pts = x[present] if present.any() else x.reshape(-1, *x.shape[-2:])
  pts = pts.reshape(-1, x.shape[-1])
  lo = pts[:, list(dims)].min(0)
  hi = pts[:, list(dims)].max(0)
  span = float(max((hi - lo).max(), 1e-6))
  center = (lo + hi) / 2
  half = span / 2 * (1 + pad)
  return (
      (center[0] - half, center[0] + half),
      (center[1] - half, center[1] + half),
  )


def _draw_frame(
    ax,
    frame: np.ndarray,
    bones,
    dims,
    values,
    norm,
    cmap,
    joint_size: float,
    colors: Sequence[str],
):
  """Draws the bodies of one frame [M, J, C] on ``ax``; returns the scatter."""
  scatter = None
  i, j = dims
  for m, body in enumerate(frame):
    if not np.any(body != 0):
      continue  # A missing body (e.g. no second actor) stays zero.
    color = colors[m % len(colors)]
    for a, b in bones:
      ax.plot(
          [body[a, i], body[b, i]],
          [body[a, j], body[b, j]],
          '-',
          color=color if values is None else '0.55',
          lw=2,
          solid_capstyle='round',
          zorder=1,
      )
    if values is None:
      ax.scatter(
          body[:, i],
          body[:, j],
          s=joint_size,
          color=color,
          zorder=2,
          edgecolors='white',
          linewidths=0.5,
      )
    else:
      v = values[m]
      # Size grows with the value as well, so it reads without colour too.
      sizes = joint_size * (0.6 + 2.4 * norm(v).clip(0, 1))
      scatter = ax.scatter(
          body[:, i],
          body[:, j],
          s=sizes,
          c=v,
          cmap=cmap,
          norm=norm,
          zorder=2,
          edgecolors='black',
          linewidths=0.5,
      )
  return scatter


def _frames_to_draw(
    frames: Sequence[int] | None, num_frames: int, count: int = 4
) -> list[int]:
  """`frames`, checked; by default `count` evenly spaced ones."""
  if frames is None:
    count = min(count, num_frames)
    return [int(round(f)) for f in np.linspace(0, num_frames - 1, count)]
  frames = list(frames)
  if not frames or min(frames) < 0 or max(frames) >= num_frames:
    raise ValueError(
        f'frames must be non-empty indices in [0, {num_frames}), got {frames}'
    )
  return frames


def _value_norm(shown: np.ndarray, vmin: float | None, vmax: float | None):
  """The colour scale of `shown` values: [vmin, vmax], None the data's end."""
  from matplotlib import colors as mcolors  # pylint: disable=g-import-not-at-top

  return mcolors.Normalize(
      vmin=float(shown.min()) if vmin is None else vmin,
      vmax=float(shown.max()) if vmax is None else vmax,
  )


def _skeleton_panels(
    plt, count: int, panel_size: float, colorbar: bool, title: str | None
):
  """A figure of `count` frame panels in a row: (figure, [axis] * count)."""
  extra = 0.6 if colorbar else 0.0
  fig, axes = plt.subplots(
      1,
      count,
      figsize=(
          panel_size * count + extra,
          panel_size + (0.4 if title else 0.1),
      ),
      squeeze=False,
  )
  return fig, axes[0]


def _style_frame_panel(ax, t: int, limits) -> None:
  """Shared limits, equal aspect, no ticks and the title ``frame t``."""
  (xlo, xhi), (ylo, yhi) = limits
  ax.set_xlim(xlo, xhi)
  ax.set_ylim(ylo, yhi)
  ax.set_aspect('equal')
  ax.set_title(f'frame {t}', fontsize=9)
  ax.set_xticks([])
  ax.set_yticks([])


def _joint_colorbar(plt, fig, axes, scatter, norm, cmap, label: str) -> None:
  """The colorbar of the joint values, beside all the frame panels."""
  mappable = scatter or plt.cm.ScalarMappable(norm=norm, cmap=cmap)
  fig.colorbar(
      mappable,
      ax=list(axes),
      label=label,
      shrink=0.85,
      fraction=0.03,
      pad=0.02,
  )


def plot_skeleton(
    skeleton: Any,
    frames: Sequence[int] | None = None,
    *,
    bones: Sequence[tuple[int, int]] | None = None,
    dims: tuple[int, int] = (0, 1),
    joint_values: Any = None,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cmap: str = 'inferno',
    colorbar_label: str = 'value',
    joint_size: float = 18.0,
    panel_size: float = 2.4,
    title: str | None = None,
    colors: Sequence[str] = ('tab:blue', 'tab:orange'),
):
  """Draws a few frames of a skeleton sequence side by side.

  Args:
    skeleton: ``<f>[T, J, 3]`` or ``<f>[T, M, J, 3]`` joint coordinates (a
      body whose joints are all 0 in a frame is missing there and not drawn).
    frames: frame indices to draw (default: 4 evenly spaced).
    bones: ``(i, j)`` joint pairs; default from :func:`skeleton_topology`.
    dims: the two coordinates to draw (``(0, 1)``: x right, y up, the camera's
      front view for Kinect data; ``(2, 1)`` a side view).
    joint_values: ``<f>[T, M*J]``, ``[T, J]`` or ``[T, M, J]`` values to colour
      the joints with (e.g. attention); adds a colorbar.
    vmin, vmax: colour range of ``joint_values`` (None: the data's range).
    cmap: colormap of ``joint_values``.
    colorbar_label: its label.
    joint_size: marker area of a joint.
    panel_size: inches per frame panel.
    title: figure title.
    colors: body colours when ``joint_values`` is None.

  Returns:
    The figure: one axis per frame titled ``frame t`` (then the colorbar).
  """
  plt = _pyplot()
  x = _as_bodies(skeleton)
  num_frames, _, num_joints = x.shape[:3]
  if bones is None:
    bones = skeleton_topology(num_joints)[1]
  frames = _frames_to_draw(frames, num_frames)
  values = _joint_values_per_body(joint_values, x.shape)
  norm = None if values is None else _value_norm(values[frames], vmin, vmax)
  fig, axes = _skeleton_panels(
      plt, len(frames), panel_size, values is not None, title
  )
  limits = _limits(x, dims)
  scatter = None
  for ax, t in zip(axes, frames):
    s = _draw_frame(
        ax,
        x[t],
        bones,
        dims,
        None if values is None else values[t],
        norm,
        cmap,
        joint_size,
        colors,
    )
    scatter = s if s is not None else scatter
    _style_frame_panel(ax, t, limits)
  if values is not None:
    _joint_colorbar(plt, fig, axes, scatter, norm, cmap, colorbar_label)
  if title:
    fig.suptitle(title, fontsize=10)
  return fig


def plot_skeleton_attention(
    skeleton: Any,
    attention: Any,
    frames: Sequence[int] | None = None,
    *,
    reduce: str = 'mean',
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    **kwargs,
):
  """Joints coloured (and sized) by the EleAtt gate, at a few frames.

  Args:
    skeleton: ``<f>[T, J, 3]`` or ``<f>[T, M, J, 3]``, the frames the model saw
      (before flattening).
    attention: ``<f>[T, M*J*3]`` gate values of the layer that sees the joints
      (the first), or already per joint ``[T, M*J]`` / ``[T, J]``.
    frames: frame indices (default: 4 evenly spaced).
    reduce: how the x, y, z gates of a joint become one value (``'mean'``, the
      default, or ``'max'``; see :func:`joint_attention`).
    vmin, vmax: colour range (default: the range over the frames shown, so
      that differences between joints are visible; a_t itself is in [0, 1]).
    title: figure title.
    **kwargs: passed to :func:`plot_skeleton` (``bones``, ``dims``, ...).

  Returns:
    The figure: one axis per frame, then the colorbar (``a_t, mean over x, y,
    z``).
  """
  x = _as_bodies(skeleton)
  a = np.asarray(attention, np.float32)
  num_points = x.shape[1] * x.shape[2]
  if a.shape[-1] == num_points * x.shape[3]:
    a = joint_attention(a, coords=x.shape[3], reduce=reduce)
  return plot_skeleton(
      x,
      frames,
      joint_values=a,
      vmin=vmin,
      vmax=vmax,
      colorbar_label=f'a_t ({reduce} over x, y, z)',
      title=title,
      **kwargs,
  )


def animate_skeleton(
    skeleton: Any,
    path: str | os.PathLike[str],
    *,
    fps: int = 10,
    bones: Sequence[tuple[int, int]] | None = None,
    dims: tuple[int, int] = (0, 1),
    joint_values: Any = None,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = 'inferno',
    size: float = 3.0,
    dpi: int = 60,
    title: str | None = None,
) -> str:
  """Writes an animated GIF of a skeleton sequence; returns its path.

  Show it in a notebook with ``IPython.display.Image(filename=path)``.

  Args:
    skeleton: ``<f>[T, J, 3]`` or ``<f>[T, M, J, 3]``.
    path: the ``.gif`` to write (parent folders created).
    fps: frames per second.
    bones: joint pairs (default from :func:`skeleton_topology`).
    dims: the two coordinates drawn.
    joint_values: optional per-joint values (``[T, M*J]``, ``[T, J]`` or
      ``[T, M, J]``) to colour the joints, e.g. :func:`joint_attention`.
    vmin, vmax, cmap: their colour scale.
    size: figure size in inches (square).
    dpi: resolution (keep it small: every frame is stored).
    title: shown above the frame counter.
  """
  plt = _pyplot()
  # pylint: disable=g-import-not-at-top
  from matplotlib import animation
  from matplotlib import colors as mcolors
  # pylint: enable=g-import-not-at-top
  x = _as_bodies(skeleton)
  if bones is None:
    bones = skeleton_topology(x.shape[2])[1]
  values = _joint_values_per_body(joint_values, x.shape)
  norm = mcolors.Normalize(vmin=vmin, vmax=vmax)
  (xlo, xhi), (ylo, yhi) = _limits(x, dims)
  fig, ax = plt.subplots(figsize=(size, size))

  def draw(t):
    ax.clear()
    _draw_frame(
        ax,
        x[t],
        bones,
        dims,
        None if values is None else values[t],
        norm,
        cmap,
        18.0,
        ('tab:blue', 'tab:orange'),
    )
    ax.set_xlim(xlo, xhi)
    ax.set_ylim(ylo, yhi)
    ax.set_aspect('equal')
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title((f'{title}\n' if title else '') + f'frame {t}', fontsize=8)
    return []

  anim = animation.FuncAnimation(fig, draw, frames=len(x), blit=False)
  path = os.fspath(path)
  if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
  anim.save(path, writer=animation.PillowWriter(fps=fps), dpi=dpi)
  plt.close(fig)
  return path


def plot_attention_heatmap(
    attention: Any,
    *,
    length: int | None = None,
    feature_labels: Sequence[str] | None = None,
    ylabel: str = 'input feature',
    xlabel: str = 'time step t',
    title: str | None = None,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cmap: str = 'viridis',
    colorbar_label: str = 'a_t',
    figsize: tuple[float, float] | None = None,
):
  """The gate values a_t of one sequence as a [feature x time] heat map.

  Args:
    attention: ``<f>[T, F]``: a_t over F features (or per joint, from
      :func:`joint_attention`).
    length: valid steps; later steps (padding) are not shown.
    feature_labels: one label per feature (e.g. joint names) for the y ticks.
    ylabel, xlabel, title: axis labels and title.
    vmin, vmax: colour range (None: the data's).
    cmap: the colormap.
    colorbar_label: the colorbar's label.
    figsize: inches (default from the shape).

  Returns:
    The figure: the heat map axis, then its colorbar.
  """
  plt = _pyplot()
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  a = np.asarray(attention, np.float32)
  if a.ndim != 2:
    raise ValueError(f'attention must be [T, F], got shape {a.shape}')
  if length is not None:
    a = a[: int(length)]
  num_steps, num_features = a.shape
  if figsize is None:
    figsize = (
        min(3.0 + 0.12 * num_steps, 12.0),
        min(1.5 + 0.16 * num_features, 9.0),
    )
  fig, ax = plt.subplots(figsize=figsize)
  im = ax.imshow(
      a.T,
      aspect='auto',
      cmap=cmap,
      vmin=vmin,
      vmax=vmax,
      interpolation='nearest',
      origin='upper',
  )
  if feature_labels is not None:
    if len(feature_labels) != num_features:
      raise ValueError(
          f'{len(feature_labels)} feature_labels for {num_features} features'
      )
    ax.set_yticks(range(num_features), list(feature_labels), fontsize=7)
  else:  # One row per feature: no ticks between rows.
    ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title, fontsize=10)
  fig.colorbar(im, ax=ax, label=colorbar_label, fraction=0.046, pad=0.02)
  return fig


def mnist_image(seq: np.ndarray, mode: str) -> np.ndarray:
  """<f>[T, D] sequential-MNIST input or gate -> <f>[28, 28] image.

  The inverse of ``eleatt_jax.datasets.sequential_mnist.to_sequence`` (up to
  its scaling to [0, 1]); ``pmnist`` undoes the fixed permutation.
  """
  if mode == 'row':
    return np.asarray(seq).reshape(28, 28)
  flat = np.asarray(seq).reshape(-1)
  if mode == 'pmnist':
    # pylint: disable-next=g-import-not-at-top
    from eleatt_jax.datasets.sequential_mnist import PERMUTATION_SEED

    perm = np.random.default_rng(PERMUTATION_SEED).permutation(flat.size)
    image = np.empty_like(flat)
    image[perm] = flat
    flat = image
  elif mode != 'pixel':
    raise ValueError(f"mode must be 'row', 'pixel' or 'pmnist', got {mode!r}")
  return flat.reshape(28, 28)


def plot_mnist_attention(
    x: Any,
    attention: Any,
    *,
    mode: str = 'row',
    title: str | None = None,
):
  """A digit, the gate a_t as an image, and the gated input a_t * x_t.

  Args:
    x: the input sequence, ``<f>[28, 28]`` (row-wise: row t is step t) or
      ``[784, 1]`` (pixel-wise).
    attention: the first layer's gate values, same shape as ``x``.
    mode: ``'row'``, ``'pixel'`` or ``'pmnist'`` (pixels in the permuted order
      of ``eleatt_jax.datasets.sequential_mnist``); maps both back to 28 x 28.
    title: figure title.

  Returns:
    The figure: axes ``input x``, ``gate a_t``, ``gated input a_t * x_t``, then
    the gate's colorbar.
  """
  plt = _pyplot()
  x = np.asarray(x, np.float32)
  a = np.asarray(attention, np.float32)
  if x.size != 784 or a.size != 784:
    raise ValueError(
        'expected a 28 x 28 digit and its gate values (784 each),'
        f' got {x.shape} and {a.shape}'
    )
  xi, ai = mnist_image(x, mode), mnist_image(a, mode)
  fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.6), layout='constrained')
  row = mode == 'row'
  panels = (
      ('input x', xi, 'gray_r'),
      ('gate a_t', ai, 'viridis'),
      ('gated input a_t * x_t', ai * xi, 'gray_r'),
  )
  for k, (ax, (name, image, cmap)) in enumerate(zip(axes, panels)):
    im = ax.imshow(image, cmap=cmap, vmin=0, vmax=1, interpolation='nearest')
    if k == 1:
      fig.colorbar(im, ax=ax, label='a_t', fraction=0.046, pad=0.03)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel('pixel in row' if row else 'x')
    if k == 0:
      ax.set_ylabel('time step t (row)' if row else 'y')
  if title:
    fig.suptitle(title, fontsize=10)
  return fig


def curves_from_records(
    records: Sequence[Mapping[str, Any]],
) -> dict[str, dict[str, list]]:
  """Turns metric records into :func:`plot_training_curves` runs.

  Records are dicts such as ``{'step': 100, 'train/loss': 0.5,
  'test/accuracy': 0.9}`` (one line of ``train/``'s ``metrics.jsonl``); each
  prefix (``train``, ``test``, ...) becomes a run with a ``step`` list and one
  list per metric (NaN at a step where the prefix's other metrics were
  recorded but not this one).

  >>> runs = curves_from_records([{'step': 1, 'train/loss': 2.0},
  ...                             {'step': 2, 'train/loss': 1.0,
  ...                              'test/accuracy': 0.5}])
  >>> runs['train'], runs['test']
  ({'step': [1, 2], 'loss': [2.0, 1.0]}, {'step': [2], 'accuracy': [0.5]})
  """
  values: dict[str, dict[str, dict[Any, float]]] = {}  # prefix/metric/step
  for r in records:
    for key, value in r.items():
      if key != 'step' and '/' in key:
        prefix, metric = key.split('/', 1)
        values.setdefault(prefix, {}).setdefault(metric, {})[r['step']] = float(
            value
        )
  runs = {}
  for prefix, metrics in values.items():
    steps = sorted({s for by_step in metrics.values() for s in by_step})
    runs[prefix] = {'step': steps}
    for metric, by_step in metrics.items():
      # NaN where a metric was not recorded (skipped by the plot).
      runs[prefix][metric] = [by_step.get(s, float('nan')) for s in steps]
  return runs


def plot_training_curves(
    runs: Mapping[str, Mapping[str, Sequence[float]]],
    metrics: Sequence[str] = ('loss', 'accuracy'),
    *,
    xlabel: str = 'step',
    title: str | None = None,
    styles: Mapping[str, Mapping[str, Any]] | None = None,
    panel_size: tuple[float, float] = (5.0, 3.6),
):
  """Training curves of several runs on the same axes, one axis per metric.

  Args:
    runs: label -> ``{'step': [...], 'loss': [...], 'accuracy': [...]}``
      (e.g. ``{'EleAtt-GRU test': ..., 'GRU test': ...}``); a run without a
      metric is left out of that axis; NaN values are skipped.
    metrics: the metrics to plot, one axis each (titled and labelled by name).
    xlabel: the x axis label (the ``'step'`` key holds the x values).
    title: figure title.
    styles: label -> extra ``Axes.plot`` keywords (``color``, ``linestyle``).
    panel_size: inches per axis.

  Returns:
    The figure, one axis per metric.
  """
  plt = _pyplot()
  styles = styles or {}
  fig, axes = plt.subplots(
      1,
      len(metrics),
      squeeze=False,
      figsize=(panel_size[0] * len(metrics), panel_size[1]),
  )
  axes = axes[0]
  for ax, metric in zip(axes, metrics):
    for i, (label, run) in enumerate(runs.items()):
      if metric not in run:
        continue
      y = np.asarray(run[metric], np.float64)
      x = np.asarray(run.get('step', np.arange(len(y))), np.float64)
      ok = np.isfinite(y)
      kw = {
          'color': f'C{i}',
          'marker': 'o' if ok.sum() < 30 else None,
          'markersize': 3,
      }
      kw.update(styles.get(label, {}))
      ax.plot(x[ok], y[ok], label=label, **kw)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.set_title(metric, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig


def plot_confusion_matrix(
    confusion: Any,
    class_names: Sequence[str] | None = None,
    *,
    normalize: bool = True,
    title: str | None = None,
    annotate: bool | None = None,
    cmap: str = 'Blues',
):
  """A confusion matrix (rows: true class, columns: predicted class).

  Args:
    confusion: ``<int>[C, C]`` counts, ``confusion[true, predicted]``.
    class_names: C names (default ``0..C-1``).
    normalize: colour by the fraction of each true class (row); the cells'
      text stays the counts.
    title: axis title (default ``accuracy x.x% (n)``).
    annotate: write the counts in the cells (default: when C <= 30).
    cmap: the colormap.

  Returns:
    The figure: the matrix axis (x ``predicted``, y ``true``), then its
    colorbar.
  """
  plt = _pyplot()
  c = np.asarray(confusion)
  if c.ndim != 2 or c.shape[0] != c.shape[1]:
    raise ValueError(f'confusion must be [C, C], got shape {c.shape}')
  n = c.shape[0]
  names = (
      [str(i) for i in range(n)]
      if class_names is None
      else [str(s) for s in class_names]
  )
  if len(names) != n:
    raise ValueError(f'{len(names)} class_names for a {n} x {n} matrix')
  rows = c.sum(axis=1, keepdims=True)
  shown = c / np.maximum(rows, 1) if normalize else c
  size = min(3.0 + 0.4 * n, 30.0)
  fig, ax = plt.subplots(figsize=(size + 1.0, size))
  im = ax.imshow(shown, cmap=cmap, vmin=0, vmax=1 if normalize else None)
  if n <= 30:
    ax.set_xticks(range(n), names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
  if annotate if annotate is not None else n <= 30:
    top = float(shown.max()) or 1.0
    for i in range(n):
      for j in range(n):
        if c[i, j]:
          ax.text(
              j,
              i,
              str(int(c[i, j])),
              ha='center',
              va='center',
              fontsize=7,
              color='white' if shown[i, j] > 0.5 * top else 'black',
          )
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  total = int(c.sum())
  if title is None:
    title = f'accuracy {100.0 * np.trace(c) / max(total, 1):.1f}% ({total})'
  ax.set_title(title, fontsize=10)
  fig.colorbar(
      im,
      ax=ax,
      fraction=0.046,
      pad=0.04,
      label='fraction of true class' if normalize else 'count',
  )
  fig.tight_layout()
  return fig


def confusion_matrix(
    labels: Any, predictions: Any, num_classes: int
) -> np.ndarray:
  """``<int64>[C, C]`` counts, rows true class, columns predicted.

  >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
  [[1, 0], [1, 1]]
  """
  labels = np.asarray(labels).reshape(-1)
  predictions = np.asarray(predictions).reshape(-1)
  out = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(out, (labels, predictions), 1)
  return out


def _streaming_class_names(
    p: np.ndarray, class_names: Sequence[str] | None
) -> list[str]:
  """The C class names of probabilities `p` [T, C], both checked."""
  if p.ndim != 2:
    raise ValueError(
        'plot_streaming_probabilities: probabilities must be '
        f'[T, C], got shape {p.shape}.'
    )
  num_classes = p.shape[1]
  names = (
      list(class_names)
      if class_names is not None
      else [str(c) for c in range(num_classes)]
  )
  if len(names) != num_classes:
    raise ValueError(
        f'plot_streaming_probabilities: {len(names)} class names '
        f'for C={num_classes} classes.'
    )
  return names


def _streaming_classes_drawn(
    p: np.ndarray, true_class: int | None, top_k: int
) -> list[int]:
  """The `top_k` classes by peak probability, the true class (if any) first."""
  order = list(np.argsort(-p.max(axis=0))[:top_k])
  if true_class is not None and true_class not in order:
    order = [true_class] + order[: top_k - 1]
  if true_class is not None:
    order = [true_class] + [c for c in order if c != true_class]
  return order


def _mark_settled_frame(ax, settled_frame: int) -> None:
  """A dashed vertical line at `settled_frame`, labelled above the axis."""
  ax.axvline(settled_frame, color='0.4', ls='--', lw=1)
  ax.text(
      settled_frame,
      1.02,
      f' settled at frame {settled_frame}',
      color='0.3',
      fontsize=8,
      va='bottom',
  )


def plot_streaming_probabilities(
    probabilities: Any,
    class_names: Sequence[str] | None = None,
    *,
    true_class: int | None = None,
    settled_frame: int | None = None,
    top_k: int = 5,
    title: str | None = None,
    figsize: tuple[float, float] = (7.0, 3.6),
):
  """Class probabilities over time while a sequence streams in, frame by frame.

  ``probabilities[t]`` are the softmax of the logits after frame ``t`` (e.g.
  of :meth:`StackedRNNClassifier.step <eleatt_jax.StackedRNNClassifier.step>`
  or the exported step of :mod:`eleatt_jax.export`). The ``top_k`` classes
  with the highest probability at any frame are drawn, the true class thick.

  Example usage::

    >>> import numpy as np
    >>> from eleatt_jax import viz
    >>> p = np.full((20, 3), 1 / 3); p[8:] = [0.1, 0.8, 0.1]
    >>> fig = viz.plot_streaming_probabilities(p, ['a', 'b', 'c'],
    ...                                        true_class=1, settled_frame=8)
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()][:1]
    ['b (true)']

  Args:
    probabilities: ``<float>[T, C]``.
    class_names: C names (default ``0..C-1``).
    true_class: the label, drawn thick and marked ``(true)``.
    settled_frame: the frame from which the top class no longer changes,
      marked by a vertical line.
    top_k: the number of classes drawn.
    title: axis title.
    figsize: figure size in inches.

  Returns:
    The figure (one axis: x ``frame``, y ``probability``).
  """
  plt = _pyplot()
  p = np.asarray(probabilities, np.float64)
  names = _streaming_class_names(p, class_names)
  order = _streaming_classes_drawn(p, true_class, top_k)
  fig, ax = plt.subplots(figsize=figsize)
  num_frames = p.shape[0]
  frames = np.arange(num_frames)
  for c in order:
    is_true = c == true_class
    ax.plot(
        frames,
        p[:, c],
        lw=2.6 if is_true else 1.4,
        label=f'{names[c]} (true)' if is_true else names[c],
    )
  if settled_frame is not None:
    _mark_settled_frame(ax, settled_frame)
  ax.set(
      xlabel='frame',
      ylabel='probability',
      ylim=(0, 1.0),
      xlim=(0, max(num_frames - 1, 1)),
  )
  ax.legend(loc='center right', fontsize=8, frameon=False)
  if title:
    ax.set_title(title, pad=14)
  fig.tight_layout()
  return fig
