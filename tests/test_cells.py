"""Tests of the fused EleAtt cells and of the EleAtt(cell) wrapper.

The numerical references are the NumPy recurrences in ``reference.py``, written
from the equations; parameters are taken out of the variables dict by their
documented layout. Biases and the initial carry are random (not the zeros of the
default initializers), so every parameter and the h_{t-1} path are exercised.
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
from eleatt_jax import (EleAtt, EleAttGRUCell, EleAttLSTMCell, EleAttSimpleCell)

B, T, D, H = 2, 4, 3, 5
RTOL, ATOL = 1e-5, 1e-6
random_bias = jax.nn.initializers.normal(0.5)

# name -> (cell class, use_gate, NumPy weights from the fused layout, NumPy step)
FUSED = {
    'eleatt_gru': (
        EleAttGRUCell,
        True,
        reference.fused_gru_weights,
        reference.gru_step,
    ),
    'gru': (
        EleAttGRUCell,
        False,
        reference.fused_gru_weights,
        reference.gru_step,
    ),
    'eleatt_lstm': (
        EleAttLSTMCell,
        True,
        reference.fused_lstm_weights,
        reference.lstm_step,
    ),
    'lstm': (
        EleAttLSTMCell,
        False,
        reference.fused_lstm_weights,
        reference.lstm_step,
    ),
    'eleatt_rnn': (
        EleAttSimpleCell,
        True,
        reference.fused_simple_weights,
        reference.simple_step,
    ),
    'rnn': (
        EleAttSimpleCell,
        False,
        reference.fused_simple_weights,
        reference.simple_step,
    ),
}

# Flax cell -> (NumPy weights from its per-gate Dense layers, NumPy step)
FLAX = {
    'GRUCell': (nn.GRUCell, reference.flax_gru_weights, reference.gru_step),
    'LSTMCell': (nn.LSTMCell, reference.flax_lstm_weights, reference.lstm_step),
    'OptimizedLSTMCell': (
        nn.OptimizedLSTMCell,
        reference.flax_lstm_weights,
        reference.lstm_step,
    ),
    'SimpleCell': (
        nn.SimpleCell,
        reference.flax_simple_weights,
        reference.simple_step,
    ),
}


def fused_cell(name, **kwargs):
  cls, use_gate, _, _ = FUSED[name]
  return cls(H, use_gate=use_gate, **kwargs)


def random_carry(cell, key, batch=B):
  """A non-zero initial carry with the cell's own structure."""
  carry = cell.initialize_carry(jax.random.key(0), (batch, D))
  leaves, treedef = jax.tree_util.tree_flatten(carry)
  keys = jax.random.split(key, len(leaves))
  return jax.tree_util.tree_unflatten(
      treedef,
      [0.5 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)],
  )


def sequence(key=jax.random.key(7)):
  return jax.random.normal(key, (B, T, D))


def to_numpy_carry(carry):
  return (
      tuple(np.asarray(c) for c in carry)
      if isinstance(carry, tuple)
      else np.asarray(carry)
  )


