r"""Trained EleAtt networks that load in one line, with their model cards.

Each model is a folder of this package (the weights travel with it)::

  <name>/model_card.json      what it is, how it was made, how well it does
  <name>/params.msgpack       its parameters (``flax.serialization`` msgpack)
  <name>/*.jax_exported       the same network as ``jax.export`` functions
                              (sequence, initialize_carry, step, step_valid;
                              see :mod:`eleatt_jax.export`)

:func:`load` checks the weights against the SHA-256 in the card and returns
the module, its variables and its card; nothing is trained and no data is
read, and only jax, flax and numpy are imported::

  >>> from eleatt_jax import pretrained
  >>> 'smnist_eleatt_gru' in pretrained.list()
  True
  >>> model, variables, card = pretrained.load('smnist_eleatt_gru')
  >>> card['input']['T'], card['input']['D'], len(card['classes'])
  (28, 28, 10)

A card (``card(name)``, a dict) names the task and data set, the classes, the
input ``[T, D]`` and the preprocessing of raw frames (:func:`preprocess`
applies it with the data pipeline's own code), the config, the exact commands
that made the model, the commit, the training time, and every accuracy that
was measured with its split (``accuracy``; a split that this project's data
lacks is listed with ``value`` None and the reason). ``docs/pretrained.md``
tabulates them; ``python -m train.make_pretrained NAME`` re-creates one.

The streaming step and the full-sequence function also load with JAX alone
(:func:`load_exported`, or ``jax.export.deserialize`` of the files).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

__all__ = [
    'CARD',
    'WEIGHTS',
    'card',
    'directory',
    'list',
    'load',
    'load_exported',
    'preprocess',
]

_HERE = os.path.dirname(os.path.abspath(__file__))
#: A model's card file (the same name as eleatt_jax.export.CARD).
CARD = 'model_card.json'
#: A model's weight file (flax.serialization msgpack).
WEIGHTS = 'params.msgpack'

_builtin_list = list


def list() -> _builtin_list[str]:  # pylint: disable=redefined-builtin
  """The names of the shipped models (folders that hold a model card)."""
  return sorted(
      name
      for name in os.listdir(_HERE)
      if os.path.isfile(os.path.join(_HERE, name, CARD))
  )


def directory(name: str) -> str:
  """The folder of model ``name`` (its card, weights and exports)."""
  names = list()
  if name not in names:
    raise ValueError(
        f'No pretrained model {name!r}; the models are {names} '
        '(eleatt_jax.pretrained.list()).'
    )
  return os.path.join(_HERE, name)


def card(name: str) -> dict[str, Any]:
  """The model card of ``name`` (parsed ``model_card.json``)."""
  path = os.path.join(directory(name), CARD)
  with open(path) as f:
    try:
      out = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path} is not valid JSON: {e}') from e
  for key in ('module', 'weights', 'input', 'classes'):
    if key not in out:
      raise ValueError(f'{path} has no {key!r} entry.')
  return out


def _read_checked(path: str, entry: dict[str, Any], what: str) -> bytes:
  """The bytes of ``path``, refused unless they match ``entry['sha256']``."""
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'{path} is missing: the {what} listed in {CARD} (reinstall '
        'eleatt-jax, or re-create the model with '
        '`python -m train.make_pretrained`).'
    )
  with open(path, 'rb') as f:
    data = f.read()
  digest = hashlib.sha256(data).hexdigest()
  if digest != entry['sha256']:
    size = entry.get('bytes')
    sizes = (
        f' ({len(data)} bytes, the card says {size})'
        if size is not None and size != len(data)
        else ''
    )
    raise ValueError(
        f'{path}: SHA-256 {digest[:12]}... differs from the '
        f'{entry["sha256"][:12]}... in {CARD}{sizes}: the file was changed, '
        'truncated or replaced; refusing to load it.'
    )
  return data


def load(name: str):
  """The module, variables and card of pretrained model ``name``.

  Returns:
    ``(model, variables, card)``: a :class:`~eleatt_jax.StackedRNNClassifier`,
    ``{'params': ...}`` (numpy arrays) and the card. Call it as in
    training, ``model.apply(variables, x, lengths)`` with ``x``
    <float32>[batch, T, D] preprocessed as the card says (:func:`preprocess`);
    ``mutable='intermediates'`` also returns the gate values a_t.

  Raises:
    ValueError: an unknown name; a weight file that does not match the
      SHA-256 of its card (changed or truncated), or whose arrays do not fit
      the module.
    FileNotFoundError: the weight file is missing.
  """
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import serialization
  from eleatt_jax.models import StackedRNNClassifier
  # pylint: enable=g-import-not-at-top

  info = card(name)
  folder = directory(name)
  path = os.path.join(folder, info['weights']['file'])
  data = _read_checked(path, info['weights'], 'weights')
  params = serialization.msgpack_restore(data)
  kwargs = dict(info['module'])
  kwargs['hidden_sizes'] = tuple(kwargs['hidden_sizes'])
  model = StackedRNNClassifier(**kwargs)
  t, d = info['input']['T'], info['input']['D']
  expected = jax.eval_shape(
      lambda: model.init(
          jax.random.key(0),
          jnp.zeros((1, t, d), jnp.float32),
          jnp.full((1,), t, jnp.int32),
      )['params']
  )
  shapes = lambda tree: jax.tree_util.tree_map(
      lambda a: (tuple(a.shape), str(a.dtype)), tree
  )
  if shapes(params) != shapes(expected):
    raise ValueError(
        f'{path}: the arrays do not fit the module of {CARD} '
        f'({model.cell}, hidden_sizes={model.hidden_sizes}).'
    )
  params = jax.tree_util.tree_map(np.asarray, params)
  return model, {'params': params}, info


def load_exported(name: str, names: tuple[str, ...] | None = None):
  """The ``jax.export`` functions of ``name``, checked and jitted.

  :func:`eleatt_jax.export.load_callables` of the model's folder:
  ``sequence(x, lengths)``, ``initialize_carry(x_t)`` and
  ``step(carry, x_t, valid=None) -> (carry, logits_t, probabilities_t)``.
  """
  from eleatt_jax import export  # pylint: disable=g-import-not-at-top

  return export.load_callables(directory(name), names)


def preprocess(
    name_or_card, frames, length: int | None = None, test_time: bool = True
):
  """Raw frames -> the model's input, with the card's preprocessing.

  Runs the evaluation preprocessing of the training pipeline
  (:class:`eleatt_jax.datasets.SkeletonPreprocess` or
  :class:`~eleatt_jax.datasets.SequencePreprocess`, with the card's
  settings; no augmentation), so it needs the ``[data]`` extra.

  Args:
    name_or_card: a model name or its card.
    frames: one sequence of raw frames, as the card's ``raw_input`` says:
      skeletons <float>[T0, J, 3] (or [T0, M, J, 3]) in metres, camera
      coordinates; sequential MNIST: <float>[28, 28] pixel rows in [0, 1].
    length: valid frames of ``frames`` (default: all).
    test_time: False: one centred, unrotated version even where the card
      averages several (a stream, which sees each frame once).

  Returns:
    ``(x <float32>[K, T, D], lengths <int32>[K])``, ready for
    ``model.apply(variables, x, lengths)`` or the exported ``sequence``
    (and ``x[:, t]`` for the streaming step). K = 1, unless the card's
    preprocessing averages over several versions of a sequence at test
    time (``test_clips`` temporal samplings x (1 + ``len(test_yaws)``)
    rotations, the "plus" recipe): then the rows are those K versions, and
    the model's prediction, the one its accuracy was measured with, is the
    mean of their class probabilities,
    ``jax.nn.softmax(model.apply(variables, x, lengths)).mean(0)``.
  """
  # pylint: disable=g-import-not-at-top
  import numpy as np
  from eleatt_jax.datasets import pipeline
  # pylint: enable=g-import-not-at-top

  info = card(name_or_card) if isinstance(name_or_card, str) else name_or_card
  spec = info['preprocessing']
  kind = getattr(pipeline, spec['class'])
  # JSON lists back to the tuples of the dataclass (align_joints, streams,
  # bones, test_yaws).
  as_tuple = (
      lambda v: tuple(map(as_tuple, v)) if isinstance(v, _builtin_list) else v
  )
  kwargs = {k: as_tuple(v) for k, v in spec['kwargs'].items()}
  if not test_time:
    kwargs.update(test_clips=1, test_yaws=())
  frames = np.asarray(frames, np.float32)
  length = len(frames) if length is None else int(length)
  if frames.ndim < 2 or not 1 <= length <= len(frames):
    raise ValueError(
        f'frames of shape {frames.shape} with length {length}: expected '
        f'{info["raw_input"]["shape"]} with 1 <= length <= T0.'
    )
  row = kind(**kwargs)({kwargs.get('key', 'x'): frames, 'length': length})
  x = np.asarray(row['x'], np.float32)
  if x.ndim == 2:  # one version
    x = x[None]
  if x.shape[-1] != info['input']['D']:
    raise ValueError(
        f'frames of shape {frames.shape} give D={x.shape[-1]} features; '
        f'the model expects D={info["input"]["D"]} '
        f'({info["raw_input"]["shape"]}).'
    )
  return x, np.full((len(x),), row['length'], np.int32)
