"""Export-safe defaults and the errors of eleatt_jax.RNN (issues 10 and 11).

The default traced graph holds no host callback (it exports); traced lengths
are checked on request (``check_seq_lengths='checkify'`` or ``'callback'``); a
wrong-shape ``initial_carry`` and a feature-size mismatch are ValueErrors that
name the shapes; NaN or Inf in the padding leave the gradients finite;
``fused_backward=True`` keeps float64 precision.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.experimental import checkify

from eleatt_jax import (
    RNN,
    EleAtt,
    EleAttGRUCell,
    EleAttLSTMCell,
    EleAttSimpleCell,
    StackedRNNClassifier,
)

B, T, D, H = 3, 5, 3, 4
LENGTHS = (5, 3, 1)
CELLS = {
    'eleatt_gru': lambda: EleAttGRUCell(H),
    'gru': lambda: EleAttGRUCell(H, use_gate=False),
    'eleatt_lstm': lambda: EleAttLSTMCell(H),
    'lstm': lambda: EleAttLSTMCell(H, use_gate=False),
    'eleatt_rnn': lambda: EleAttSimpleCell(H),
    'rnn': lambda: EleAttSimpleCell(H, use_gate=False),
    'EleAtt(GRUCell)': lambda: EleAtt(nn.GRUCell(H)),
    'EleAtt(LSTMCell)': lambda: EleAtt(nn.LSTMCell(H)),
}


def inputs(shape=(B, T, D), key=jax.random.key(7)):
  return jax.random.normal(key, shape)


def layer_and_variables(name='eleatt_gru', **kwargs):
  layer = RNN(CELLS[name](), **kwargs)
  return layer, layer.init(jax.random.key(0), inputs())


def test_default_traced_graph_has_no_host_callback_and_exports():
  layer, variables = layer_and_variables()
  f = lambda l: layer.apply(variables, inputs(), seq_lengths=l)
  jaxpr = str(jax.make_jaxpr(f)(jnp.array(LENGTHS)))
  assert 'callback' not in jaxpr
  exported = jax.export.export(jax.jit(f))(
      jax.ShapeDtypeStruct((B,), jnp.int32)
  )
  restored = jax.export.deserialize(exported.serialize())
  np.testing.assert_allclose(
      restored.call(jnp.array(LENGTHS)),
      f(jnp.array(LENGTHS)),
      rtol=1e-6,
      atol=1e-6,
  )


def test_default_model_exports_with_symbolic_batch_and_time():
  model = StackedRNNClassifier(num_classes=4, hidden_sizes=(H,))
  variables = model.init(jax.random.key(0), inputs(), jnp.array(LENGTHS))
  b, t = jax.export.symbolic_shape('b, t')
  exported = jax.export.export(
      jax.jit(lambda x, l: model.apply(variables, x, l))
  )(
      jax.ShapeDtypeStruct((b, t, D), jnp.float32),
      jax.ShapeDtypeStruct((b,), jnp.int32),
  )
  restored = jax.export.deserialize(exported.serialize())
  x = inputs((2, 7, D))
  np.testing.assert_allclose(
      restored.call(x, jnp.array([7, 2])),
      model.apply(variables, x, jnp.array([7, 2])),
      rtol=1e-5,
      atol=1e-6,
  )


def test_concrete_out_of_range_lengths_still_raise_under_default():
  layer, variables = layer_and_variables()
  with pytest.raises(
      ValueError, match=r'seq_length must be in \[1, 5\].*got 6'
  ):
    layer.apply(variables, inputs(), seq_lengths=np.array([5, 6, 1]))


def test_checkify_option_checks_traced_lengths():
  layer, variables = layer_and_variables(check_seq_lengths='checkify')
  f = checkify.checkify(
      jax.jit(lambda l: layer.apply(variables, inputs(), seq_lengths=l))
  )
  err, _ = f(jnp.array(LENGTHS))
  err.throw()  # in range: no error
  err, _ = f(jnp.array([5, 6, 1]))
  with pytest.raises(
      checkify.JaxRuntimeError,
      match=r'seq_length must be in \[1, 5\].*got 6 at batch ' r'index 1',
  ):
    err.throw()


def test_callback_option_checks_traced_lengths_at_run_time():
  layer, variables = layer_and_variables(check_seq_lengths='callback')
  apply = jax.jit(lambda l: layer.apply(variables, inputs(), seq_lengths=l))
  with pytest.raises(
      (ValueError, jax.errors.JaxRuntimeError),
      match=r'seq_length must be in \[1, 5\].*got 0',
  ):
    apply(jnp.array([5, 0, 1])).block_until_ready()


def test_unknown_check_option_raises():
  layer, variables = layer_and_variables(check_seq_lengths='sometimes')
  with pytest.raises(ValueError, match='check_seq_lengths must be one of'):
    layer.apply(variables, inputs(), seq_lengths=np.array(LENGTHS))


@pytest.mark.parametrize(
    'name, carry, match',
    [
        (
            'eleatt_gru',
            jnp.zeros((B, H + 1)),
            r'must have the shapes \(3, 4\), got \(3, 5\)',
        ),
        ('eleatt_gru', jnp.zeros((B + 1, H)), r'\(3, 4\), got \(4, 4\)'),
        (
            'eleatt_lstm',
            jnp.zeros((B, H)),
            r'must have the shapes \(\(3, 4\), \(3, 4\)\), got \(3, 4\)',
        ),
        (
            'rnn',
            (jnp.zeros((B, H)),) * 2,
            r'\(3, 4\), got \(\(3, 4\), \(3, 4\)\)',
        ),
        (
            'EleAtt(LSTMCell)',
            (jnp.zeros((B, 2)),) * 2,
            r'got \(\(3, 2\), \(3, 2\)\)',
        ),
    ],
    ids=['gru_features', 'gru_batch', 'lstm_array', 'rnn_tuple', 'wrapped'],
)
def test_wrong_initial_carry_names_expected_and_given_shapes(
    name, carry, match
):
  layer, variables = layer_and_variables(name)
  with pytest.raises(ValueError, match=r'RNN: initial_carry .*' + match):
    layer.apply(variables, inputs(), initial_carry=carry)


@pytest.mark.parametrize(
    'bad,name',
    [
        # `make test`: NaN in each cell's own loop; Inf and the EleAtt
        # wrappers repeat the same select in `make test-all`.
        pytest.param(
            bad,
            name,
            id=f'{bad}-{name}',
            marks=pytest.mark.slow
            if bad == 'inf' or name.startswith('EleAtt(')
            else (),
        )
        for bad in ('nan', 'inf')
        for name in sorted(CELLS)
    ],
)
def test_nan_or_inf_in_padding_gives_finite_gradients(name, bad):
  bad = float(bad)
  layer, variables = layer_and_variables(name)
  lengths = jnp.array(LENGTHS)
  valid = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
  x_clean = inputs()
  x = jnp.where(valid, x_clean, bad)

  def loss(params, x):
    return jnp.sum(layer.apply({'params': params}, x, seq_lengths=lengths) ** 2)

  grads = jax.grad(loss, argnums=(0, 1))(variables['params'], x)
  for leaf in jax.tree_util.tree_leaves(grads):
    assert np.all(np.isfinite(leaf))
  clean = jax.grad(loss, argnums=(0, 1))(variables['params'], x_clean)
  jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      grads[0],
      clean[0],
  )
  np.testing.assert_array_equal(
      np.asarray(grads[1])[~np.asarray(valid[..., 0])], 0
  )


def test_nan_in_padding_gives_finite_classifier_gradients():
  model = StackedRNNClassifier(
      num_classes=4, hidden_sizes=(H, H), readout='last'
  )
  lengths = jnp.array(LENGTHS)
  valid = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
  x = jnp.where(valid, inputs(), jnp.nan)
  params = model.init(jax.random.key(0), x, lengths)['params']
  grads = jax.grad(lambda p: model.apply({'params': p}, x, lengths).sum())(
      params
  )
  assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.parametrize('name', ['eleatt_gru', 'lstm', 'eleatt_rnn'])
def test_feature_size_mismatch_states_d(name):
  layer, variables = layer_and_variables(name)
  with pytest.raises(ValueError, match=r'expects inputs of size D=3, got D=4'):
    layer.apply(variables, inputs((B, T, D + 1)))


@pytest.mark.parametrize(
    'name',
    ['eleatt_gru', pytest.param('eleatt_lstm', marks=pytest.mark.slow), 'gru'],
)
def test_fused_backward_keeps_float64_precision(name):
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.key(1), (B, T, D), jnp.float64)
    lengths = jnp.array(LENGTHS)
    cell_kw = dict(param_dtype=jnp.float64)
    make = {
        'eleatt_gru': lambda: EleAttGRUCell(H, **cell_kw),
        'gru': lambda: EleAttGRUCell(H, use_gate=False, **cell_kw),
        'eleatt_lstm': lambda: EleAttLSTMCell(H, **cell_kw),
    }[name]
    params = RNN(make()).init(jax.random.key(0), x)['params']

    def grads(fused):
      layer = RNN(make(), fused_backward=fused, split_gates=False)
      loss = lambda p, x: jnp.sum(
          jnp.sin(layer.apply({'params': p}, x, seq_lengths=lengths))
      )
      return jax.grad(loss, argnums=(0, 1))(params, x)

    fused, autodiff = grads(True), grads(False)
    for a, b in zip(
        jax.tree_util.tree_leaves(fused), jax.tree_util.tree_leaves(autodiff)
    ):
      assert a.dtype == jnp.float64
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
