"""Tests of the element-wise-attention gate EleAttG on its own."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jax_compat
import reference
from eleatt_jax import EleAttG

D, H = 3, 5


def _init(batch_shape=(2,)):
  x = jax.random.normal(jax.random.key(1), batch_shape + (D,))
  h = jax.random.normal(jax.random.key(2), batch_shape + (H,))
  # A non-zero bias so that b_a is exercised, not just created.
  gate = EleAttG(bias_init=jax.nn.initializers.normal(1.0))
  variables = gate.init(jax.random.key(0), x, h)
  return gate, variables, x, h


def test_param_tree_pinned():
  """W_xa is [D, D], W_ha is [H, D], b_a is [D]; nothing else is created."""
  _, variables, _, _ = _init()
  assert jax.tree_util.tree_map(jnp.shape, variables) == {
      'params': {
          'input_kernel': (D, D),
          'recurrent_kernel': (H, D),
          'bias': (D,),
      }
  }


@pytest.mark.parametrize('batch_shape', [(2,), (2, 3), ()])
def test_matches_numpy(batch_shape):
  """a = sigmoid(x W_xa + h W_ha + b_a) over any batch dims (and none)."""
  gate, variables, x, h = _init(batch_shape)
  a = gate.apply(variables, x, h)
  chex.assert_shape(a, batch_shape + (D,))
  chex.assert_type(a, jnp.float32)
  expected = reference.gate(
      np.asarray(x, np.float64),
      np.asarray(h, np.float64),
      reference.f64(variables['params']),
  )
  np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-6)


def test_kernels_returns_the_parameters():
  """kernels(D, H) hands back exactly the stored parameters."""
  gate, variables, _, _ = _init()
  kernels = gate.apply(variables, D, H, method=EleAttG.kernels)
  chex.assert_trees_all_equal(kernels, variables['params'])


def test_gate_fn_is_used():
  """A different squashing function replaces the sigmoid."""
  _, variables, x, h = _init()
  a = EleAttG(gate_fn=jnp.tanh).apply(variables, x, h)
  p = reference.f64(variables['params'])
  expected = np.tanh(
      np.asarray(x, np.float64) @ p['input_kernel']
      + np.asarray(h, np.float64) @ p['recurrent_kernel']
      + p['bias']
  )
  np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_keeps_float32_params():
  """dtype=bfloat16 computes in bfloat16; its parameters are still float32."""
  _, variables, x, h = _init()
  gate16 = EleAttG(dtype=jnp.bfloat16)
  params16 = gate16.init(jax.random.key(0), x, h)['params']
  assert {p.dtype for p in jax.tree_util.tree_leaves(params16)} == {
      jnp.dtype(jnp.float32)
  }
  a16 = gate16.apply(variables, x, h)
  chex.assert_type(a16, jnp.bfloat16)
  a32 = EleAttG().apply(variables, x, h)
  np.testing.assert_allclose(a16.astype(jnp.float32), a32, atol=1e-2)


def test_check_grads():
  """Autodiff of the gate matches finite differences (float64)."""
  with jax_compat.enable_x64(True):
    x = jax.random.normal(jax.random.key(1), (2, D), jnp.float64)
    h = jax.random.normal(jax.random.key(2), (2, H), jnp.float64)
    gate = EleAttG(param_dtype=jnp.float64)
    params = gate.init(jax.random.key(0), x, h)['params']
    f = lambda p, x, h: gate.apply({'params': p}, x, h)
    check_grads(jax.jit(f), (params, x, h), order=2, modes=('fwd', 'rev'))


@pytest.mark.parametrize(
    'x_shape, h_shape, match',
    [
        ((2, D + 1), (2, H), r"'input_kernel' has shape \(3, 3\).*\(4, 4\)"),
        (
            (2, D),
            (2, H + 1),
            r"'recurrent_kernel' has shape \(5, 3\).*\(6, 3\)",
        ),
        ((), (2, H), r'EleAttG expects inputs \[\.\.\., D\]'),
    ],
)
def test_bad_input_raises(x_shape, h_shape, match):
  """Sizes that contradict the stored parameters, and scalars, are ValueErrors."""
  gate, variables, _, _ = _init()
  with pytest.raises(ValueError, match=match):
    gate.apply(variables, jnp.ones(x_shape), jnp.ones(h_shape))
