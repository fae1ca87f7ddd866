"""Tests of the sequence layer eleatt_jax.RNN.

``RNN`` is checked against Flax's own ``nn.RNN`` (same parameter tree), against
a Python loop over the cell, against each sequence run alone (padding), and
against the gate's equation recomputed from its outputs (attention).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.test_util import check_grads

import jax_compat
from marks import slow_except
import reference
from eleatt_jax import (
    RNN,
    EleAtt,
    EleAttGRUCell,
    EleAttLSTMCell,
    EleAttSimpleCell,
)

B, T, D, H = 3, 5, 3, 4
LENGTHS = (5, 3, 1)
RTOL, ATOL = 1e-5, 1e-6
# bfloat16 compute with float32 parameters, on tanh/sigmoid-bounded outputs:
# measured max |bf16 - f32| is 0.5e-2..0.75e-2 at these shapes and up to 1.7e-2
# at T=50, H=32 (sRNN worst, LSTM best); the tolerance leaves a 2x margin.
BF16_ATOL = 3e-2
random_bias = jax.nn.initializers.normal(0.5)

CELLS = {
    'eleatt_gru': lambda **kw: EleAttGRUCell(H, bias_init=random_bias, **kw),
    'gru': lambda **kw: EleAttGRUCell(
        H, use_gate=False, bias_init=random_bias, **kw
    ),
    'eleatt_lstm': lambda **kw: EleAttLSTMCell(H, bias_init=random_bias, **kw),
    'lstm': lambda **kw: EleAttLSTMCell(H, use_gate=False, **kw),
    'eleatt_rnn': lambda **kw: EleAttSimpleCell(H, bias_init=random_bias, **kw),
    'rnn': lambda **kw: EleAttSimpleCell(H, use_gate=False, **kw),
    'EleAtt(GRUCell)': lambda **kw: EleAtt(
        nn.GRUCell(H, bias_init=random_bias, **kw), bias_init=random_bias, **kw
    ),
    'EleAtt(LSTMCell)': lambda **kw: EleAtt(nn.LSTMCell(H, **kw), **kw),
    'EleAtt(OptimizedLSTMCell)': lambda **kw: EleAtt(
        nn.OptimizedLSTMCell(H, **kw), **kw
    ),
    'EleAtt(SimpleCell)': lambda **kw: EleAtt(nn.SimpleCell(H, **kw), **kw),
    'EleAtt(MGUCell)': lambda **kw: EleAtt(nn.MGUCell(H, **kw), **kw),
    'GRUCell': lambda **kw: nn.GRUCell(H, bias_init=random_bias, **kw),
}


def inputs(shape=(B, T, D), key=jax.random.key(7)):
  return jax.random.normal(key, shape)


def padded_inputs():
  """x [B, T, D] with large garbage past each sequence's end."""
  x = inputs()
  valid = (jnp.arange(T)[None, :] < jnp.array(LENGTHS)[:, None])[..., None]
  return jnp.where(valid, x, 100.0 * inputs(key=jax.random.key(8)))


def init(layer, x, **kwargs):
  return layer.init(jax.random.key(0), x, **kwargs)


@functools.cache
def cell_variables(name):
  """{'params': {'cell': ...}} for CELLS[name] on D features, made once."""
  return init(nn.RNN(CELLS[name]()), jnp.zeros((1, 1, D)))


def bidirectional_variables(forward_name, backward_name):
  return {
      'params': {
          'forward_rnn': cell_variables(forward_name)['params'],
          'backward_rnn': cell_variables(backward_name)['params'],
      }
  }


def assert_valid_steps_close(y, expected, lengths, rtol=RTOL, atol=ATOL):
  """Compares [B, T, ...] outputs on each sequence's valid steps only."""
  for b, length in enumerate(lengths):
    np.testing.assert_allclose(
        y[b, :length],
        expected[b, :length],
        rtol=rtol,
        atol=atol,
        err_msg=f'sequence {b}',
    )


# Against flax.linen.RNN, one parameter tree for both.


