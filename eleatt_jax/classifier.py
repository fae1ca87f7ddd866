"""What the linen and the NNX ``StackedRNNClassifier`` share: words and readout.

The model's vocabulary lives here once: the cell names (:data:`CELLS`), the
readouts (:data:`READOUTS`) and which layers carry a gate
(:func:`gated_layers`); the classifiers, the training configs' schema and
``train.state`` all read it from here. :func:`readout_features` is the
classifier's readout of a whole sequence (the streaming readout is
:func:`eleatt_jax.streaming.stream_readout`).

Example usage::

  >>> from eleatt_jax import classifier
  >>> classifier.layer_cells('eleatt_lstm', 2, 3)   # the paper's ablation
  (('lstm', True), ('lstm', True), ('lstm', False))
  >>> classifier.layer_cells('gru', 'all', 2)       # plain names: no gate
  (('gru', False), ('gru', False))
"""

from __future__ import annotations

import numbers
from typing import Any

import jax.numpy as jnp
from flax.typing import Array

__all__ = [
    'CELLS',
    'GATE_LAYER_WORDS',
    'READOUTS',
    'check_cell',
    'check_readout',
    'gated_layers',
    'layer_cells',
    'parse_gate_layers',
    'readout_features',
]

# Cell name -> (its equations in eleatt_jax.equations: 'gru', 'lstm' or
# 'simple'; whether its layers may carry a gate). The plain names are the
# same cells with the gate dropped (use_gate=False): the paper's baselines.
CELLS = {
    'eleatt_gru': ('gru', True),
    'gru': ('gru', False),
    'eleatt_lstm': ('lstm', True),
    'lstm': ('lstm', False),
    'eleatt_rnn': ('simple', True),
    'rnn': ('simple', False),
}

# 'mean': per-step logits averaged over the valid steps; 'last': the logits
# of the last valid step.
READOUTS = ('mean', 'last')

# The words `gate_layers` takes besides a number k (the first k layers).
GATE_LAYER_WORDS = ('all', 'none')


def check_cell(cell: str) -> None:
  """Raises a ValueError unless ``cell`` is one of :data:`CELLS`."""
  if cell not in CELLS:
    raise ValueError(f'cell must be one of {sorted(CELLS)}, got {cell!r}.')


def check_readout(readout: str) -> None:
  """Raises a ValueError unless ``readout`` is one of :data:`READOUTS`."""
  if readout not in READOUTS:
    raise ValueError(f'readout must be one of {READOUTS}, got {readout!r}.')


def parse_gate_layers(value: Any) -> str | int | None:
  """``gate_layers`` from a config: ``'all'``, ``'none'`` or an int k >= 0.

  A number written as text (``'2'``, as a command line gives it) is the int.
  None: ``value`` is none of these.
  """
  if isinstance(value, bool):
    return None
  if isinstance(value, str):
    if value.strip().isdigit():
      return int(value)
    return value if value in GATE_LAYER_WORDS else None
  if isinstance(value, numbers.Integral) and value >= 0:
    return int(value)
  return None


def gated_layers(gate_layers: str | int, num_layers: int) -> tuple[bool, ...]:
  """Which of ``num_layers`` layers carry a gate: 'all', 'none' or the first k."""
  if gate_layers == 'all':
    k = num_layers
  elif gate_layers == 'none':
    k = 0
  elif (
      isinstance(gate_layers, int)
      and not isinstance(gate_layers, bool)
      and 0 <= gate_layers <= num_layers
  ):
    k = gate_layers
  else:
    raise ValueError(
        "gate_layers must be 'all', 'none' or an int in "
        f'[0, {num_layers}], got {gate_layers!r}.'
    )
  return tuple(i < k for i in range(num_layers))


def layer_cells(
    cell: str, gate_layers: str | int, num_layers: int
) -> tuple[tuple[str, bool], ...]:
  """``(equations, use_gate)`` of each layer; checks ``cell`` and ``gate_layers``.

  ``equations``: ``'gru'``, ``'lstm'`` or ``'simple'`` (:data:`CELLS`).
  """
  check_cell(cell)
  kind, gateable = CELLS[cell]
  gates = gated_layers(gate_layers, num_layers)
  return tuple((kind, gateable and gate) for gate in gates)


def readout_features(
    x: Array,
    seq_lengths: Array | None,
    readout: str,
    backward_from: int | None = None,
) -> Array:
  """The classifier's input from the last layer's outputs.

  Args:
    x: <float>[B, T, F], zero past each sequence's end.
    seq_lengths: <int>[B] valid steps, or None (all T).
    readout: 'mean' (average over valid steps) or 'last' (last valid step).
    backward_from: for 'last' of a bidirectional layer, the feature index
      where the backward half starts (its last step is t=0); None otherwise.

  Returns:
    <float32>[B, F].
  """
  lengths = (
      jnp.full(x.shape[:1], x.shape[1])
      if seq_lengths is None
      else jnp.asarray(seq_lengths)
  )
  x = x.astype(jnp.float32)
  if readout == 'mean':
    # Steps past the end are zero, so the sum over time is over valid steps.
    return x.sum(axis=1) / lengths[:, None].astype(jnp.float32)
  last = jnp.take_along_axis(x, (lengths - 1)[:, None, None], axis=1)[:, 0]
  if backward_from is None:
    return last
  return jnp.concatenate(
      [last[:, :backward_from], x[:, 0, backward_from:]], axis=-1
  )
