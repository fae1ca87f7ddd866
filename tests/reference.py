"""Plain NumPy (float64) EleAtt-RNN, written from the equations of the paper (README).

Nothing here imports eleatt_jax: the weights are taken out of a variables dict
by the documented parameter layout (per-gate column blocks of the fused kernels,
or Flax's per-gate ``Dense`` layers), and the recurrences are written out gate by
gate, so an error in the library's fused layout or step shows up as a mismatch.
"""

from __future__ import annotations

import numpy as np

GRU_GATES = ('r', 'z', 'n')
LSTM_GATES = ('i', 'f', 'g', 'o')


def f64(tree):
  """Converts every array of a (nested dict) tree to a float64 NumPy array."""
  if isinstance(tree, dict):
    return {k: f64(v) for k, v in tree.items()}
  return np.asarray(tree, dtype=np.float64)


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def gate(x, h, p):
  """a = sigmoid(W_xa x + W_ha h + b_a); ``p`` holds the EleAttG parameters."""
  return sigmoid(x @ p['input_kernel'] + h @ p['recurrent_kernel'] + p['bias'])


# Per-gate weights from the fused cells' documented layout.


def _blocks(array, names):
  return dict(zip(names, np.split(array, len(names), axis=-1)))


def fused_gru_weights(p):
  """EleAttGRUCell: input_kernel [W_ir|W_iz|W_in], bias [b_ir|b_iz|b_in],
  recurrent_kernel [W_hr|W_hz|W_hn], recurrent_bias b_hn."""
  p = f64(p)
  w = {f'W_i{k}': v for k, v in _blocks(p['input_kernel'], GRU_GATES).items()}
  w.update({f'b_i{k}': v for k, v in _blocks(p['bias'], GRU_GATES).items()})
  w.update({
      f'W_h{k}': v for k, v in _blocks(p['recurrent_kernel'], GRU_GATES).items()
  })
  w['b_hn'] = p['recurrent_bias']
  return w


def fused_lstm_weights(p):
  """EleAttLSTMCell: input_kernel, recurrent_kernel and bias, each [i|f|g|o]."""
  p = f64(p)
  w = {f'W_i{k}': v for k, v in _blocks(p['input_kernel'], LSTM_GATES).items()}
  w.update({
      f'W_h{k}': v
      for k, v in _blocks(p['recurrent_kernel'], LSTM_GATES).items()
  })
  w.update({f'b_{k}': v for k, v in _blocks(p['bias'], LSTM_GATES).items()})
  return w


def fused_simple_weights(p):
  """EleAttSimpleCell: input_kernel W_i, recurrent_kernel W_h, bias b_i."""
  p = f64(p)
  return {
      'W_i': p['input_kernel'],
      'W_h': p['recurrent_kernel'],
      'b_i': p['bias'],
  }


# Per-gate weights from Flax's cells (flax/linen/recurrent.py).


def flax_gru_weights(p):
  """nn.GRUCell: ir/iz/in Dense with bias, hr/hz without, hn with (b_hn)."""
  p = f64(p)
  w = {}
  for k in GRU_GATES:
    w[f'W_i{k}'] = p[f'i{k}']['kernel']
    w[f'b_i{k}'] = p[f'i{k}']['bias']
    w[f'W_h{k}'] = p[f'h{k}']['kernel']
  w['b_hn'] = p['hn']['bias']
  return w


def flax_lstm_weights(p):
  """nn.LSTMCell: ii/if/ig/io kernels without bias, hi/hf/hg/ho with bias."""
  p = f64(p)
  w = {}
  for k in LSTM_GATES:
    w[f'W_i{k}'] = p[f'i{k}']['kernel']
    w[f'W_h{k}'] = p[f'h{k}']['kernel']
    w[f'b_{k}'] = p[f'h{k}']['bias']
  return w


def flax_simple_weights(p):
  """nn.SimpleCell: i Dense with bias, h Dense without."""
  p = f64(p)
  return {
      'W_i': p['i']['kernel'],
      'b_i': p['i']['bias'],
      'W_h': p['h']['kernel'],
  }


# One step of each cell; carries are arrays (GRU, sRNN) or (c, h) (LSTM).


def gru_step(w, h, x):
  r = sigmoid(x @ w['W_ir'] + w['b_ir'] + h @ w['W_hr'])
  z = sigmoid(x @ w['W_iz'] + w['b_iz'] + h @ w['W_hz'])
  n = np.tanh(x @ w['W_in'] + w['b_in'] + r * (h @ w['W_hn'] + w['b_hn']))
  new_h = (1.0 - z) * n + z * h
  return new_h, new_h


def lstm_step(w, carry, x):
  c, h = carry
  i = sigmoid(x @ w['W_ii'] + h @ w['W_hi'] + w['b_i'])
  f = sigmoid(x @ w['W_if'] + h @ w['W_hf'] + w['b_f'])
  g = np.tanh(x @ w['W_ig'] + h @ w['W_hg'] + w['b_g'])
  o = sigmoid(x @ w['W_io'] + h @ w['W_ho'] + w['b_o'])
  new_c = f * c + i * g
  new_h = o * np.tanh(new_c)
  return (new_c, new_h), new_h


def simple_step(w, h, x):
  new_h = np.tanh(x @ w['W_i'] + w['b_i'] + h @ w['W_h'])
  return new_h, new_h


def hidden_of(carry):
  return carry[1] if isinstance(carry, tuple) else carry


def run(step, w, gate_params, x_BTD, carry, seq_lengths=None):
  """EleAtt recurrence over ``x [B, T, D]`` (gate_params None: no gate).

  Returns ``(final_carry, outputs [B, T, H], attention [B, T, D] or None)``;
  with ``seq_lengths`` the carry stops at each sequence's last valid step and
  outputs past it are zero.
  """
  x_BTD = np.asarray(x_BTD, np.float64)
  carry = (
      tuple(np.asarray(c, np.float64) for c in carry)
      if isinstance(carry, tuple)
      else np.asarray(carry, np.float64)
  )
  batch, steps, _ = x_BTD.shape
  lengths = (
      np.full((batch,), steps)
      if seq_lengths is None
      else np.asarray(seq_lengths)
  )
  outputs, attention = [], []
  for t in range(steps):
    x = x_BTD[:, t]
    if gate_params is not None:
      a = gate(x, hidden_of(carry), gate_params)
      attention.append(a)
      x = a * x
    new_carry, y = step(w, carry, x)
    valid = (t < lengths)[:, None]
    if isinstance(carry, tuple):
      carry = tuple(np.where(valid, n, o) for n, o in zip(new_carry, carry))
    else:
      carry = np.where(valid, new_carry, carry)
    outputs.append(np.where(valid, y, 0.0))
  return (
      carry,
      np.stack(outputs, 1),
      np.stack(attention, 1) if attention else None,
  )