@pytest.mark.parametrize(
    'name',
    slow_except(
        list(CELLS),
        ('eleatt_gru', 'gru', 'eleatt_lstm', 'EleAtt(GRUCell)', 'GRUCell'),
    ),
)
def test_matches_flax_rnn_with_lengths_unroll_and_carry(name):
  """Same outputs and final carry as nn.RNN (unroll=2, seq_lengths, return_carry)."""
  x, lengths = padded_inputs(), jnp.array(LENGTHS)
  ours = RNN(CELLS[name](), unroll=2, return_carry=True)
  flax_rnn = nn.RNN(CELLS[name](), unroll=2, return_carry=True)
  variables = cell_variables(name)
  # One parameter tree serves both layers.
  chex.assert_trees_all_equal_shapes_and_dtypes(
      variables, jax.eval_shape(ours.init, jax.random.key(0), x)
  )
  carry, y = ours.apply(variables, x, seq_lengths=lengths)
  flax_carry, flax_y = flax_rnn.apply(variables, x, seq_lengths=lengths)
  chex.assert_shape(y, (B, T, H))
  chex.assert_trees_all_close(carry, flax_carry, rtol=RTOL, atol=ATOL)
  assert_valid_steps_close(y, flax_y, LENGTHS)
  # Unlike nn.RNN, outputs past the end are zero.
  for b, length in enumerate(LENGTHS):
    assert not np.any(y[b, length:])


@pytest.mark.parametrize(
    'name',
    slow_except(['eleatt_gru', 'EleAtt(LSTMCell)', 'GRUCell'], ('eleatt_gru',)),
)
@pytest.mark.parametrize('layout', ['time_major', 'batch_dims', 'reverse'])
def test_matches_flax_rnn_layouts(name, layout):
  """time_major, several batch dims and reverse(+keep_order) agree with nn.RNN."""
  kwargs, shape = {}, (B, T, D)
  if layout == 'time_major':
    kwargs, shape = {'time_major': True}, (T, B, D)
  elif layout == 'batch_dims':
    shape = (2, B, T, D)
  elif layout == 'reverse':
    kwargs = {'reverse': True, 'keep_order': True}
  x = inputs(shape)
  ours, flax_rnn = RNN(CELLS[name](), **kwargs), nn.RNN(CELLS[name](), **kwargs)
  variables = cell_variables(name)
  y = ours.apply(variables, x)
  chex.assert_shape(y, shape[:-1] + (H,))
  np.testing.assert_allclose(
      y, flax_rnn.apply(variables, x), rtol=RTOL, atol=ATOL
  )


LAYOUTS = [
    {'hoist_input_projection': hoist, 'split_gates': split}
    for hoist in (False, True)
    for split in (False, True)
]


@pytest.mark.parametrize(
    'name', ['eleatt_gru', 'lstm', 'eleatt_rnn', 'EleAtt(LSTMCell)']
)
def test_every_layout_gives_the_same_outputs(name):
  """Hoisting the input-only projection or splitting the gates changes nothing."""
  x, lengths = padded_inputs(), jnp.array(LENGTHS)
  variables = cell_variables(name)
  layouts = LAYOUTS if not name.startswith('EleAtt(') else LAYOUTS[::2]
  results = [
      RNN(CELLS[name](), return_carry=True, **layout).apply(
          variables, x, seq_lengths=lengths
      )
      for layout in layouts
  ]
  for layout, result in zip(layouts[1:], results[1:]):
    chex.assert_trees_all_close(
        result, results[0], rtol=RTOL, atol=ATOL, custom_message=str(layout)
    )


# Against a Python loop over the cell.


