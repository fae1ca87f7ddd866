r"""Frame encoders: from video frames to the per-frame features an RNN reads.

Two routes (the paper encodes each frame with a CNN and models time with the
EleAtt-RNN):

* end to end, :class:`VideoClassifier`: a small :class:`FrameCNN`, the same
  weights for every frame, feeding a :class:`~eleatt_jax.StackedRNNClassifier`;
  both trained together. The frames of all clips go through the CNN as one
  batch (a reshape ``[B, T, H, W, C] -> [B*T, H, W, C]``, no loop over time),
  optionally under ``nn.remat`` for long clips:

  .. math::  f_{b,t} = \mathrm{CNN}(\mathrm{frame}_{b,t}), \qquad
             \text{logits}_b = \mathrm{EleAttRNN}(f_{b,1..T})

* features, :class:`KerasBackbone` and :func:`extract_features`: a pretrained
  ImageNet network of Keras 3 (``keras.applications``, run on the JAX backend)
  is applied once to every frame of a data set, and the per-frame feature
  sequences are written as sequence-npz files (``train.npz``,
  ``validation.npz``, ``test.npz``) that the ``sequence_npz`` builder and
  ``train/configs/npz.py`` train on. Needs ``pip install 'eleatt-jax[keras]'``.

Example usage::

  >>> import jax, jax.numpy as jnp
  >>> from eleatt_jax.frame_encoders import VideoClassifier
  >>> model = VideoClassifier(num_classes=6, frame_shape=(16, 16, 1),
  ...                         cnn_features=(8, 8), frame_features=12,
  ...                         hidden_sizes=(10,))
  >>> x = jnp.zeros((2, 5, 16 * 16 * 1))        # [B, T, H*W*C], flattened
  >>> variables = model.init(jax.random.key(0), x, jnp.array([5, 3]))
  >>> model.apply(variables, x, jnp.array([5, 3])).shape
  (2, 6)
  >>> carry = model.initialize_carry(2)          # streaming, frame by frame
  >>> carry, logits_t, _ = model.apply(variables, carry, x[:, 0],
  ...                                  method='step')
  >>> logits_t.shape
  (2, 6)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.typing import Array, Dtype

from eleatt_jax import models

__all__ = [
    'FrameCNN',
    'KERAS_BACKBONES',
    'KerasBackbone',
    'VideoClassifier',
    'extract_features',
]


class FrameCNN(nn.Module):
  """A small CNN: frames -> feature vectors.

  Each stage is a 3 x 3 convolution of stride 2 and a ReLU (halving H and W),
  then the flattened map goes through a dense layer and a ReLU::

    <float>[N, H, W, C] -> <float32>[N, frame_features]

  Attributes:
    features: Output channels of each convolution stage.
    frame_features: F, the size of each frame's feature vector.
    dtype: Computation dtype (None: float32); parameters stay float32.
  """

  features: Sequence[int] = (16, 32, 32)
  frame_features: int = 64
  dtype: Dtype | None = None

  @nn.compact
  def __call__(self, frames: Array) -> Array:
    if jnp.ndim(frames) != 4:
      raise ValueError(
          f'FrameCNN expects frames [N, H, W, C], got {jnp.shape(frames)}.'
      )
    x = frames
    for c in self.features:
      x = nn.Conv(c, (3, 3), strides=(2, 2), dtype=self.dtype)(x)
      x = nn.relu(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.frame_features, dtype=self.dtype)(x))
    return x.astype(jnp.float32)


class VideoClassifier(nn.Module):
  """A per-frame :class:`FrameCNN` shared over time, then a stacked RNN.

  ``inputs [B, T, H*W*C] (or [B, T, H, W, C]) -> logits [B, num_classes]``,
  with the interface of :class:`~eleatt_jax.StackedRNNClassifier`
  (``__call__(inputs, seq_lengths, train=)``, ``initialize_carry``,
  ``step``), so the trainer, ``jax.export`` and streaming take it as they
  are. Frames are in [0, 1] (the pipeline divides uint8 by 255).

  Attributes:
    num_classes: C.
    frame_shape: ``(H, W, C)`` of a frame.
    cnn_features: Channels of each :class:`FrameCNN` stage.
    frame_features: F, the CNN's output per frame (the RNN's input size).
    remat: Recompute the CNN's activations in the backward pass
      (``nn.remat``) instead of keeping them: memory for long clips.
    cell, hidden_sizes, gate_layers, gate_bias_init, dropout_rate, readout,
      unroll, check_seq_lengths, dtype: those of
      :class:`~eleatt_jax.StackedRNNClassifier` (not bidirectional, so that
      it streams).
  """

  num_classes: int
  frame_shape: tuple[int, int, int]
  cnn_features: Sequence[int] = (16, 32, 32)
  frame_features: int = 64
  remat: bool = False
  cell: str = 'eleatt_gru'
  hidden_sizes: Sequence[int] = (100, 100, 100)
  gate_layers: str | int = 'all'
  gate_bias_init: float = 0.0
  dropout_rate: float = 0.5
  readout: str = 'mean'
  unroll: int = 1
  check_seq_lengths: bool | str = True
  dtype: Dtype | None = None

  bidirectional = False  # What export and streaming ask of a classifier.

  @nn.nowrap
  def _make_rnn(self, **kwargs) -> models.StackedRNNClassifier:
    return models.StackedRNNClassifier(
        num_classes=self.num_classes,
        cell=self.cell,
        hidden_sizes=tuple(self.hidden_sizes),
        gate_layers=self.gate_layers,
        gate_bias_init=self.gate_bias_init,
        dropout_rate=self.dropout_rate,
        readout=self.readout,
        unroll=self.unroll,
        check_seq_lengths=self.check_seq_lengths,
        dtype=self.dtype,
        **kwargs,
    )

  def setup(self):
    cnn = nn.remat(FrameCNN) if self.remat else FrameCNN
    self.encoder = cnn(
        features=tuple(self.cnn_features),
        frame_features=self.frame_features,
        dtype=self.dtype,
    )
    self.rnn = self._make_rnn()

  def encode(self, inputs: Array) -> Array:
    """``[B, T, H*W*C]`` or ``[B, T, H, W, C]`` -> ``<float32>[B, T, F]``."""
    shape = tuple(self.frame_shape)
    size = int(np.prod(shape))
    if jnp.ndim(inputs) == 3 and inputs.shape[-1] == size:
      pass
    elif jnp.ndim(inputs) == 5 and tuple(inputs.shape[2:]) == shape:
      pass
    else:
      raise ValueError(
          f'VideoClassifier(frame_shape={shape}) expects inputs [B, T, {size}]'
          f' or [B, T, {", ".join(map(str, shape))}], got {jnp.shape(inputs)}.'
      )
    b, t = inputs.shape[:2]
    features = self.encoder(inputs.reshape((b * t,) + shape))
    return features.reshape(b, t, -1)

  def __call__(
      self, inputs: Array, seq_lengths: Array | None = None, *, train=False
  ) -> Array:
    """Classifies each clip; see :meth:`StackedRNNClassifier.__call__`."""
    return self.rnn(self.encode(inputs), seq_lengths, train=train)

  @nn.nowrap
  def initialize_carry(self, batch_shape) -> dict[str, Any]:
    """The RNN's streaming carry (the CNN has no state)."""
    return self._make_rnn(parent=None).initialize_carry(batch_shape)

  def step(self, carry, x_t: Array, valid: Array | None = None):
    """One frame ``x_t [B, H*W*C]``: the CNN, then the RNN's step.

    Returns ``(carry, logits_t [B, C], attention_t)`` as
    :meth:`StackedRNNClassifier.step` does.
    """
    features = self.encode(x_t[:, None])[:, 0]
    return self.rnn.step(carry, features, valid)