def assert_steps_match(
    cell, variables, carry, x_BTD, step, weights, gate_params
):
  """Runs ``cell`` step by step and compares every step with NumPy."""
  apply = jax.jit(functools.partial(cell.apply, mutable='intermediates'))
  np_carry = to_numpy_carry(carry)
  for t in range(x_BTD.shape[1]):
    (carry, y), state = apply(variables, carry, x_BTD[:, t])
    x_t = np.asarray(x_BTD[:, t], np.float64)
    if gate_params is not None:
      a = reference.gate(x_t, reference.hidden_of(np_carry), gate_params)
      (sown,) = state['intermediates']['attention']
      np.testing.assert_allclose(
          sown, a, rtol=RTOL, atol=ATOL, err_msg=f'attention, step {t}'
      )
      x_t = a * x_t
    else:
      assert 'intermediates' not in state
    np_carry, np_y = step(weights, np_carry, x_t)
    np.testing.assert_allclose(
        y, np_y, rtol=RTOL, atol=ATOL, err_msg=f'output, step {t}'
    )
    chex.assert_trees_all_close(carry, np_carry, rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_equal_shapes_and_dtypes(
        carry, cell.initialize_carry(jax.random.key(0), (B, D))
    )


@pytest.mark.parametrize('name', list(FUSED))
def test_fused_cell_matches_numpy_step_by_step(name):
  """Each fused cell, gated or not, follows its equations at every step."""
  _, use_gate, weights_fn, step = FUSED[name]
  cell = fused_cell(name, bias_init=random_bias)
  carry = random_carry(cell, jax.random.key(3))
  variables = cell.init(jax.random.key(0), carry, sequence()[:, 0])
  params = variables['params']
  assert ('gate' in params) == use_gate
  assert_steps_match(
      cell,
      variables,
      carry,
      sequence(),
      step,
      weights_fn(params),
      reference.f64(params['gate']) if use_gate else None,
  )


@pytest.mark.parametrize('name', list(FLAX))
def test_wrapped_flax_cell_matches_numpy_step_by_step(name):
  """EleAtt(flax cell) gates the input with h_{t-1} read from the cell's carry."""
  cls, weights_fn, step = FLAX[name]
  cell = EleAtt(cls(H, bias_init=random_bias), bias_init=random_bias)
  carry = random_carry(cell, jax.random.key(3))
  variables = cell.init(jax.random.key(0), carry, sequence()[:, 0])
  params = variables['params']
  assert sorted(params) == ['cell', 'gate']
  assert_steps_match(
      cell,
      variables,
      carry,
      sequence(),
      step,
      weights_fn(params['cell']),
      reference.f64(params['gate']),
  )


@pytest.mark.parametrize(
    'cls',
    [nn.GRUCell, nn.LSTMCell, nn.OptimizedLSTMCell, nn.SimpleCell, nn.MGUCell],
)
def test_wrapper_is_gate_then_unchanged_cell(cls):
  """EleAtt(cell)(carry, x) == cell(carry, a * x), the cell's own parameters."""
  bias_kwargs = (
      {'forget_bias_init': random_bias, 'activation_bias_init': random_bias}
      if cls is nn.MGUCell
      else {'bias_init': random_bias}
  )
  inner = cls(H, **bias_kwargs)
  cell = EleAtt(inner, bias_init=random_bias)
  carry = random_carry(cell, jax.random.key(3))
  x = sequence()[:, 0]
  variables = cell.init(jax.random.key(0), carry, x)
  new_carry, y = cell.apply(variables, carry, x)
  h = carry[1] if isinstance(carry, tuple) else carry
  a = reference.gate(
      np.asarray(x, np.float64),
      np.asarray(h, np.float64),
      reference.f64(variables['params']['gate']),
  )
  expected_carry, expected_y = inner.apply(
      {'params': variables['params']['cell']},
      carry,
      jnp.asarray(a * np.asarray(x, np.float64), jnp.float32),
  )
  np.testing.assert_allclose(y, expected_y, rtol=RTOL, atol=ATOL)
  chex.assert_trees_all_close(new_carry, expected_carry, rtol=RTOL, atol=ATOL)


# EleAtt(flax cell) and the fused cell with the parameters mapped.


def gru_from_flax(p):
  cat = lambda names, leaf: jnp.concatenate([p[n][leaf] for n in names], -1)
  return {
      'input_kernel': cat(['ir', 'iz', 'in'], 'kernel'),
      'bias': cat(['ir', 'iz', 'in'], 'bias'),
      'recurrent_kernel': cat(['hr', 'hz', 'hn'], 'kernel'),
      'recurrent_bias': p['hn']['bias'],
  }


def lstm_from_flax(p):
  cat = lambda names, leaf: jnp.concatenate([p[n][leaf] for n in names], -1)
  return {
      'input_kernel': cat(['ii', 'if', 'ig', 'io'], 'kernel'),
      'recurrent_kernel': cat(['hi', 'hf', 'hg', 'ho'], 'kernel'),
      'bias': cat(['hi', 'hf', 'hg', 'ho'], 'bias'),
  }


def simple_from_flax(p):
  return {
      'input_kernel': p['i']['kernel'],
      'bias': p['i']['bias'],
      'recurrent_kernel': p['h']['kernel'],
  }


@pytest.mark.parametrize(
    'flax_cls, fused_cls, mapping',
    [
        (nn.GRUCell, EleAttGRUCell, gru_from_flax),
        (nn.LSTMCell, EleAttLSTMCell, lstm_from_flax),
        (nn.SimpleCell, EleAttSimpleCell, simple_from_flax),
    ],
    ids=['gru', 'lstm', 'simple'],
)
def test_wrapped_flax_cell_equals_fused_cell_with_mapped_params(
    flax_cls, fused_cls, mapping
):
  """EleAtt(nn.XCell) and EleAttXCell compute the same sequence."""
  x = sequence()
  wrapped = nn.RNN(
      EleAtt(flax_cls(H, bias_init=random_bias), bias_init=random_bias),
      return_carry=True,
  )
  variables = wrapped.init(jax.random.key(0), x)
  params = variables['params']['cell']
  fused_params = {'gate': params['gate'], **mapping(params['cell'])}
  fused = nn.RNN(fused_cls(H), return_carry=True)
  # The mapped tree is exactly the fused cell's own tree.
  chex.assert_trees_all_equal_shapes_and_dtypes(
      fused.init(jax.random.key(0), x)['params']['cell'], fused_params
  )
  expected = wrapped.apply(variables, x)
  got = fused.apply({'params': {'cell': fused_params}}, x)
  chex.assert_trees_all_close(got, expected, rtol=RTOL, atol=ATOL)


# Parameter trees, pinned.

GATE_TREE = {'input_kernel': (D, D), 'recurrent_kernel': (H, D), 'bias': (D,)}
PARAM_TREES = {
    'eleatt_gru': {
        'gate': GATE_TREE,
        'input_kernel': (D, 3 * H),
        'recurrent_kernel': (H, 3 * H),
        'bias': (3 * H,),
        'recurrent_bias': (H,),
    },
    'gru': {
        'input_kernel': (D, 3 * H),
        'recurrent_kernel': (H, 3 * H),
        'bias': (3 * H,),
        'recurrent_bias': (H,),
    },
    'eleatt_lstm': {
        'gate': GATE_TREE,
        'input_kernel': (D, 4 * H),
        'recurrent_kernel': (H, 4 * H),
        'bias': (4 * H,),
    },
    'lstm': {
        'input_kernel': (D, 4 * H),
        'recurrent_kernel': (H, 4 * H),
        'bias': (4 * H,),
    },
    'eleatt_rnn': {
        'gate': GATE_TREE,
        'input_kernel': (D, H),
        'recurrent_kernel': (H, H),
        'bias': (H,),
    },
    'rnn': {'input_kernel': (D, H), 'recurrent_kernel': (H, H), 'bias': (H,)},
}


def param_shapes(cell):
  x = jnp.zeros((B, D))
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  variables = jax.eval_shape(cell.init, jax.random.key(0), carry, x)
  return jax.tree_util.tree_map(lambda s: (s.shape, s.dtype), variables)


@pytest.mark.parametrize('name', list(FUSED))
def test_fused_param_tree_pinned(name):
  """The fused cells' parameter names and shapes (all float32) are as documented."""
  expected = jax.tree_util.tree_map(
      lambda s: (s, jnp.dtype(jnp.float32)),
      PARAM_TREES[name],
      is_leaf=lambda s: isinstance(s, tuple),
  )
  assert param_shapes(fused_cell(name)) == {'params': expected}


def test_wrapped_gru_param_tree_pinned():
  """EleAtt(nn.GRUCell): the gate under 'gate', Flax's own tree under 'cell'."""
  f32 = jnp.dtype(jnp.float32)
  dense = lambda i, o: {'kernel': ((i, o), f32), 'bias': ((o,), f32)}
  assert param_shapes(EleAtt(nn.GRUCell(H))) == {
      'params': {
          'gate': {
              'input_kernel': ((D, D), f32),
              'recurrent_kernel': ((H, D), f32),
              'bias': ((D,), f32),
          },
          'cell': {
              'ir': dense(D, H),
              'iz': dense(D, H),
              'in': dense(D, H),
              'hr': {'kernel': ((H, H), f32)},
              'hz': {'kernel': ((H, H), f32)},
              'hn': dense(H, H),
          },
      }
  }


@pytest.mark.parametrize('name', ['eleatt_gru', 'eleatt_lstm'])
def test_recurrent_kernel_orthogonal_per_gate(name):
  """Each gate's [H, H] block of the recurrent kernel is orthogonal on its own."""
  cell = fused_cell(name)
  x = jnp.zeros((B, D))
  params = cell.init(
      jax.random.key(0), cell.initialize_carry(jax.random.key(0), x.shape), x
  )['params']
  blocks = jnp.split(params['recurrent_kernel'], cell.num_blocks, axis=-1)
  for block in blocks:
    np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-5)
  # Blocks are independent draws, not copies.
  assert not np.allclose(blocks[0], blocks[1])


