"""Streaming for NNX: StackedRNNClassifier.step / .chunk and RNN.step / .chunk.

The NNX streaming calls give the NNX full-sequence numbers (the logits after
frame t are those of the prefix 0..t, with padding) and the numbers of the
linen streaming calls on the same parameters.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import eleatt_jax
from eleatt_jax import nnx as enx
from eleatt_jax.layout import Layout

B, T, D, H, C = 3, 7, 5, 6, 4
LENGTHS = (7, 4, 1)
HIDDEN = (H, 5)
TOL = dict(rtol=1e-5, atol=1e-5)


def padded_inputs():
  x = jax.random.normal(jax.random.key(1), (B, T, D))
  valid = jnp.arange(T)[None, :] < jnp.array(LENGTHS)[:, None]
  return jnp.where(valid[..., None], x, 100.0), valid


def close(a, b):
  jax.tree_util.tree_map(
      lambda u, v: np.testing.assert_allclose(u, v, **TOL), a, b
  )


def assert_valid_close(a, b, valid):
  valid = np.asarray(valid)
  np.testing.assert_allclose(np.asarray(a)[valid], np.asarray(b)[valid], **TOL)


def nnx_and_linen(cell, readout, **kw):
  """The NNX classifier (random biases, so that nothing is zero by accident),
  the linen classifier and the same parameters as linen variables.

  The linen variables come from the NNX module (``to_linen``): no linen
  ``init``, whose forward pass would compile a second model.
  """
  kw = dict(cell=cell, hidden_sizes=HIDDEN, readout=readout, **kw)
  model = enx.StackedRNNClassifier(D, C, rngs=nnx.Rngs(0), **kw)
  params = nnx.state(model, nnx.Param)
  rng = np.random.default_rng(0)  # NumPy: nothing to compile.
  pure = jax.tree_util.tree_map_with_path(
      lambda p, v: (
          jnp.asarray(rng.normal(0.0, 0.5, v.shape), v.dtype)
          if 'bias' in jax.tree_util.keystr(p)
          else v
      ),
      nnx.to_pure_dict(params),
  )
  nnx.replace_by_pure_dict(params, pure)
  nnx.update(model, params)
  model.eval()
  linen_model = eleatt_jax.StackedRNNClassifier(num_classes=C, **kw)
  return model, linen_model, {'params': enx.to_linen(model)}


def prefix_logits(model, x):
  """[B, T, C]: the NNX full-sequence logits of every prefix 0..t, as one call
  on the whole padded sequence with the lengths min(length, t + 1)."""
  lengths = np.minimum(np.array(LENGTHS)[None, :], np.arange(1, T + 1)[:, None])
  logits = model(jnp.tile(x, (T, 1, 1)), jnp.asarray(lengths.reshape(-1)))
  return jnp.moveaxis(logits.reshape(T, B, C), 0, 1)


SLOW = pytest.mark.slow

# Compiled once; nnx.jit traces again only for another module structure or
# other shapes.
_step = nnx.jit(lambda m, c, x_t, v: m.step(c, x_t, v))
_chunk = nnx.jit(lambda m, c, x, v: m.chunk(c, x, v))


def stream_chunks(module, carry, x, valid, size):
  """``module.chunk`` over ``x [B, T, D]`` in chunks of ``size`` frames: the
  carry after the last and the outputs ``[B, T, ...]``. The last chunk is
  padded with invalid frames, so that one compiled chunk serves them all."""
  pad = -T % size
  x = jnp.pad(x, ((0, 0), (0, pad), (0, 0)), constant_values=100.0)
  valid = jnp.pad(valid, ((0, 0), (0, pad)))
  outputs = []
  for start in range(0, T + pad, size):
    carry, outputs_c, _ = _chunk(
        module,
        carry,
        x[:, start : start + size],
        valid[:, start : start + size],
    )
    outputs.append(outputs_c)
  return carry, jnp.concatenate(outputs, axis=1)[:, :T]


@pytest.mark.parametrize(
    'cell,readout,chunk_sizes',
    [
        # `make test` runs the first; the others run the same shared code
        # (`make test-all`).
        pytest.param('eleatt_gru', 'mean', (3,), id='eleatt_gru-mean'),
        pytest.param('gru', 'last', (2, 3), id='gru-last', marks=SLOW),
        pytest.param(
            'eleatt_lstm', 'last', (2, 3), id='eleatt_lstm-last', marks=SLOW
        ),
        pytest.param('rnn', 'mean', (2, 3), id='rnn-mean', marks=SLOW),
    ],
)
def test_classifier_streams_as_its_full_sequence_and_as_linen(
    cell, readout, chunk_sizes
):
  model, linen_model, variables = nnx_and_linen(cell, readout)
  x, valid = padded_inputs()
  expected = prefix_logits(model, x)
  full = expected[:, -1]  # The prefix 0..T-1: the whole padded sequence.
  linen_step = jax.jit(
      functools.partial(linen_model.apply, variables, method='step')
  )
  carry = model.initialize_carry(B)
  linen_carry = linen_model.initialize_carry(B)
  close(carry, linen_carry)  # The same structure, the same zeros.
  logits = []
  for t in range(T):
    carry, logits_t, attention = _step(model, carry, x[:, t], valid[:, t])
    linen_carry, linen_logits_t, linen_attention = linen_step(
        linen_carry, x[:, t], valid[:, t]
    )
    close((logits_t, attention), (linen_logits_t, linen_attention))
    logits.append(logits_t)
  close(carry, linen_carry)
  logits = jnp.stack(logits, axis=1)
  assert_valid_close(logits, expected, valid)
  # After its end a sequence's logits stay those of the whole sequence.
  np.testing.assert_allclose(logits[:, -1], full, **TOL)
  np.testing.assert_array_equal(carry['count'], LENGTHS)
  for size in chunk_sizes:
    chunk_carry, chunk_logits = stream_chunks(
        model, model.initialize_carry(B), x, valid, size
    )
    assert_valid_close(chunk_logits, expected, valid)
    np.testing.assert_allclose(chunk_logits[:, -1], full, **TOL)
    close(chunk_carry, carry)


@pytest.mark.parametrize(
    'make_cell',
    [
        lambda rngs: enx.EleAttGRUCell(D, H, rngs=rngs),
        lambda rngs: enx.EleAtt(nnx.GRUCell(D, H, rngs=rngs), rngs=rngs),
        lambda rngs: nnx.OptimizedLSTMCell(D, H, rngs=rngs),
    ],
    ids=['fused', 'EleAtt(GRUCell)', 'OptimizedLSTMCell'],
)
@pytest.mark.slow
def test_rnn_step_and_chunk_agree_with_call(make_cell):
  layer = enx.RNN(make_cell(nnx.Rngs(0)), return_carry=True)
  x, valid = padded_inputs()
  final, y = layer(x, seq_lengths=jnp.array(LENGTHS))
  carry, ys, attention = layer.initialize_carry((B, D)), [], []
  for t in range(T):
    carry, y_t, a_t = _step(layer, carry, x[:, t], valid[:, t])
    ys.append(y_t)
    attention.append(a_t)
  close(jnp.stack(ys, 1), y)
  close(carry, final)
  gated = not isinstance(layer.cell, nnx.OptimizedLSTMCell)
  assert (attention[0] is not None) == gated
  if gated:  # The attention __call__ keeps, at the valid steps.
    assert_valid_close(
        jnp.stack(attention, 1), layer.cell.attention[...], valid
    )
  carry, y_chunks = stream_chunks(
      layer, layer.initialize_carry((B, D)), x, valid, 3
  )
  close(y_chunks, y)
  close(carry, final)


@pytest.mark.parametrize('split_gates', [None, True, False])
def test_step_layout_is_the_backends_step_choice_unless_set(split_gates):
  default = Layout.default()
  layer = enx.RNN(enx.EleAttGRUCell(D, H, rngs=nnx.Rngs(0)))
  model = enx.StackedRNNClassifier(
      D, C, hidden_sizes=HIDDEN, split_gates=split_gates, rngs=nnx.Rngs(0)
  )
  step_split = default.step_split_gates if split_gates is None else split_gates
  loop_split = default.split_gates if split_gates is None else split_gates
  for layer in (model.layer_0, model.layer_1):
    assert layer.step_layout.split_gates is step_split
    assert layer.layout.split_gates is loop_split
  # The linen layer chooses the same way.
  linen = eleatt_jax.RNN(eleatt_jax.EleAttGRUCell(H), split_gates=split_gates)
  assert linen.step_layout == model.layer_0.step_layout


@pytest.mark.slow
def test_step_logits_do_not_depend_on_the_layout():
  split, _, _ = nnx_and_linen('eleatt_gru', 'mean', split_gates=True)
  fused, _, _ = nnx_and_linen('eleatt_gru', 'mean', split_gates=False)
  x, valid = padded_inputs()
  results = []
  for model in (split, fused):
    carry = model.initialize_carry(B)
    for t in range(3):
      carry, logits_t, _ = model.step(carry, x[:, t], valid[:, t])
    results.append((carry, logits_t))
  close(*results)


# The errors come before any parameter is read: abstract modules
# (nnx.eval_shape) serve, with nothing initialised or compiled.


def test_bidirectional_and_reverse_cannot_stream():
  model = nnx.eval_shape(
      lambda: enx.StackedRNNClassifier(
          D, C, hidden_sizes=(H,), bidirectional=True, rngs=nnx.Rngs(0)
      )
  )
  x, _ = padded_inputs()
  message = 'StackedRNNClassifier.{}: a bidirectional model .* cannot stream'
  with pytest.raises(ValueError, match=message.format('initialize_carry')):
    model.initialize_carry(B)
  with pytest.raises(ValueError, match=message.format('step')):
    model.step({}, x[:, 0])
  with pytest.raises(ValueError, match=message.format('chunk')):
    model.chunk({}, x)
  layer = nnx.eval_shape(
      lambda: enx.RNN(enx.EleAttGRUCell(D, H, rngs=nnx.Rngs(0)), reverse=True)
  )
  with pytest.raises(ValueError, match='reverse=True layer .* cannot stream'):
    layer.step(layer.initialize_carry((B, D)), x[:, 0])
  with pytest.raises(ValueError, match=r'RNN\.chunk: a reverse=True layer'):
    layer.chunk(layer.initialize_carry((B, D)), x)


def test_bad_carry_or_shapes_raise():
  model = nnx.eval_shape(
      lambda: enx.StackedRNNClassifier(
          D, C, hidden_sizes=HIDDEN, rngs=nnx.Rngs(0)
      )
  )
  x, _ = padded_inputs()
  with pytest.raises(ValueError, match=r"keys \['count', 'layers', 'sum'\]"):
    model.step({'layers': ()}, x[:, 0])
  with pytest.raises(ValueError, match=r'carry is for batch \(2,\)'):
    model.step(model.initialize_carry(2), x[:, 0])
  with pytest.raises(ValueError, match=r'valid must have the shape \(3, 2\)'):
    model.chunk(model.initialize_carry(B), x[:, :2], jnp.ones((B, 3), bool))
  layer = model.layer_0
  with pytest.raises(ValueError, match='initial_carry of EleAttGRUCell'):
    layer.step(layer.initialize_carry((B + 1, D)), x[:, 0])
  with pytest.raises(ValueError, match=r'RNN\.chunk: valid must have'):
    layer.chunk(layer.initialize_carry((B, D)), x, jnp.ones((B, 2), bool))
