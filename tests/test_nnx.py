"""eleatt_jax.nnx: NNX cells, RNN, classifier, and the linen <-> NNX converters."""

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import eleatt_jax
from eleatt_jax import nnx as enx
from eleatt_jax.nnx.cells import value_of

B, T, D, H = 3, 6, 4, 5
LENGTHS = jnp.array([6, 4, 1])
PAIRS = [
    (eleatt_jax.EleAttGRUCell, enx.EleAttGRUCell),
    (eleatt_jax.EleAttLSTMCell, enx.EleAttLSTMCell),
    (eleatt_jax.EleAttSimpleCell, enx.EleAttSimpleCell),
]
IDS = ['gru', 'lstm', 'simple']


def _x(shape=(B, T, D), seed=0):
  return jax.random.normal(jax.random.key(seed), shape)


def _close(a, b, atol=1e-5):
  jax.tree_util.tree_map(
      lambda u, v: np.testing.assert_allclose(u, v, atol=atol, rtol=1e-5), a, b
  )


def _linen_layer(linen_cls, use_gate=True, **kw):
  layer = eleatt_jax.RNN(linen_cls(H, use_gate=use_gate), **kw)
  return layer, layer.init(jax.random.key(1), _x(), seq_lengths=LENGTHS)


@pytest.mark.parametrize('pair', PAIRS, ids=IDS)
@pytest.mark.parametrize(
    'use_gate,reverse',
    [
        # `make test`: the plain forward layer; the gate and reverse repeat
        # the same conversion in `make test-all`.
        pytest.param(
            use_gate,
            reverse,
            id=f'{use_gate}-{reverse}',
            marks=pytest.mark.slow if use_gate or reverse else (),
        )
        for use_gate in (True, False)
        for reverse in (False, True)
    ],
)
def test_same_params_same_outputs_as_linen(pair, reverse, use_gate):
  linen_cls, nnx_cls = pair
  kw = dict(return_carry=True, reverse=reverse, keep_order=True)
  layer, variables = _linen_layer(linen_cls, use_gate, **kw)
  (carry, y), state = layer.apply(
      variables, _x(), seq_lengths=LENGTHS, mutable='intermediates'
  )
  cell = enx.from_linen(variables['params']['cell'])
  assert isinstance(cell, nnx_cls) and cell.use_gate == use_gate
  nnx_layer = enx.RNN(cell, **kw)
  carry_n, y_n = nnx_layer(_x(), seq_lengths=LENGTHS)
  _close(y_n, y)
  _close(carry_n, carry)
  if use_gate:
    attention = nnx.pop(nnx_layer, nnx.Intermediate)['cell']['attention']
    _close(value_of(attention), state['intermediates']['cell']['attention'][0])
  # And back: linen applies to_linen(cell) to the same numbers.
  params = enx.to_linen(cell)
  _close(
      params,
      jax.tree_util.tree_map(jnp.asarray, dict(variables['params']['cell'])),
  )
  _close(
      layer.apply({'params': {'cell': params}}, _x(), seq_lengths=LENGTHS)[1], y
  )


@pytest.mark.parametrize('pair', PAIRS, ids=IDS)
def test_cells_run_under_nnx_rnn_and_bidirectional(pair):
  linen_cls, nnx_cls = pair
  layer, variables = _linen_layer(linen_cls)
  y = layer.apply(variables, _x())
  cell = enx.from_linen(variables['params']['cell'])
  _close(nnx.RNN(cell)(_x()), y)  # Flax's own loop, our cell's __call__.
  x = _x()
  bi = nnx.Bidirectional(
      enx.RNN(nnx_cls(D, H, rngs=nnx.Rngs(0))),
      enx.RNN(nnx_cls(D, H, rngs=nnx.Rngs(1))),
  )
  ours = bi(x, seq_lengths=LENGTHS)
  assert ours.shape == (B, T, 2 * H)
  flax_bi = nnx.Bidirectional(
      nnx.RNN(bi.forward_rnn.cell), nnx.RNN(bi.backward_rnn.cell)
  )
  theirs = flax_bi(x, seq_lengths=LENGTHS)
  valid = (jnp.arange(T)[None, :] < LENGTHS[:, None])[..., None]
  _close(ours, jnp.where(valid, theirs, 0))


def test_gradients_match_linen_and_remat():
  layer, variables = _linen_layer(eleatt_jax.EleAttGRUCell)
  x = _x()

  def linen_loss(params):
    return jnp.sum(layer.apply({'params': params}, x, seq_lengths=LENGTHS) ** 2)

  expected = jax.grad(linen_loss)(variables['params'])
  for remat in (False, True):
    model = enx.RNN(enx.from_linen(variables['params']['cell']), remat=remat)
    grads = nnx.grad(lambda m: jnp.sum(m(x, seq_lengths=LENGTHS) ** 2))(model)
    _close(nnx.to_pure_dict(grads), dict(expected), atol=1e-4)


def test_under_nnx_jit():
  model = enx.RNN(enx.EleAttLSTMCell(D, H, rngs=nnx.Rngs(0)))
  y = nnx.jit(lambda m, x: m(x))(model, _x())
  _close(y, model(_x()))


