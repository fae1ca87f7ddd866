"""Streaming: StackedRNNClassifier.step / .chunk and RNN.step / .chunk.

Stepping frame by frame, running chunks of several sizes and running the whole
sequence give the same logits (the logits after frame t are those of the
prefix 0..t) and the same final carry, for every cell type, with padding.
"""

import functools
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from eleatt_jax import RNN, EleAtt, EleAttGRUCell, StackedRNNClassifier
from eleatt_jax.layout import Layout
from eleatt_jax.models import CELL_TYPES

B, T, D, C = 3, 7, 5, 4
LENGTHS = (7, 4, 1)
HIDDEN = (6, 5)
TOL = dict(rtol=1e-5, atol=1e-5)
BF16_TOL = dict(rtol=0, atol=5e-2)


def padded_inputs(dtype=jnp.float32):
  x = jax.random.normal(jax.random.key(1), (B, T, D))
  valid = jnp.arange(T)[None, :] < jnp.array(LENGTHS)[:, None]
  return jnp.where(valid[..., None], x, 100.0).astype(dtype), valid


def _seed(name: str) -> int:
  """A seed from a parameter's path, the same in every process (unlike hash)."""
  return zlib.crc32(name.encode()) % 1000


@functools.cache
def model_and_variables(cell, readout, dtype=None):
  model = StackedRNNClassifier(
      num_classes=C,
      cell=cell,
      hidden_sizes=HIDDEN,
      readout=readout,
      dtype=dtype,
      gate_layers=1 if cell == 'eleatt_lstm' else 'all',
  )
  x, _ = padded_inputs()
  bias = jax.nn.initializers.normal(0.5)
  variables = model.init(jax.random.key(0), x, jnp.array(LENGTHS))
  # Random biases, so that nothing is zero by accident.
  variables = jax.tree_util.tree_map_with_path(
      lambda p, v: (
          bias(jax.random.key(_seed(jax.tree_util.keystr(p))), v.shape)
          if 'bias' in jax.tree_util.keystr(p)
          else v
      ),
      variables,
  )
  return model, variables


def prefix_logits(model, variables, x, valid):
  """[B, T, C]: the full-sequence logits of every prefix 0..t (t < length)."""
  out = np.zeros((B, T, C), np.float32)
  for t in range(T):
    lengths = np.minimum(np.array(LENGTHS), t + 1)
    out[:, t] = model.apply(variables, x[:, : t + 1], jnp.array(lengths))
  return out


@functools.partial(jax.jit, static_argnames=('model', 'method'))
def _apply(model, variables, *args, method):
  """``model.apply``, compiled once per model, method and shapes."""
  return model.apply(variables, *args, method=method)


def stream_steps(model, variables, x, valid):
  step = functools.partial(_apply, model, variables, method='step')
  carry = model.initialize_carry(B)
  logits = []
  for t in range(T):
    carry, logits_t, _ = step(carry, x[:, t], valid[:, t])
    logits.append(logits_t)
  return carry, jnp.stack(logits, axis=1)


def stream_chunks(model, variables, x, valid, size):
  chunk = functools.partial(_apply, model, variables, method='chunk')
  carry = model.initialize_carry((B,))
  logits = []
  for start in range(0, T, size):
    carry, logits_c, _ = chunk(
        carry, x[:, start : start + size], valid[:, start : start + size]
    )
    logits.append(logits_c)
  return carry, jnp.concatenate(logits, axis=1)


def assert_valid_close(a, b, valid, **tol):
  valid = np.asarray(valid)
  np.testing.assert_allclose(
      np.asarray(a, np.float32)[valid], np.asarray(b, np.float32)[valid], **tol
  )


@pytest.mark.parametrize(
    'cell,readout',
    [
        # `make test` runs one gated cell; the other cells and readouts run
        # the same streaming code (`make test-all`).
        pytest.param(
            cell,
            readout,
            id=f'{cell}-{readout}',
            marks=()
            if (cell, readout) == ('eleatt_gru', 'mean')
            else pytest.mark.slow,
        )
        for cell in sorted(CELL_TYPES)
        for readout in ('mean', 'last')
    ],
)
def test_steps_chunks_and_full_sequence_agree(cell, readout):
  model, variables = model_and_variables(cell, readout)
  x, valid = padded_inputs()
  expected = prefix_logits(model, variables, x, valid)
  full = model.apply(variables, x, jnp.array(LENGTHS))
  carry, logits = stream_steps(model, variables, x, valid)
  assert logits.shape == (B, T, C)
  assert_valid_close(logits, expected, valid, **TOL)
  # After its end a sequence's logits stay those of the whole sequence.
  np.testing.assert_allclose(logits[:, -1], full, **TOL)
  np.testing.assert_array_equal(carry['count'], LENGTHS)
  for size in (1, 2, 3, T):
    chunk_carry, chunk_logits = stream_chunks(model, variables, x, valid, size)
    assert_valid_close(chunk_logits, expected, valid, **TOL)
    np.testing.assert_allclose(chunk_logits[:, -1], full, **TOL)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, **TOL), chunk_carry, carry
    )


