"""Tests of StackedRNNClassifier."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eleatt_jax import StackedRNNClassifier
from eleatt_jax.models import CELL_TYPES

B, T, D, C = 3, 5, 3, 4
HIDDEN = (4, 4)
LENGTHS = (5, 3, 1)
RTOL, ATOL = 1e-5, 1e-6
# bfloat16 compute, float32 params and logits: measured max |bf16 - f32| of the
# logits is about 1e-3 on logits of size ~0.1 (see test_layers.BF16_ATOL for the
# recurrent outputs).
BF16_LOGITS_ATOL = 1e-2


def model(**kwargs):
  kwargs = {'num_classes': C, 'hidden_sizes': HIDDEN, **kwargs}
  return StackedRNNClassifier(**kwargs)


def padded_inputs():
  x = jax.random.normal(jax.random.key(7), (B, T, D))
  valid = (jnp.arange(T)[None, :] < jnp.array(LENGTHS)[:, None])[..., None]
  return jnp.where(valid, x, 100.0)


@functools.cache
def variables_for(**kwargs):
  return model(**kwargs).init(jax.random.key(0), jnp.zeros((1, T, D)))


def variables_of(**kwargs):
  return variables_for(**dict(sorted(kwargs.items())))


@functools.cache
def _jitted_apply(**kwargs):
  return jax.jit(
      model(**kwargs).apply,
      static_argnames=('train', 'capture_intermediates', 'mutable'),
  )


def apply_of(**kwargs):
  """model(**kwargs).apply under jit, compiled once per configuration."""
  return _jitted_apply(**dict(sorted(kwargs.items())))


def param_shapes(m, x_shape=(B, T, D)):
  variables = jax.eval_shape(m.init, jax.random.key(0), jnp.zeros(x_shape))
  return jax.tree_util.tree_map(lambda s: s.shape, variables['params'])


def test_default_bidirectional_param_tree_pinned():
  """Default 3 x 100 stack, gate on layer 0 only, bidirectional: exact tree."""
  d, h = 6, 100
  gru = lambda d_in: {
      'input_kernel': (d_in, 3 * h),
      'bias': (3 * h,),
      'recurrent_kernel': (h, 3 * h),
      'recurrent_bias': (h,),
  }
  gate = {'input_kernel': (d, d), 'recurrent_kernel': (h, d), 'bias': (d,)}
  both = lambda cell: {
      'forward_rnn': {'cell': cell},
      'backward_rnn': {'cell': cell},
  }
  assert param_shapes(
      StackedRNNClassifier(num_classes=5, gate_layers=1, bidirectional=True),
      (2, 7, d),
  ) == {
      'layer_0': both({**gru(d), 'gate': gate}),
      'layer_1': both(gru(2 * h)),
      'layer_2': both(gru(2 * h)),
      'classifier': {'kernel': (2 * h, 5), 'bias': (5,)},
  }


@pytest.mark.parametrize('cell', list(CELL_TYPES))
def test_cell_types(cell):
  """Each cell name gives its fused cell; only eleatt_* names carry gates."""
  blocks = {'gru': 3, 'lstm': 4, 'rnn': 1}[cell.split('_')[-1]]
  params = param_shapes(model(cell=cell, gate_layers='all'))
  for i, d_in in enumerate((D,) + HIDDEN[:-1]):
    layer = params[f'layer_{i}']['cell']
    assert layer['input_kernel'] == (d_in, blocks * HIDDEN[i])
    assert ('recurrent_bias' in layer) == cell.endswith('gru')
    assert ('gate' in layer) == cell.startswith('eleatt')


@pytest.mark.parametrize(
    'gate_layers, gated',
    [
        ('all', (True, True, True)),
        ('none', (False, False, False)),
        (0, (False, False, False)),
        (1, (True, False, False)),
        (2, (True, True, False)),
        (3, (True, True, True)),
    ],
)
def test_gate_layers(gate_layers, gated):
  """gate_layers picks which layers have a 'gate': all, none or the first k."""
  params = param_shapes(model(hidden_sizes=(4, 4, 4), gate_layers=gate_layers))
  assert (
      tuple('gate' in params[f'layer_{i}']['cell'] for i in range(3)) == gated
  )


def per_step_features(apply, variables, x, lengths):
  """The last recurrent layer's outputs [B, T, F], read from the forward pass."""
  _, state = apply(
      variables, x, lengths, capture_intermediates=True, mutable='intermediates'
  )
  (features,) = state['intermediates'][f'layer_{len(HIDDEN) - 1}']['__call__']
  return np.asarray(features, np.float64)


def classify(variables, features):
  p = variables['params']['classifier']
  return features @ np.asarray(p['kernel'], np.float64) + np.asarray(
      p['bias'], np.float64
  )