# ----------------------------------------------------------- features route --

#: keras.applications models this module knows the preprocessing of:
#: name -> the module of its ``preprocess_input``.
KERAS_BACKBONES = {
    'MobileNetV3Small': 'mobilenet_v3',
    'MobileNetV3Large': 'mobilenet_v3',
    'MobileNetV2': 'mobilenet_v2',
    'ResNet50': 'resnet',
    'EfficientNetB0': 'efficientnet',
    'ConvNeXtTiny': 'convnext',
}


def _keras():
  """Keras 3 on the JAX backend, or an ImportError saying how to get it."""
  os.environ.setdefault('KERAS_BACKEND', 'jax')
  try:
    import keras  # pylint: disable=g-import-not-at-top
  except ImportError as err:
    raise ImportError(
        "the features route needs Keras 3: pip install 'eleatt-jax[keras]'"
    ) from err
  if keras.backend.backend() != 'jax':
    raise RuntimeError(
        f'Keras runs on the {keras.backend.backend()!r} backend; set'
        ' KERAS_BACKEND=jax before keras is first imported.'
    )
  return keras


class KerasBackbone:
  """An ImageNet network of ``keras.applications`` as a jitted JAX function.

  ``frames <uint8>[N, S, S, C] -> <float32>[N, F]`` (global average pooling
  of the last feature map; a gray frame is repeated to 3 channels).

  Attributes:
    name: A key of `KERAS_BACKBONES`.
    weights: ``'imagenet'`` (downloaded by Keras on first use, into
      ``~/.keras/models``) or None (random weights: what the tests run, with
      no network).
    feature_size: F.
  """

  def __init__(self, name: str, frame_size: int, weights: str | None):
    if name not in KERAS_BACKBONES:
      raise ValueError(
          f'Unknown backbone {name!r}; known: {sorted(KERAS_BACKBONES)}.'
      )
    keras = _keras()
    self.name, self.weights = name, weights
    self._model = getattr(keras.applications, name)(
        include_top=False,
        weights=weights,
        input_shape=(frame_size, frame_size, 3),
        pooling='avg',
    )
    module = getattr(keras.applications, KERAS_BACKBONES[name])
    self._preprocess = module.preprocess_input
    self.feature_size = int(self._model.output_shape[-1])
    model = self._model

    def apply(trainable, non_trainable, x):
      return model.stateless_call(trainable, non_trainable, x, training=False)[
          0
      ]

    self._apply = jax.jit(apply)
    self._variables = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
    )

  def __call__(self, frames: np.ndarray) -> np.ndarray:
    x = np.asarray(frames, np.float32)
    if x.shape[-1] == 1:
      x = np.repeat(x, 3, axis=-1)
    x = np.asarray(self._preprocess(x))
    return np.asarray(self._apply(*self._variables, jnp.asarray(x)))


