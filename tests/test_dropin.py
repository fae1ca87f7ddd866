"""eleatt_jax.RNN as a drop-in for nn.RNN: remat, variable_axes / split_rngs,
partitioned initialisers, and agreement with nn.RNN for every stock Flax cell.
"""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from eleatt_jax import (
    RNN,
    EleAtt,
    EleAttGRUCell,
    EleAttLSTMCell,
    EleAttSimpleCell,
)

B, T, D, H = 3, 7, 4, 5
LENGTHS = jnp.array([7, 4, 1])
STOCK_CELLS = {
    'GRUCell': nn.GRUCell,
    'LSTMCell': nn.LSTMCell,
    'OptimizedLSTMCell': nn.OptimizedLSTMCell,
    'SimpleCell': nn.SimpleCell,
    'MGUCell': nn.MGUCell,
}


def _x(shape=(B, T, D), seed=0):
  return jax.random.normal(jax.random.key(seed), shape)


def _valid(y, lengths=LENGTHS):
  """``y [B, T, F]`` with steps past each sequence's end zeroed."""
  mask = jnp.arange(y.shape[1])[None, :] < lengths[:, None]
  return jnp.where(mask[..., None], y, 0)


def _close(a, b, atol=1e-5):
  jax.tree_util.tree_map(
      lambda u, v: np.testing.assert_allclose(u, v, atol=atol, rtol=1e-5), a, b
  )


# --- every stock Flax cell: same numbers as nn.RNN ---------------------------


@pytest.mark.parametrize('name', sorted(STOCK_CELLS))
@pytest.mark.parametrize('reverse', [False, True])
@pytest.mark.parametrize('remat', [False, True])
@pytest.mark.slow
def test_stock_cells_agree_with_nn_rnn(name, reverse, remat):
  cell = STOCK_CELLS[name]
  x = _x()
  kw = dict(return_carry=True, reverse=reverse, keep_order=True)
  flax_cell = nn.remat(cell)(H) if remat else cell(H)
  _assert_agrees_with_nn_rnn(
      RNN(cell(H), remat=remat, **kw), nn.RNN(flax_cell, **kw), x
  )


def _assert_agrees_with_nn_rnn(ours, theirs, x):
  """Outputs at valid steps, final carries and gradients of two layers that
  return their carry, on ``theirs``' parameters."""
  variables = theirs.init(jax.random.key(1), x, seq_lengths=LENGTHS)
  carry, y = ours.apply(variables, x, seq_lengths=LENGTHS)
  carry_f, y_f = theirs.apply(variables, x, seq_lengths=LENGTHS)
  _close(y, _valid(y_f))
  _close(carry, carry_f)
  # Gradients agree too (the loss sees valid steps only).
  loss = lambda layer: lambda p: jnp.sum(
      _valid(layer.apply({'params': p}, x, seq_lengths=LENGTHS)[1]) ** 2
  )
  _close(
      jax.grad(loss(ours))(variables['params']),
      jax.grad(loss(theirs))(variables['params']),
      atol=1e-4,
  )


@pytest.mark.parametrize('name', sorted(STOCK_CELLS))
@pytest.mark.slow
def test_stock_cells_with_two_batch_dims_and_time_major(name):
  x = _x((T, 2, 3, D))
  layer = RNN(STOCK_CELLS[name](H), time_major=True)
  variables = layer.init(jax.random.key(0), x)
  _close(
      layer.apply(variables, x),
      nn.RNN(STOCK_CELLS[name](H), time_major=True).apply(variables, x),
  )


# --- variable_axes / split_rngs ---------------------------------------------


class SowingGRU(nn.GRUCell):
  """A GRU that sows its pre-tanh input norm, as a user's cell might."""

  def __call__(self, carry, inputs):
    self.sow('intermediates', 'input_norm', jnp.sum(inputs**2, axis=-1))
    return super().__call__(carry, inputs)


class DropoutGRU(nn.GRUCell):
  """A GRU with dropout on its input: needs a 'dropout' rng at every step."""

  @nn.compact
  def __call__(self, carry, inputs):
    inputs = nn.Dropout(0.5, deterministic=False)(inputs)
    return super().__call__(carry, inputs)


@pytest.mark.parametrize('batch_shape', [(B,), (2, 3)])
def test_a_sowing_cell_runs_with_variable_axes_as_under_nn_rnn(batch_shape):
  x = _x(batch_shape + (T, D))
  kw = dict(variable_axes={'intermediates': len(batch_shape)})
  variables = nn.RNN(SowingGRU(H), **kw).init(jax.random.key(0), x)
  y, state = RNN(SowingGRU(H), **kw).apply(
      variables, x, mutable='intermediates'
  )
  y_f, state_f = nn.RNN(SowingGRU(H), **kw).apply(
      variables, x, mutable='intermediates'
  )
  _close(y, y_f)
  _close(state, state_f)
  assert state['intermediates']['cell']['input_norm'][0].shape == (
      batch_shape + (T,)
  )