@pytest.mark.parametrize('bidirectional', [False, True])
def test_mean_readout_is_mean_of_per_step_logits(bidirectional):
  """readout='mean' == per-step logits averaged over each sequence's valid steps."""
  apply = apply_of(readout='mean', bidirectional=bidirectional)
  variables = variables_of(bidirectional=bidirectional)
  x, lengths = padded_inputs(), jnp.array(LENGTHS)
  logits = apply(variables, x, lengths)
  step_logits = classify(
      variables, per_step_features(apply, variables, x, lengths)
  )
  for b, length in enumerate(LENGTHS):
    np.testing.assert_allclose(
        logits[b], step_logits[b, :length].mean(0), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize('bidirectional', [False, True])
def test_last_readout_classifies_last_valid_step(bidirectional):
  """readout='last': forward state at the last valid step (backward at t=0)."""
  apply = apply_of(readout='last', bidirectional=bidirectional)
  variables = variables_of(bidirectional=bidirectional)
  x, lengths = padded_inputs(), jnp.array(LENGTHS)
  logits = apply(variables, x, lengths)
  features = per_step_features(apply, variables, x, lengths)
  h = HIDDEN[-1]
  for b, length in enumerate(LENGTHS):
    last = features[b, length - 1]
    if bidirectional:
      last = np.concatenate([last[:h], features[b, 0, h:]])
    np.testing.assert_allclose(
        logits[b], classify(variables, last), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize(
    'readout, bidirectional',
    [('mean', False), ('last', False), ('mean', True), ('last', True)],
)
def test_padded_batch_equals_each_sequence_alone(readout, bidirectional):
  """Logits of a padded batch equal those of each sequence run alone."""
  apply = apply_of(readout=readout, bidirectional=bidirectional)
  variables = variables_of(bidirectional=bidirectional)
  x = padded_inputs()
  logits = apply(variables, x, jnp.array(LENGTHS))
  chex.assert_shape(logits, (B, C))
  chex.assert_type(logits, jnp.float32)
  for b, length in enumerate(LENGTHS):
    np.testing.assert_allclose(
        logits[b],
        apply(variables, x[b : b + 1, :length])[0],
        rtol=RTOL,
        atol=ATOL,
    )


def test_no_seq_lengths_means_all_steps_valid():
  """seq_lengths=None is the same as every length equal to T."""
  apply = apply_of()
  variables = variables_of()
  x = padded_inputs()
  np.testing.assert_allclose(
      apply(variables, x),
      apply(variables, x, jnp.full((B,), T)),
      rtol=RTOL,
      atol=ATOL,
  )


def test_dropout_only_in_training():
  """train=False is deterministic; train=True drops units, per dropout key."""
  apply = apply_of(dropout_rate=0.5)
  variables = variables_of()
  x, lengths = padded_inputs(), jnp.array(LENGTHS)
  evaluation = apply(variables, x, lengths)
  np.testing.assert_array_equal(
      evaluation, apply_of(dropout_rate=0.0)(variables, x, lengths)
  )
  train = lambda key: apply(
      variables, x, lengths, train=True, rngs={'dropout': jax.random.key(key)}
  )
  assert not np.allclose(train(1), evaluation)
  assert not np.allclose(train(1), train(2))
  np.testing.assert_array_equal(train(1), train(1))
  with pytest.raises(Exception, match='dropout'):
    apply(variables, x, lengths, train=True)


def test_bfloat16_compute_keeps_float32_params_and_logits():
  """dtype=bfloat16: float32 params, float32 logits within BF16_LOGITS_ATOL."""
  m16 = model(dtype=jnp.bfloat16, bidirectional=True)
  shapes = jax.eval_shape(m16.init, jax.random.key(0), padded_inputs())
  assert {p.dtype for p in jax.tree_util.tree_leaves(shapes)} == {
      jnp.dtype(jnp.float32)
  }
  variables = variables_of(bidirectional=True)
  x, lengths = padded_inputs(), jnp.array(LENGTHS)
  logits16 = apply_of(dtype=jnp.bfloat16, bidirectional=True)(
      variables, x, lengths
  )
  logits32 = apply_of(bidirectional=True)(variables, x, lengths)
  chex.assert_type(logits16, jnp.float32)
  np.testing.assert_allclose(logits16, logits32, rtol=0, atol=BF16_LOGITS_ATOL)
  assert not np.array_equal(logits16, logits32)  # really computed in bf16


@pytest.mark.parametrize('cell', list(CELL_TYPES) + ['bidirectional'])
def test_gradient_step_changes_every_parameter(cell):
  """One SGD step changes every parameter; no entry has a zero gradient."""
  kwargs = (
      {'bidirectional': True} if cell == 'bidirectional' else {'cell': cell}
  )
  m = model(gate_layers='all', dropout_rate=0.0, **kwargs)
  x, lengths = padded_inputs(), jnp.array(LENGTHS)
  params = m.init(jax.random.key(0), x)['params']
  labels = jnp.arange(B) % C

  def loss(p):
    logits = m.apply({'params': p}, x, lengths)
    return -jnp.mean(
        jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)
    )

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


# Bad input.


@pytest.mark.parametrize(
    'kwargs, match',
    [
        ({'cell': 'transformer'}, "cell must be one of .* got 'transformer'"),
        (
            {'readout': 'max'},
            r"readout must be one of \('mean', 'last'\), got 'max'",
        ),
        (
            {'gate_layers': 'first'},
            "gate_layers must be 'all', 'none' or an int in "
            r"\[0, 2\], got 'first'",
        ),
        ({'gate_layers': 3}, r'gate_layers .* int in \[0, 2\], got 3'),
        ({'gate_layers': -1}, r'gate_layers .* got -1'),
        ({'gate_layers': True}, r'gate_layers .* got True'),
        ({'cell': 'gru', 'gate_layers': 'first'}, "gate_layers .* got 'first'"),
    ],
)
def test_bad_configuration_raises(kwargs, match):
  """Unknown cell, readout or gate_layers: a ValueError naming the choices."""
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(model(**kwargs).init, jax.random.key(0), padded_inputs())


@pytest.mark.parametrize(
    'x, lengths, match',
    [
        (
            jnp.ones((T, D)),
            None,
            r'inputs \[batch, time, features\], got shape ' r'\(5, 3\)',
        ),
        (
            jnp.ones((B, T, D), jnp.int32),
            None,
            'floating-point inputs, got dtype int32',
        ),
        (
            jnp.ones((B, T, D + 1)),
            None,
            r"'input_kernel' has shape \(3, 12\).*" r'\(4, 12\)',
        ),
        (
            jnp.ones((B, T, D)),
            jnp.array([5, 5]),
            r'seq_lengths must have the batch ' r'shape \(3,\)',
        ),
        (jnp.ones((B, T, D)), jnp.array([5, 0, 1]), r'\[1, 5\].*got 0'),
        (jnp.ones((B, T, D)), jnp.array([5, 9, 1]), r'\[1, 5\].*got 9'),
    ],
    ids=[
        'rank2',
        'int',
        'features',
        'lengths_shape',
        'length_0',
        'length_beyond_T',
    ],
)
def test_bad_input_raises(x, lengths, match):
  """Wrong rank, dtype, feature size or lengths: a ValueError at trace time."""
  with pytest.raises(ValueError, match=match):
    model().apply(variables_of(), x, lengths)


@pytest.mark.parametrize(
    'cell',
    [
        'eleatt_gru',
        pytest.param('eleatt_lstm', marks=pytest.mark.slow),
        pytest.param('eleatt_rnn', marks=pytest.mark.slow),
    ],
)
def test_gate_bias_init_sets_the_initial_attention(cell):
  """gate_bias_init=b: every gate's b_a starts at b, so a_t = sigmoid(b).

  On zero inputs from the zero carry every pre-activation but b_a is zero
  (and h stays zero through the layers and steps), so each layer's attention
  is sigmoid(b) exactly: 0.5 by default, 0.95 with b = 3. Nothing else
  changes.
  """
  x = jnp.zeros((1, T, D))
  assert model().gate_bias_init == 0.0
  # (The default cell's variables are other tests' cached ones.)
  default_kwargs = {} if cell == 'eleatt_gru' else {'cell': cell}
  default = variables_of(**default_kwargs)['params']
  flat_default = dict(jax.tree_util.tree_flatten_with_path(default)[0])
  for bias in (0.0, 3.0):
    kwargs = {**default_kwargs, **({'gate_bias_init': bias} if bias else {})}
    params = variables_of(**kwargs)['params']
    for path, value in jax.tree_util.tree_flatten_with_path(params)[0]:
      name = jax.tree_util.keystr(path)
      if "['gate']['bias']" in name:
        np.testing.assert_array_equal(value, np.full(value.shape, bias))
      else:  # every other parameter is the default's, value for value
        np.testing.assert_array_equal(value, flat_default[path], err_msg=name)
    _, state = model(**kwargs).apply(
        {'params': params}, x, mutable=['intermediates']
    )
    attention = [
        layer['cell']['attention'][0]
        for layer in state['intermediates'].values()
    ]
    assert len(attention) == len(HIDDEN)
    for a in attention:
      chex.assert_shape(a, (1, T, None))
      np.testing.assert_allclose(a, jax.nn.sigmoid(bias), rtol=1e-6)