@pytest.mark.parametrize('name', list(FUSED))
def test_initialize_carry(name):
  """Carries are zeros of [*batch, H] in param_dtype; (c, h) for the LSTM."""
  cell = fused_cell(name)
  carry = cell.initialize_carry(jax.random.key(0), (2, 3, D))
  leaves = carry if isinstance(carry, tuple) else (carry,)
  assert len(leaves) == (2 if 'lstm' in name else 1)
  for leaf in leaves:
    chex.assert_shape(leaf, (2, 3, H))
    chex.assert_type(leaf, jnp.float32)
    assert not np.any(leaf)


# A user's own cell with a carry the wrapper cannot read without help.


class DictCarryCell(nn.RNNCellBase):
  """sRNN whose carry is {'h': h, 'steps': count}."""

  features: int

  @nn.compact
  def __call__(self, carry, x):
    h = jnp.tanh(
        nn.Dense(self.features, name='i', bias_init=random_bias)(x)
        + nn.Dense(self.features, use_bias=False, name='h')(carry['h'])
    )
    return {'h': h, 'steps': carry['steps'] + 1.0}, h

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    batch = tuple(input_shape[:-1])
    return {
        'h': jnp.zeros(batch + (self.features,)),
        'steps': jnp.zeros(batch + (1,)),
    }

  @property
  def num_feature_axes(self):
    return 1