@pytest.mark.parametrize('remat', [False, True])
def test_a_dropout_cell_runs_with_split_rngs_as_under_nn_rnn(remat):
  x = _x()
  kw = dict(split_rngs={'params': False, 'dropout': True})
  variables = nn.RNN(DropoutGRU(H), **kw).init(jax.random.key(0), x)
  rngs = {'dropout': jax.random.key(5)}
  y = RNN(DropoutGRU(H), remat=remat, **kw).apply(variables, x, rngs=rngs)
  y_f = nn.RNN(DropoutGRU(H), **kw).apply(variables, x, rngs=rngs)
  _close(y, y_f)
  # Different masks per step (split), not one mask broadcast over time.
  y_same = RNN(
      DropoutGRU(H), split_rngs={'params': False, 'dropout': False}
  ).apply(variables, x, rngs=rngs)
  assert not np.allclose(y, y_same)


def test_eleatt_wrapper_passes_rngs_to_its_cell():
  x = _x()
  kw = dict(split_rngs={'params': False, 'dropout': True})
  cell = lambda: EleAtt(DropoutGRU(H))
  variables = nn.RNN(cell(), **kw).init(jax.random.key(0), x)
  rngs = {'dropout': jax.random.key(5)}
  _close(
      RNN(cell(), hoist_input_projection=False, **kw).apply(
          variables, x, rngs=rngs
      ),
      nn.RNN(cell(), **kw).apply(variables, x, rngs=rngs),
  )


@pytest.mark.parametrize('axis', [0, 1])
def test_fused_attention_follows_variable_axes(axis):
  x = _x()
  kw = dict(variable_axes={'intermediates': axis})
  variables = nn.RNN(EleAttGRUCell(H), **kw).init(jax.random.key(0), x)
  _, state = RNN(EleAttGRUCell(H), **kw).apply(
      variables, x, mutable='intermediates'
  )
  _, state_f = nn.RNN(EleAttGRUCell(H), **kw).apply(
      variables, x, mutable='intermediates'
  )
  _close(state, state_f)


def test_fused_cells_refuse_scanned_params():
  x = _x()
  with pytest.raises(ValueError, match='broadcast'):
    RNN(
        EleAttGRUCell(H), variable_axes={'params': 0}, variable_broadcast=False
    ).init(jax.random.key(0), x)


# --- remat -----------------------------------------------------------------

FUSED = [EleAttGRUCell, EleAttLSTMCell, EleAttSimpleCell]


def _grads(layer, variables, x):
  def loss(p):
    return jnp.sum(layer.apply({'params': p}, x, seq_lengths=LENGTHS) ** 2)

  return jax.grad(loss)(variables['params'])


@pytest.mark.parametrize('cell', FUSED, ids=lambda c: c.__name__)
@pytest.mark.parametrize('fused_backward', [False, True])
@pytest.mark.slow
def test_remat_gives_the_same_gradients(cell, fused_backward):
  x = _x()
  plain = RNN(cell(H), fused_backward=fused_backward)
  variables = plain.init(jax.random.key(0), x)
  _close(
      _grads(
          RNN(cell(H), fused_backward=fused_backward, remat=True), variables, x
      ),
      _grads(plain, variables, x),
      atol=1e-5,
  )


def _temp_bytes(layer, x):
  params = jax.eval_shape(layer.init, jax.random.key(0), x)['params']
  grad = jax.jit(
      jax.grad(lambda p, x: jnp.sum(layer.apply({'params': p}, x) ** 2))
  )
  return grad.lower(params, x).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize(
    'make',
    [
        lambda **kw: RNN(EleAttGRUCell(16), **kw),
        # The same remat path around other cells: `make test-all` only.
        pytest.param(
            lambda **kw: RNN(EleAtt(nn.GRUCell(16)), **kw),
            marks=pytest.mark.slow,
        ),
        pytest.param(
            lambda **kw: RNN(nn.GRUCell(16), **kw), marks=pytest.mark.slow
        ),
    ],
    ids=['fused', 'wrapped', 'stock'],
)
def test_remat_saves_memory(make):
  x = jnp.zeros((4, 256, 8))
  assert _temp_bytes(make(remat=True), x) < 0.6 * _temp_bytes(make(), x)


@pytest.mark.parametrize(
    'cell',
    [EleAttGRUCell, lambda h: EleAtt(nn.GRUCell(h))],
    ids=['fused', 'wrapped'],
)
@pytest.mark.slow
def test_nn_remat_of_a_cell_is_honoured(cell):
  x = jnp.zeros((4, 256, 8))
  remat_cell = (
      nn.remat(EleAttGRUCell)(16)
      if cell is EleAttGRUCell
      else EleAtt(nn.remat(nn.GRUCell)(16))
  )
  # EleAtt(nn.remat(GRUCell)) remats the inner call; nn.remat(EleAttGRUCell)
  # runs its own (rematted) __call__: both well under the plain layer.
  plain = _temp_bytes(RNN(cell(16)), x)
  assert _temp_bytes(RNN(remat_cell), x) < 0.75 * plain
  assert _temp_bytes(RNN(nn.remat(EleAtt)(nn.GRUCell(16))), x) < 0.6 * (
      _temp_bytes(RNN(EleAtt(nn.GRUCell(16))), x)
  )