def extract_features(
    sources: dict[str, Sequence[dict[str, Any]]],
    class_names: Sequence[str],
    encode,
    output_dir: os.PathLike[str] | str,
    *,
    frames_key: str = 'frames',
    batch_frames: int = 256,
) -> dict[str, str]:
  """Writes each split's per-frame features as a sequence-npz file.

  Args:
    sources: split -> random-access examples with ``frames`` <uint8>[T, S,
      S, C], ``length`` and ``label`` (e.g. ``builder.as_data_source(s)``).
    class_names: The C class names.
    encode: ``<uint8>[N, S, S, C] -> <float32>[N, F]`` (a
      :class:`KerasBackbone`, or any function).
    output_dir: Gets ``{split}.npz`` for each split.
    frames_key: The frames field of the examples.
    batch_frames: Frames encoded per call (the last call may be smaller).

  Returns:
    split -> the path written.
  """
  os.makedirs(os.fspath(output_dir), exist_ok=True)
  written = {}
  for split, source in sources.items():
    clips = [source[i] for i in range(len(source))]
    lengths = np.array([int(c['length']) for c in clips], np.int32)
    frames = np.concatenate(
        [np.asarray(c[frames_key])[:n] for c, n in zip(clips, lengths)]
    )
    feats = np.concatenate([
        np.asarray(encode(frames[i : i + batch_frames]), np.float32)
        for i in range(0, len(frames), batch_frames)
    ])
    x = np.zeros((len(clips), lengths.max(), feats.shape[-1]), np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for i, n in enumerate(lengths):
      x[i, :n] = feats[offsets[i] : offsets[i + 1]]
    path = os.path.join(os.fspath(output_dir), f'{split}.npz')
    np.savez(
        path,
        x=x,
        lengths=lengths,
        y=np.array([int(c['label']) for c in clips], np.int64),
        class_names=np.array(list(class_names)),
    )
    written[split] = path
  return written