@pytest.mark.parametrize(
    'name', ['eleatt_gru', 'eleatt_lstm', 'rnn', 'EleAtt(LSTMCell)', 'GRUCell']
)
def test_matches_python_step_loop(name):
  """RNN == for t: carry, y_t = cell(carry, x_t), from a given initial carry."""
  x = inputs()
  cell = CELLS[name]()
  carry0 = jax.tree_util.tree_map(
      lambda c: jax.random.normal(jax.random.key(3), c.shape),
      cell.initialize_carry(jax.random.key(0), (B, D)),
  )
  layer = RNN(cell, return_carry=True)
  variables = cell_variables(name)
  carry, y = layer.apply(variables, x, initial_carry=carry0)
  step = jax.jit(
      functools.partial(cell.apply, {'params': variables['params']['cell']})
  )
  loop_carry, loop_y = carry0, []
  for t in range(T):
    loop_carry, y_t = step(loop_carry, x[:, t])
    loop_y.append(y_t)
  np.testing.assert_allclose(y, jnp.stack(loop_y, 1), rtol=RTOL, atol=ATOL)
  chex.assert_trees_all_close(carry, loop_carry, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('name', ['eleatt_gru', 'lstm', 'eleatt_rnn'])
def test_matches_numpy_reference_with_lengths(name):
  """The fused path (hoisted gate projection, masking) follows the equations."""
  weights_fn, step = {
      'eleatt_gru': (reference.fused_gru_weights, reference.gru_step),
      'lstm': (reference.fused_lstm_weights, reference.lstm_step),
      'eleatt_rnn': (reference.fused_simple_weights, reference.simple_step),
  }[name]
  x, lengths = padded_inputs(), jnp.array(LENGTHS)
  layer = RNN(CELLS[name](), return_carry=True)
  variables = cell_variables(name)
  params = variables['params']['cell']
  carry, y = layer.apply(variables, x, seq_lengths=lengths)
  zeros = np.zeros((B, H))
  np_carry, np_y, _ = reference.run(
      step,
      weights_fn(params),
      reference.f64(params['gate']) if 'gate' in params else None,
      x,
      (zeros, zeros) if 'lstm' in name else zeros,
      lengths,
  )
  np.testing.assert_allclose(y, np_y, rtol=RTOL, atol=ATOL)
  chex.assert_trees_all_close(carry, np_carry, rtol=RTOL, atol=ATOL)


# Padding: a padded batch == each sequence alone.

PADDING_CASES = [
    *[
        (name, 'forward')
        for name in ('eleatt_gru', 'eleatt_lstm', 'EleAtt(GRUCell)', 'GRUCell')
    ],
    *[
        (name, direction)
        for name in ('eleatt_lstm', 'EleAtt(GRUCell)')
        for direction in ('reverse', 'reverse_keep_order')
    ],
]


@pytest.mark.parametrize(
    'name, direction',
    slow_except(
        PADDING_CASES,
        (
            ('eleatt_gru', 'forward'),
            ('GRUCell', 'forward'),
            ('eleatt_lstm', 'reverse'),
            ('EleAtt(GRUCell)', 'reverse_keep_order'),
        ),
    ),
)
def test_padded_batch_equals_each_sequence_alone(name, direction):
  """Outputs (zero past the end) and final carry do not depend on padding."""
  kwargs = {
      'forward': {},
      'reverse': {'reverse': True},
      'reverse_keep_order': {'reverse': True, 'keep_order': True},
  }
  layer = RNN(CELLS[name](), return_carry=True, **kwargs[direction])
  x = padded_inputs()
  variables = cell_variables(name)
  carry, y = layer.apply(variables, x, seq_lengths=jnp.array(LENGTHS))
  for b, length in enumerate(LENGTHS):
    alone_carry, alone_y = layer.apply(variables, x[b : b + 1, :length])
    np.testing.assert_allclose(y[b, :length], alone_y[0], rtol=RTOL, atol=ATOL)
    assert not np.any(y[b, length:])
    chex.assert_trees_all_close(
        jax.tree_util.tree_map(lambda c: c[b], carry),
        jax.tree_util.tree_map(lambda c: c[0], alone_carry),
        rtol=RTOL,
        atol=ATOL,
    )


@pytest.mark.parametrize(
    'forward_name, backward_name',
    [('eleatt_gru', 'eleatt_lstm'), ('EleAtt(LSTMCell)', 'eleatt_rnn')],
)
def test_padded_bidirectional_equals_each_sequence_alone(
    forward_name, backward_name
):
  """nn.Bidirectional(RNN, RNN): padding changes neither half nor its carry."""
  layer = nn.Bidirectional(
      RNN(CELLS[forward_name]()), RNN(CELLS[backward_name]()), return_carry=True
  )
  x = padded_inputs()
  variables = bidirectional_variables(forward_name, backward_name)
  assert sorted(variables['params']) == ['backward_rnn', 'forward_rnn']
  carry, y = layer.apply(variables, x, seq_lengths=jnp.array(LENGTHS))
  chex.assert_shape(y, (B, T, 2 * H))
  for b, length in enumerate(LENGTHS):
    alone_carry, alone_y = layer.apply(variables, x[b : b + 1, :length])
    np.testing.assert_allclose(y[b, :length], alone_y[0], rtol=RTOL, atol=ATOL)
    assert not np.any(y[b, length:])
    chex.assert_trees_all_close(
        jax.tree_util.tree_map(lambda c: c[b], carry),
        jax.tree_util.tree_map(lambda c: c[0], alone_carry),
        rtol=RTOL,
        atol=ATOL,
    )


def test_bidirectional_halves_are_forward_and_reversed_layers():
  """Each half of Bidirectional equals its RNN run forwards / reversed in order."""
  x, lengths = padded_inputs(), jnp.array(LENGTHS)
  layer = nn.Bidirectional(RNN(CELLS['eleatt_gru']()), RNN(CELLS['gru']()))
  variables = bidirectional_variables('eleatt_gru', 'gru')
  y = layer.apply(variables, x, seq_lengths=lengths)
  params = variables['params']
  y_f = RNN(CELLS['eleatt_gru']()).apply(
      {'params': params['forward_rnn']}, x, seq_lengths=lengths
  )
  y_b = RNN(CELLS['gru'](), reverse=True, keep_order=True).apply(
      {'params': params['backward_rnn']}, x, seq_lengths=lengths
  )
  np.testing.assert_allclose(
      y, jnp.concatenate([y_f, y_b], -1), rtol=RTOL, atol=ATOL
  )
  assert not np.allclose(y_f, y_b)


# Attention.


def recomputed_attention(gate_params, x_BTD, y_BTH, reverse=False):
  """sigmoid(x_t W_xa + h_{t-1} W_ha + b_a) with h_{t-1} read off the outputs."""
  y = np.asarray(y_BTH, np.float64)
  zeros = np.zeros_like(y[:, :1])
  h_prev = (
      np.concatenate([y[:, 1:], zeros], 1)
      if reverse
      else np.concatenate([zeros, y[:, :-1]], 1)
  )
  return reference.gate(
      np.asarray(x_BTD, np.float64), h_prev, reference.f64(gate_params)
  )


@pytest.mark.parametrize(
    'name',
    [
        'eleatt_gru',
        'eleatt_lstm',
        'eleatt_rnn',
        'EleAtt(GRUCell)',
        'EleAtt(LSTMCell)',
    ],
)
def test_sown_attention_is_the_gate_of_the_outputs(name):
  """intermediates/cell/attention == (a [B, T, D],), the same as under nn.RNN."""
  x = inputs()
  layer = RNN(CELLS[name]())
  variables = cell_variables(name)
  y, state = layer.apply(variables, x, mutable='intermediates')
  (attention,) = state['intermediates']['cell']['attention']
  chex.assert_shape(attention, (B, T, D))
  p = variables['params']['cell']['gate']
  np.testing.assert_allclose(
      attention, recomputed_attention(p, x, y), rtol=RTOL, atol=ATOL
  )
  _, flax_state = nn.RNN(
      CELLS[name](), variable_axes={'intermediates': 1}
  ).apply(variables, x, mutable='intermediates')
  chex.assert_trees_all_close(flax_state, state, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('layout', ['time_major', 'batch_dims', 'reverse'])
def test_sown_attention_follows_the_input_layout(layout):
  """The attention has the inputs' shape and order in every layout."""
  shape = {'time_major': (T, B, D), 'batch_dims': (2, B, T, D)}.get(
      layout, (B, T, D)
  )
  layer = RNN(
      CELLS['eleatt_gru'](),
      time_major=layout == 'time_major',
      reverse=layout == 'reverse',
      keep_order=True,
  )
  x = inputs(shape)
  variables = cell_variables('eleatt_gru')
  y, state = layer.apply(variables, x, mutable='intermediates')
  (attention,) = state['intermediates']['cell']['attention']
  chex.assert_shape(attention, shape)
  to_btd = {
      'time_major': lambda a: jnp.swapaxes(a, 0, 1),
      'batch_dims': lambda a: a.reshape((-1,) + a.shape[2:]),
  }.get(layout, lambda a: a)
  np.testing.assert_allclose(
      to_btd(attention),
      recomputed_attention(
          variables['params']['cell']['gate'],
          to_btd(x),
          to_btd(y),
          reverse=layout == 'reverse',
      ),
      rtol=RTOL,
      atol=ATOL,
  )


def test_no_attention_without_gate():
  """Ungated cells sow nothing."""
  x = inputs()
  layer = RNN(CELLS['gru']())
  _, state = layer.apply(cell_variables('gru'), x, mutable='intermediates')
  assert not state


# Gradients.


@pytest.mark.parametrize(
    'name, layer_kwargs, modes',
    [
        ('eleatt_gru', {'fused_backward': True}, ('rev',)),
        ('eleatt_lstm', {'fused_backward': True}, ('rev',)),
        (
            'lstm',
            {'fused_backward': True, 'hoist_input_projection': True},
            ('rev',),
        ),
        ('eleatt_gru', {'fused_backward': False}, ('fwd', 'rev')),
        ('EleAtt(GRUCell)', {}, ('fwd', 'rev')),
    ],
    ids=[
        'eleatt_gru',
        'eleatt_lstm',
        'lstm_hoisted',
        'eleatt_gru_autodiff',
        'EleAtt(GRUCell)',
    ],
)
def test_check_grads_with_lengths(name, layer_kwargs, modes):
  """Gradients through the masked sequence match finite differences (float64).

  ``fused_backward=True`` is a custom VJP (reverse mode only); autodiff of the
  scan (``fused_backward=False``, wrapped cells) is checked in forward mode too.
  """
  with jax_compat.enable_x64(True):
    layer = RNN(
        CELLS[name](param_dtype=jnp.float64), return_carry=True, **layer_kwargs
    )
    x = padded_inputs().astype(jnp.float64) / 10.0
    lengths = jnp.array(LENGTHS)
    params = init(layer, x)['params']
    carry0 = jax.tree_util.tree_map(
        lambda c: jax.random.normal(jax.random.key(3), c.shape, jnp.float64),
        layer.cell.initialize_carry(jax.random.key(0), (B, D)),
    )
    f = jax.jit(
        lambda p, x, c: layer.apply(
            {'params': p}, x, initial_carry=c, seq_lengths=lengths
        )
    )
    check_grads(f, (params, x, carry0), order=1, modes=modes)


@pytest.mark.parametrize(
    'name',
    [
        'eleatt_gru',
        'eleatt_lstm',
        'eleatt_rnn',
        'EleAtt(GRUCell)',
        'EleAtt(LSTMCell)',
    ],
)
def test_gradient_step_changes_every_parameter(name):
  """One SGD step changes every parameter; no entry has a zero gradient."""
  x, lengths = padded_inputs(), jnp.array(LENGTHS)
  layer = RNN(CELLS[name]())
  params = cell_variables(name)['params']
  target = inputs((B, T, H), jax.random.key(9))

  def loss(p):
    y = layer.apply({'params': p}, x, seq_lengths=lengths)
    return jnp.sum((y - target) ** 2)

  grads = jax.jit(jax.grad(loss))(params)
  new_params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
  for (path, old), new, grad in zip(
      jax.tree_util.tree_leaves_with_path(params),
      jax.tree_util.tree_leaves(new_params),
      jax.tree_util.tree_leaves(grads),
  ):
    assert np.any(old != new), jax.tree_util.keystr(path)
    # No entry is disconnected from the loss.
    assert np.all(grad != 0), jax.tree_util.keystr(path)


# Precision.


@pytest.mark.parametrize(
    'name',
    slow_except(
        [
            'eleatt_gru',
            'gru',
            'eleatt_lstm',
            'eleatt_rnn',
            'EleAtt(GRUCell)',
            'EleAtt(LSTMCell)',
        ],
        ('eleatt_gru', 'EleAtt(LSTMCell)'),
    ),
)
@pytest.mark.parametrize('layer_cls', [RNN, nn.RNN], ids=['RNN', 'nn.RNN'])
def test_bfloat16_compute_with_float32_params(name, layer_cls):
  """dtype=bfloat16: float32 params, outputs within BF16_ATOL of float32.

  Fused cells return bfloat16 outputs (their carry stays float32); wrapped Flax
  cells return what the Flax cell returns (float32, promoted by its float32
  carry), the same under RNN and nn.RNN.
  """
  x, lengths = padded_inputs(), jnp.array(LENGTHS)
  layer16 = layer_cls(CELLS[name](dtype=jnp.bfloat16), return_carry=True)
  shapes = jax.eval_shape(layer16.init, jax.random.key(0), x)
  assert {p.dtype for p in jax.tree_util.tree_leaves(shapes)} == {
      jnp.dtype(jnp.float32)
  }
  variables = cell_variables(name)
  carry16, y16 = layer16.apply(variables, x, seq_lengths=lengths)
  _, y32 = layer_cls(CELLS[name]()).apply(
      variables, x, seq_lengths=lengths, return_carry=True
  )
  expected_dtype = jnp.float32 if name.startswith('EleAtt(') else jnp.bfloat16
  chex.assert_type(y16, expected_dtype)
  chex.assert_type(jax.tree_util.tree_leaves(carry16), jnp.float32)
  assert_valid_steps_close(
      y16.astype(jnp.float32), y32, LENGTHS, rtol=0, atol=BF16_ATOL
  )
  assert not np.array_equal(y16.astype(jnp.float32), y32)  # really bf16


# Bad input.


def test_rank_1_input_raises():
  """A single vector is not a sequence: the message names the layout."""
  layer = RNN(CELLS['eleatt_gru']())
  with pytest.raises(
      ValueError,
      match=r'rank >= 2, \[\*batch, time, features\]' r'; got shape \(3,\)',
  ):
    init(layer, jnp.ones((3,)))
  with pytest.raises(ValueError, match=r'\[time, \*batch, features\]'):
    init(RNN(CELLS['eleatt_gru'](), time_major=True), jnp.ones((3,)))


@pytest.mark.parametrize(
    'name, match',
    [
        ('eleatt_gru', r"'input_kernel' has shape \(3, 12\).*\(4, 12\)"),
        ('lstm', r"'input_kernel' has shape \(3, 16\).*\(4, 16\)"),
        (
            'EleAtt(GRUCell)',
            r"EleAttG 'gate'.*'input_kernel' has shape \(3, 3\)",
        ),
        ('GRUCell', r'parameters of GRUCell do not fit inputs with 4 features'),
    ],
    ids=['eleatt_gru', 'lstm', 'EleAtt(GRUCell)', 'GRUCell'],
)
def test_feature_size_mismatch_raises(name, match):
  """Parameters made for D=3 applied to D=4 inputs: a ValueError naming both."""
  layer = RNN(CELLS[name]())
  variables = cell_variables(name)
  with pytest.raises(ValueError, match=match):
    layer.apply(variables, inputs((B, T, D + 1)))


@pytest.mark.parametrize(
    'lengths, match',
    [
        (
            np.array([5, 5]),
            r'batch shape \(3,\) of the inputs, got shape \(2,\)',
        ),
        (np.array([[5], [5], [5]]), r'batch shape \(3,\).*got shape \(3, 1\)'),
        (
            np.array([5.0, 3.0, 1.0]),
            'seq_lengths must be integers, got dtype float',
        ),
        (np.array([5, 0, 1]), r'seq_length must be in \[1, 5\].*got 0'),
        (np.array([5, 6, 1]), r'seq_length must be in \[1, 5\].*got 6'),
    ],
    ids=['short', 'rank2', 'float', 'zero', 'beyond_T'],
)
def test_bad_seq_lengths_raise(lengths, match):
  """Wrong shape, dtype or values of seq_lengths fail before anything runs."""
  layer = RNN(CELLS['eleatt_gru']())
  variables = cell_variables('eleatt_gru')
  with pytest.raises(ValueError, match=match):
    layer.apply(variables, inputs(), seq_lengths=lengths)


def test_seq_lengths_must_match_all_batch_dims():
  """With batch dims (2, 3), lengths must be [2, 3]."""
  layer = RNN(CELLS['eleatt_gru']())
  x = inputs((2, B, T, D))
  with pytest.raises(ValueError, match=r'batch shape \(2, 3\)'):
    init(layer, x, seq_lengths=jnp.full((B,), T))


def test_fused_backward_with_split_gates_raises():
  """The custom backward works on the fused layout; asking for both is an error."""
  layer = RNN(CELLS['eleatt_gru'](), fused_backward=True, split_gates=True)
  with pytest.raises(
      ValueError, match='fused_backward=True needs split_gates=False'
  ):
    layer.apply(cell_variables('eleatt_gru'), inputs())


def test_integer_inputs_raise():
  """Integer inputs are a ValueError that says to cast."""
  with pytest.raises(
      ValueError, match='RNN: expected floating-point inputs, got dtype int32'
  ):
    init(RNN(CELLS['GRUCell']()), jnp.ones((B, T, D), jnp.int32))


def test_traced_out_of_range_lengths_raise_at_run_time():
  """With check_seq_lengths='callback', under jit the range check runs on
  device values and names seq_length (the default graph has no callback:
  tests/test_layers_reliability.py)."""
  layer = RNN(CELLS['eleatt_gru'](), check_seq_lengths='callback')
  variables = cell_variables('eleatt_gru')
  apply = jax.jit(lambda l: layer.apply(variables, inputs(), seq_lengths=l))
  apply(jnp.array(LENGTHS)).block_until_ready()  # in range: runs
  with pytest.raises(
      (ValueError, jax_compat.JaxRuntimeError),
      match=r'seq_length must be in \[1, 5\].*got 6',
  ):
    apply(jnp.array([5, 6, 1])).block_until_ready()