LIFTED = {
    'remat_policy': lambda cls: nn.remat(
        cls, policy=jax.checkpoint_policies.dots_saveable
    ),
    'jit': nn.jit,
}


@pytest.mark.parametrize(
    'lift',
    ['remat_policy', pytest.param('jit', marks=pytest.mark.slow)],
)
@pytest.mark.parametrize(
    'make',
    [
        lambda lift: lift(EleAttGRUCell)(H),
        pytest.param(
            lambda lift: lift(EleAtt)(nn.GRUCell(H)), marks=pytest.mark.slow
        ),
    ],
    ids=['fused', 'wrapped'],
)
def test_lifted_cells_run_their_own_call_as_under_nn_rnn(lift, make):
  """A lifted cell class (nn.remat with a policy, nn.jit) is scanned through
  its transformed __call__, not bypassed: nn.RNN's numbers and gradients."""
  _assert_agrees_with_nn_rnn(
      RNN(make(LIFTED[lift]), return_carry=True),
      nn.RNN(make(LIFTED[lift]), return_carry=True),
      _x(),
  )


# --- partitioned initialisers ------------------------------------------------


@pytest.mark.parametrize(
    'cell',
    [
        EleAttGRUCell,
        # The same code path with other equations: `make test-all` only.
        pytest.param(EleAttLSTMCell, marks=pytest.mark.slow),
        pytest.param(EleAttSimpleCell, marks=pytest.mark.slow),
    ],
    ids=lambda c: c.__name__,
)
def test_partitioned_initialisers_on_a_two_device_mesh(cell):
  assert jax.device_count() >= 2, 'conftest.py sets two host devices'
  names = (None, 'model')
  partitioned = cell(
      H + 1,
      kernel_init=nn.with_partitioning(nn.initializers.lecun_normal(), names),
      recurrent_kernel_init=nn.with_partitioning(
          nn.initializers.orthogonal(), names
      ),
      bias_init=nn.with_partitioning(nn.initializers.zeros_init(), ('model',)),
  )
  layer = RNN(partitioned)
  x = _x((B, T, D + 2))  # D + 2 = H + 1 = 6: even, for the gate's [D, D]
  abstract = jax.eval_shape(layer.init, jax.random.key(0), x)
  params = abstract['params']['cell']
  assert isinstance(params['input_kernel'], nn.Partitioned)
  assert params['input_kernel'].names == names
  assert params['recurrent_kernel'].names == names
  assert params['gate']['input_kernel'].names == names

  mesh = Mesh(np.array(jax.devices()[:2]), ('model',))
  specs = nn.get_partition_spec(abstract)
  shardings = jax.tree_util.tree_map(lambda s: NamedSharding(mesh, s), specs)
  variables = jax.jit(layer.init, out_shardings=shardings)(jax.random.key(0), x)
  kernel = variables['params']['cell']['input_kernel'].value
  assert kernel.sharding.spec == PartitionSpec(None, 'model')
  assert len(kernel.addressable_shards) == 2
  y = jax.jit(layer.apply)(variables, x)
  # The same numbers as the unboxed parameters, unsharded, under nn.RNN.
  plain = nn.unbox(jax.device_get(variables))
  _close(y, nn.RNN(partitioned).apply(plain, x), atol=1e-5)
  # Per-gate blocks are independent draws of the initialiser (orthogonal).
  w = np.asarray(plain['params']['cell']['recurrent_kernel'])
  block = w[:, : H + 1]
  np.testing.assert_allclose(block.T @ block, np.eye(H + 1), atol=1e-5)


# --- benchmarks/memory.py ----------------------------------------------------


def test_memory_benchmark_prints_rows(capsys):
  from benchmarks import memory

  memory.main([
      '--lengths',
      '32',
      '--B',
      '2',
      '--D',
      '3',
      '--H',
      '4',
      '--impls',
      'ours,ours_remat,flax_remat',
  ])
  rows = [
      json.loads(line)
      for line in capsys.readouterr().out.splitlines()
      if line.startswith('{')
  ]
  assert [r['impl'] for r in rows] == ['ours', 'ours_remat', 'flax_remat']
  for row in rows:
    assert set(row) == {
        'impl',
        'B',
        'T',
        'D',
        'H',
        'temp_mib',
        'argument_mib',
        'output_mib',
    }
    assert row['T'] == 32 and row['temp_mib'] >= 0
  with pytest.raises(ValueError, match='unknown'):
    memory.make_layer('nope', 4)