class TripleCarryCell(nn.RNNCellBase):
  """sRNN whose carry is (h, running sum of h, steps): h is first, not last."""

  features: int

  @nn.compact
  def __call__(self, carry, x):
    h, total, steps = carry
    h = jnp.tanh(
        nn.Dense(self.features, name='i', bias_init=random_bias)(x)
        + nn.Dense(self.features, use_bias=False, name='h')(h)
    )
    return (h, total + h, steps + 1.0), h

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    batch = tuple(input_shape[:-1])
    return (
        jnp.zeros(batch + (self.features,)),
        jnp.zeros(batch + (self.features,)),
        jnp.zeros(batch + (1,)),
    )

  @property
  def num_feature_axes(self):
    return 1


CUSTOM = {
    'dict': (
        DictCarryCell,
        lambda carry: carry['h'],
        lambda carry: (carry['h'], carry['steps']),
    ),
    'triple': (
        TripleCarryCell,
        lambda carry: carry[0],
        lambda carry: (carry[0], carry[2]),
    ),
}


@pytest.mark.parametrize('kind', list(CUSTOM))
def test_custom_carry_cell_with_hidden_fn(kind):
  """A user's cell with its own carry runs gated under nn.RNN and eleatt_jax.RNN."""
  from eleatt_jax import RNN  # pylint: disable=g-import-not-at-top

  cls, hidden_fn, h_and_steps = CUSTOM[kind]
  cell = EleAtt(cls(H), hidden_fn=hidden_fn, bias_init=random_bias)
  x = sequence()
  lengths = jnp.array([T, 2])
  variables = nn.RNN(cell).init(jax.random.key(0), x)
  params = variables['params']['cell']
  np_carry, np_y, _ = reference.run(
      reference.simple_step,
      reference.flax_simple_weights(params['cell']),
      reference.f64(params['gate']),
      x,
      np.zeros((B, H)),
      lengths,
  )
  for layer in (nn.RNN(cell, return_carry=True), RNN(cell, return_carry=True)):
    carry, y = layer.apply(variables, x, seq_lengths=lengths)
    h, steps = h_and_steps(carry)
    # Past the end Flax's nn.RNN leaves outputs unmasked: compare valid steps.
    for b, length in enumerate(lengths):
      np.testing.assert_allclose(
          y[b, :length], np_y[b, :length], rtol=RTOL, atol=ATOL
      )
    np.testing.assert_allclose(h, np_carry, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(steps[:, 0], lengths)


@pytest.mark.parametrize('kind', list(CUSTOM))
def test_custom_carry_without_hidden_fn_raises(kind):
  """Without hidden_fn a carry that is not h or (c, h) is a clear ValueError."""
  cell = EleAtt(CUSTOM[kind][0](H))
  x = sequence()[:, 0]
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  with pytest.raises(ValueError, match='cannot find h_{t-1}.*hidden_fn'):
    cell.init(jax.random.key(0), carry, x)


# Gradients.


GRAD_CELLS = {
    **{name: functools.partial(fused_cell, name) for name in FUSED},
    'EleAtt(GRUCell)': lambda **kw: EleAtt(nn.GRUCell(H, **kw), **kw),
    'EleAtt(LSTMCell)': lambda **kw: EleAtt(nn.LSTMCell(H, **kw), **kw),
}


@pytest.mark.parametrize(
    'name',
    slow_except(
        list(GRAD_CELLS),
        ('eleatt_gru', 'eleatt_lstm', 'eleatt_rnn', 'EleAtt(LSTMCell)'),
    ),
)
def test_check_grads(name):
  """Autodiff of one step w.r.t. params, carry and input matches finite differences."""
  make_cell = GRAD_CELLS[name]
  with jax_compat.enable_x64(True):
    cell = make_cell(param_dtype=jnp.float64, bias_init=random_bias)
    x = jax.random.normal(jax.random.key(1), (B, D), jnp.float64)
    carry = jax.tree_util.tree_map(
        lambda c: c.astype(jnp.float64), random_carry(cell, jax.random.key(2))
    )
    params = cell.init(jax.random.key(0), carry, x)['params']
    f = jax.jit(lambda p, c, x: cell.apply({'params': p}, c, x))
    check_grads(f, (params, carry, x), order=1, modes=('rev',))


# Bad input.


@pytest.mark.parametrize(
    'make_cell, match',
    [
        (
            lambda: EleAttGRUCell(H),
            r"'input_kernel' has shape \(3, 15\).*\(4, 15\)",
        ),
        (
            lambda: EleAttLSTMCell(H, use_gate=False),
            r"'input_kernel' has shape \(3, 20\).*\(4, 20\)",
        ),
        (
            lambda: EleAttSimpleCell(H),
            r"'input_kernel' has shape \(3, 5\).*\(4, 5\)",
        ),
        (
            lambda: EleAtt(nn.GRUCell(H)),
            r"EleAttG 'gate'.*'input_kernel' has shape \(3, 3\).*\(4, 4\)",
        ),
    ],
    ids=['eleatt_gru', 'lstm', 'eleatt_rnn', 'EleAtt(GRUCell)'],
)
def test_feature_size_mismatch_raises(make_cell, match):
  """Parameters made for D=3 applied to D=4 inputs: a ValueError naming both."""
  cell = make_cell()
  carry = cell.initialize_carry(jax.random.key(0), (B, D))
  variables = cell.init(jax.random.key(0), carry, jnp.ones((B, D)))
  with pytest.raises(ValueError, match=match):
    cell.apply(variables, carry, jnp.ones((B, D + 1)))


@pytest.mark.parametrize(
    'make_cell',
    [
        lambda: EleAttGRUCell(H),
        lambda: EleAttLSTMCell(H),
        lambda: EleAttSimpleCell(H, use_gate=False),
        lambda: EleAtt(nn.GRUCell(H)),
    ],
)
def test_integer_inputs_raise(make_cell):
  """Integer inputs are a ValueError that says to cast, not a silent promotion."""
  cell = make_cell()
  carry = cell.initialize_carry(jax.random.key(0), (B, D))
  with pytest.raises(
      ValueError, match='expected floating-point inputs, got dtype int32'
  ):
    cell.init(jax.random.key(0), carry, jnp.ones((B, D), jnp.int32))


def test_scalar_input_raises():
  """A fused cell needs at least a feature axis."""
  cell = EleAttGRUCell(H)
  with pytest.raises(
      ValueError, match=r'expects inputs \[\.\.\., D\], got a ' 'scalar'
  ):
    cell.init(jax.random.key(0), jnp.zeros((H,)), jnp.float32(1.0))


def test_wrapper_rejects_cells_with_several_feature_axes():
  """EleAtt gates a vector input; ConvLSTMCell's [..., W, C] input is refused."""
  cell = EleAtt(nn.ConvLSTMCell(H, kernel_size=(3,)))
  x = jnp.ones((B, 6, D))
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  with pytest.raises(ValueError, match='one feature axis; ConvLSTMCell has 2'):
    cell.init(jax.random.key(0), carry, x)