@pytest.mark.parametrize('cell', ['eleatt_gru', 'eleatt_lstm', 'rnn'])
@pytest.mark.slow
def test_bfloat16_streaming_agrees_with_full_sequence(cell):
  model, variables = model_and_variables(cell, 'mean', jnp.bfloat16)
  x, valid = padded_inputs()
  expected = prefix_logits(model, variables, x, valid)
  _, logits = stream_steps(model, variables, x, valid)
  assert logits.dtype == jnp.float32
  assert_valid_close(logits, expected, valid, **BF16_TOL)
  _, chunk_logits = stream_chunks(model, variables, x, valid, 3)
  assert_valid_close(chunk_logits, expected, valid, **BF16_TOL)


def test_step_returns_each_layers_attention():
  model, variables = model_and_variables('eleatt_lstm', 'mean')  # gate on 1
  x, valid = padded_inputs()
  _, _, attention = model.apply(
      variables, model.initialize_carry(B), x[:, 0], method='step'
  )
  assert attention[0].shape == (B, D) and attention[1] is None
  _, _, attention = model.apply(
      variables, model.initialize_carry(B), x[:, :3], method='chunk'
  )
  assert attention[0].shape == (B, 3, D) and attention[1] is None
  # The full-sequence attention at the same frames.
  _, state = model.apply(variables, x, mutable='intermediates')
  full = state['intermediates']['layer_0']['cell']['attention'][0]
  np.testing.assert_allclose(attention[0], full[:, :3], **TOL)


def test_bidirectional_cannot_stream():
  model = StackedRNNClassifier(
      num_classes=C, hidden_sizes=HIDDEN, bidirectional=True
  )
  with pytest.raises(ValueError, match='bidirectional model .* cannot stream'):
    model.initialize_carry(B)
  variables = model.init(jax.random.key(0), padded_inputs()[0])
  with pytest.raises(ValueError, match='cannot stream'):
    model.apply(variables, {}, padded_inputs()[0][:, 0], method='step')


def test_bad_carry_or_shapes_raise():
  model, variables = model_and_variables('eleatt_gru', 'mean')
  x, _ = padded_inputs()
  with pytest.raises(ValueError, match=r"keys \['count', 'layers', 'sum'\]"):
    model.apply(variables, {'layers': ()}, x[:, 0], method='step')
  with pytest.raises(
      ValueError, match=r'carry is for batch \(2,\), the inputs ' r'for \(3,\)'
  ):
    model.apply(variables, model.initialize_carry(2), x[:, 0], method='step')
  with pytest.raises(ValueError, match=r'step expects x_t \[batch, features\]'):
    model.apply(variables, model.initialize_carry(B), x, method='step')
  with pytest.raises(ValueError, match=r'valid must have the shape \(3, 2\)'):
    model.apply(
        variables,
        model.initialize_carry(B),
        x[:, :2],
        jnp.ones((B, 3), bool),
        method='chunk',
    )


@pytest.mark.parametrize(
    'make_cell',
    [
        lambda: EleAttGRUCell(6),
        lambda: EleAtt(nn.GRUCell(6)),
        lambda: nn.LSTMCell(6),
    ],
    ids=['fused', 'EleAtt(GRUCell)', 'LSTMCell'],
)
def test_rnn_step_and_chunk_agree_with_call(make_cell):
  layer = RNN(make_cell(), return_carry=True)
  x, valid = padded_inputs()
  lengths = jnp.array(LENGTHS)
  variables = layer.init(jax.random.key(0), x, seq_lengths=lengths)
  final, y = layer.apply(variables, x, seq_lengths=lengths)
  carry = layer.initialize_carry(jax.random.key(0), (B, D))
  ys = []
  for t in range(T):
    carry, y_t, _ = layer.apply(
        variables, carry, x[:, t], valid[:, t], method='step'
    )
    ys.append(y_t)
  np.testing.assert_allclose(jnp.stack(ys, 1), y, **TOL)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, **TOL), carry, final
  )
  carry, parts = layer.initialize_carry(jax.random.key(0), (B, D)), []
  for start, stop in ((0, 3), (3, 5), (5, T)):
    carry, y_c, _ = layer.apply(
        variables, carry, x[:, start:stop], valid[:, start:stop], method='chunk'
    )
    parts.append(y_c)
  np.testing.assert_allclose(jnp.concatenate(parts, 1), y, **TOL)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, **TOL), carry, final
  )


@pytest.mark.parametrize('split_gates', [None, True, False])
def test_step_layout_is_the_backends_step_choice_unless_set(split_gates):
  """RNN.step runs Layout.step_split_gates unless split_gates is set; the loop
  keeps its own choice."""
  default = Layout.default()
  layer = RNN(EleAttGRUCell(6), split_gates=split_gates)
  step_split = default.step_split_gates if split_gates is None else split_gates
  loop_split = default.split_gates if split_gates is None else split_gates
  assert layer.step_layout.split_gates is step_split
  assert layer.layout.split_gates is loop_split
  assert not default.with_choices(fused_backward=True).for_step().split_gates


def test_step_logits_do_not_depend_on_the_layout():
  model, variables = model_and_variables('eleatt_gru', 'mean')
  x, valid = padded_inputs()
  split, fused = (
      stream_steps(model.clone(split_gates=s), variables, x, valid)
      for s in (True, False)
  )
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, **TOL), split, fused
  )


def test_reverse_rnn_cannot_stream():
  layer = RNN(EleAttGRUCell(6), reverse=True)
  x, _ = padded_inputs()
  variables = layer.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match='reverse=True layer .* cannot stream'):
    layer.apply(
        variables,
        layer.initialize_carry(jax.random.key(0), (B, D)),
        x[:, 0],
        method='step',
    )