@pytest.mark.parametrize(
    'make_cell',
    [
        lambda rngs: nnx.GRUCell(D, H, rngs=rngs),
        lambda rngs: nnx.OptimizedLSTMCell(D, H, rngs=rngs),
    ],
    ids=['gru', 'optimized_lstm'],
)
@pytest.mark.slow
def test_eleatt_wrapper_of_an_nnx_cell(make_cell):
  rngs = nnx.Rngs(0)
  cell = enx.EleAtt(make_cell(rngs), rngs=rngs)
  x = _x()
  ours = enx.RNN(cell, return_carry=True)
  carry, y = ours(x)
  carry_f, y_f = nnx.RNN(cell, return_carry=True)(x)
  _close(y, y_f)
  _close(carry, carry_f)
  attention = nnx.pop(ours, nnx.Intermediate)['cell']['attention']
  assert value_of(attention).shape == (B, T, D)
  # remat: the same gradients.
  loss = lambda m: jnp.sum(m(x, seq_lengths=LENGTHS) ** 2)
  g = nnx.grad(loss)(enx.RNN(cell))
  g_remat = nnx.grad(loss)(enx.RNN(cell, remat=True))
  _close(nnx.to_pure_dict(g), nnx.to_pure_dict(g_remat), atol=1e-5)


def test_eleatt_wrapper_gate_matches_linen_wrapper_gate():
  rngs = nnx.Rngs(0)
  cell = enx.EleAtt(nnx.GRUCell(D, H, rngs=rngs), rngs=rngs)
  x, h = _x((B, D)), _x((B, H), seed=1)
  gate_params = enx.to_linen(cell.gate)
  a = eleatt_jax.EleAttG().apply({'params': gate_params}, x, h)
  _close(cell.gate(x, h), a)


@pytest.mark.parametrize(
    'bidirectional,readout,cell',
    [
        (False, 'mean', 'eleatt_gru'),
        (True, 'last', 'eleatt_lstm'),
        (False, 'last', 'rnn'),
    ],
)
@pytest.mark.slow
def test_classifier_matches_linen(bidirectional, readout, cell):
  kw = dict(
      cell=cell,
      hidden_sizes=(6, 5),
      gate_layers=1,
      readout=readout,
      bidirectional=bidirectional,
  )
  linen_model = eleatt_jax.StackedRNNClassifier(num_classes=7, **kw)
  x = _x()
  variables = linen_model.init(jax.random.key(0), x, LENGTHS)
  model = enx.StackedRNNClassifier(D, 7, rngs=nnx.Rngs(0), **kw)
  jax.tree_util.tree_map(  # Same tree, same shapes before loading.
      lambda a, b: np.testing.assert_equal(a.shape, b.shape),
      enx.to_linen(model),
      jax.tree_util.tree_map(jnp.asarray, nn.unbox(variables['params'])),
  )
  enx.from_linen(variables, model)
  model.eval()
  _close(model(x, LENGTHS), linen_model.apply(variables, x, LENGTHS), atol=1e-5)
  model.train()
  y1 = model(x, LENGTHS)
  assert not np.allclose(y1, model(x, LENGTHS))  # dropout draws anew


def test_classifier_gate_bias_init_as_linen():
  """gate_bias_init=b: the gated layers' b_a start at b, the ungated layer
  has no gate, the other parameters are the default's."""
  kw = dict(hidden_sizes=(6, 5), gate_layers=1)
  default = enx.to_linen(enx.StackedRNNClassifier(D, 7, rngs=nnx.Rngs(0), **kw))
  params = enx.to_linen(
      enx.StackedRNNClassifier(D, 7, gate_bias_init=3.0, rngs=nnx.Rngs(0), **kw)
  )
  np.testing.assert_array_equal(
      params['layer_0']['cell']['gate']['bias'], np.full((D,), 3.0)
  )
  assert 'gate' not in params['layer_1']['cell']
  params['layer_0']['cell']['gate']['bias'] = default['layer_0']['cell'][
      'gate'
  ]['bias']
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, default)


def test_from_linen_errors_name_the_path():
  _, variables = _linen_layer(eleatt_jax.EleAttGRUCell)
  params = variables['params']['cell']
  with pytest.raises(ValueError, match='missing'):
    enx.from_linen(variables)  # an RNN's tree, not a cell's
  wrong = enx.EleAttGRUCell(D + 1, H, rngs=nnx.Rngs(0))
  with pytest.raises(
      ValueError, match=r'has shape \(4,\); EleAttGRUCell expects \(5,\)'
  ):
    enx.from_linen(params, wrong)
  lstm = enx.EleAttLSTMCell(D, H, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='unexpected'):
    enx.from_linen(params, lstm)


def test_wrong_input_features_name_the_shape():
  cell = enx.EleAttGRUCell(D, H, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='inputs has 3 features'):
    enx.RNN(cell)(_x((B, T, 3)))


def test_import_eleatt_jax_does_not_load_nnx():
  code = (
      'import sys, eleatt_jax; assert "eleatt_jax.nnx" not in sys.modules; '
      'assert "flax.nnx" not in sys.modules, "flax.nnx loaded"; '
      'import eleatt_jax.nnx as m; assert eleatt_jax.nnx is m; '
      'print("ok")'
  )
  out = subprocess.run(
      [sys.executable, '-c', code], capture_output=True, text=True, check=False
  )
  assert out.stdout.strip() == 'ok', out.stderr
