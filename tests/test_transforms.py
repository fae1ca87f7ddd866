"""The layer and the model under jit, vmap, grad and pmap, and data parallelism.

conftest.py gives this process two host CPU devices.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from marks import slow_except
import reference
from eleatt_jax import (
    RNN,
    EleAtt,
    EleAttGRUCell,
    EleAttLSTMCell,
    StackedRNNClassifier,
)

B, T, D, H = 4, 5, 3, 4
LENGTHS = (5, 3, 1, 4)
RTOL, ATOL = 1e-5, 1e-6
random_bias = jax.nn.initializers.normal(0.5)

CELLS = {
    'eleatt_gru': lambda: EleAttGRUCell(H, bias_init=random_bias),
    'eleatt_lstm': lambda: EleAttLSTMCell(H, bias_init=random_bias),
    'lstm': lambda: EleAttLSTMCell(H, use_gate=False, bias_init=random_bias),
    'EleAtt(LSTMCell)': lambda: EleAtt(nn.LSTMCell(H), bias_init=random_bias),
}


def inputs(shape=(B, T, D), key=jax.random.key(7)):
  return jax.random.normal(key, shape)


@functools.cache
def cell_variables(name):
  return nn.RNN(CELLS[name]()).init(jax.random.key(0), jnp.zeros((1, 1, D)))


def valid_mask(lengths, num_steps=T):
  steps = jnp.arange(num_steps).reshape((1,) * lengths.ndim + (num_steps,))
  return (steps < lengths[..., None])[..., None]


class LayerVariantsTest(chex.TestCase):
  """The layer gives the reference numbers with and without jit."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters('eleatt_gru', 'eleatt_lstm')
  def test_layer_matches_numpy_reference(self, name):
    variables = cell_variables(name)
    layer = RNN(CELLS[name](), return_carry=True)
    apply = self.variant(
        lambda v, x, lengths: layer.apply(v, x, seq_lengths=lengths)
    )
    x, lengths = inputs(), jnp.array(LENGTHS)
    carry, y = apply(variables, x, lengths)
    params = variables['params']['cell']
    weights, step = {
        'eleatt_gru': (reference.fused_gru_weights, reference.gru_step),
        'eleatt_lstm': (reference.fused_lstm_weights, reference.lstm_step),
    }[name]
    zeros = np.zeros((B, H))
    np_carry, np_y, _ = reference.run(
        step,
        weights(params),
        reference.f64(params['gate']),
        x,
        (zeros, zeros) if name == 'eleatt_lstm' else zeros,
        lengths,
    )
    chex.assert_shape(y, (B, T, H))
    chex.assert_type(y, jnp.float32)
    np.testing.assert_allclose(y, np_y, rtol=RTOL, atol=ATOL)
    chex.assert_trees_all_close(carry, np_carry, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('name', ['eleatt_gru', 'EleAtt(LSTMCell)'])
def test_vmap_over_an_extra_batch_axis_equals_batched_call(name):
  """vmap(apply) over a leading axis == one call with batch dims (2, B)."""
  layer = RNN(CELLS[name]())
  variables = cell_variables(name)
  x = inputs((2, B, T, D))
  lengths = jnp.array([LENGTHS, LENGTHS[::-1]])
  apply = lambda x, lengths: layer.apply(variables, x, seq_lengths=lengths)
  np.testing.assert_allclose(
      jax.vmap(apply)(x, lengths), apply(x, lengths), rtol=RTOL, atol=ATOL
  )


def test_vmap_over_parameters_is_an_ensemble():
  """vmap over stacked parameters == each member's parameters on its own."""
  layer = RNN(CELLS['eleatt_gru']())
  x, lengths = inputs(), jnp.array(LENGTHS)
  members = [layer.init(jax.random.key(k), x) for k in (0, 1)]
  stacked = jax.tree_util.tree_map(lambda *p: jnp.stack(p), *members)
  apply = lambda v: layer.apply(v, x, seq_lengths=lengths)
  y = jax.jit(jax.vmap(apply))(stacked)
  for k, member in enumerate(members):
    np.testing.assert_allclose(y[k], apply(member), rtol=RTOL, atol=ATOL)


def masked_loss(layer, variables, x, lengths, target):
  """Squared error over valid steps (nn.RNN does not zero the padding)."""
  _, y = layer.apply(variables, x, seq_lengths=lengths, return_carry=True)
  return jnp.sum(valid_mask(lengths) * (y - target) ** 2)


@pytest.mark.parametrize(
    'name',
    slow_except(
        ['eleatt_gru', 'eleatt_lstm', 'EleAtt(LSTMCell)'],
        ('eleatt_gru', 'EleAtt(LSTMCell)'),
    ),
)
def test_grad_matches_flax_rnn(name):
  """jit(grad) w.r.t. parameters and inputs equals that of nn.RNN."""
  variables = cell_variables(name)
  x, lengths = inputs(), jnp.array(LENGTHS)
  target = inputs((B, T, H), jax.random.key(9))
  grad = lambda layer: jax.jit(
      jax.grad(functools.partial(masked_loss, layer), argnums=(0, 1))
  )(variables, x, lengths, target)
  ours, theirs = grad(RNN(CELLS[name]())), grad(nn.RNN(CELLS[name]()))
  chex.assert_trees_all_close(ours, theirs, rtol=RTOL, atol=ATOL)


# Each choice both ways (fused_backward=True needs the unsplit kernels).
LAYOUTS = [
    dict(fused_backward=fused, hoist_input_projection=hoist, split_gates=split)
    for fused, hoist, split in [
        (False, False, False),
        (False, True, True),
        (True, False, False),
        (True, True, False),
    ]
]


@pytest.mark.parametrize('name', ['eleatt_gru', 'lstm'])
def test_value_and_grad_same_for_every_layout(name):
  """Custom VJP or autodiff, hoisted or not, split or not: the same gradients."""
  variables = cell_variables(name)
  x, lengths = inputs(), jnp.array(LENGTHS)
  target = inputs((B, T, H), jax.random.key(9))
  results = [
      jax.jit(
          jax.value_and_grad(
              functools.partial(masked_loss, RNN(CELLS[name](), **layout)),
              argnums=(0, 1),
          )
      )(variables, x, lengths, target)
      for layout in LAYOUTS
  ]
  for layout, result in zip(LAYOUTS[1:], results[1:]):
    chex.assert_trees_all_close(
        result, results[0], rtol=RTOL, atol=ATOL, custom_message=str(layout)
    )


@pytest.mark.parametrize('fused_backward', [False, True])
def test_grad_of_jitted_apply_equals_jitted_grad(fused_backward):
  """grad(jit(f)) == jit(grad(f)) with seq_lengths, for both backward passes."""
  layer = RNN(
      CELLS['eleatt_gru'](), fused_backward=fused_backward, split_gates=False
  )
  variables = cell_variables('eleatt_gru')
  x, lengths = inputs(), jnp.array(LENGTHS)
  target = inputs((B, T, H), jax.random.key(9))
  loss = functools.partial(masked_loss, layer)
  chex.assert_trees_all_close(
      jax.grad(jax.jit(loss))(variables, x, lengths, target),
      jax.jit(jax.grad(loss))(variables, x, lengths, target),
      rtol=RTOL,
      atol=ATOL,
  )


def test_pmap_over_two_devices_equals_one_call():
  """pmap over 2 CPU devices, each with half the batch, == the whole batch."""
  assert jax.local_device_count() >= 2, 'conftest.py should give 2 devices'
  layer = RNN(CELLS['eleatt_gru'](), return_carry=True)
  variables = cell_variables('eleatt_gru')
  x, lengths = inputs(), jnp.array(LENGTHS)
  apply = lambda v, x, lengths: layer.apply(v, x, seq_lengths=lengths)
  shard = lambda a: a.reshape((2, B // 2) + a.shape[1:])
  carry, y = jax.pmap(apply, in_axes=(None, 0, 0))(
      variables, shard(x), shard(lengths)
  )
  expected_carry, expected_y = apply(variables, x, lengths)
  np.testing.assert_allclose(y, shard(expected_y), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(carry, shard(expected_carry), rtol=RTOL, atol=ATOL)


# Data-parallel training: the same parameters as one device on the whole batch.

NUM_STEPS = 2


def classifier():
  return StackedRNNClassifier(
      num_classes=3, hidden_sizes=(4, 4), gate_layers=1, dropout_rate=0.0
  )


def training_setup():
  model = classifier()
  x, lengths = inputs(), jnp.array(LENGTHS)
  labels = jnp.array([0, 1, 2, 1])
  params = model.init(jax.random.key(0), x, lengths)['params']
  optimizer = optax.adam(1e-2)
  return model, optimizer, params, (x, lengths, labels)


def loss_fn(model, params, batch):
  x, lengths, labels = batch
  logits = model.apply({'params': params}, x, lengths)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@functools.cache
def single_device_params():
  model, optimizer, params, batch = training_setup()

  @jax.jit
  def train_step(params, opt_state, batch):
    grads = jax.grad(functools.partial(loss_fn, model))(params, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_state = optimizer.init(params)
  for _ in range(NUM_STEPS):
    params, opt_state = train_step(params, opt_state, batch)
  return params


def test_pmap_pmean_training_step_equals_single_device_step():
  """pmap with pmean of the gradients == one device on the whole batch."""
  model, optimizer, params, batch = training_setup()

  @functools.partial(jax.pmap, axis_name='batch')
  def train_step(params, opt_state, batch):
    grads = jax.grad(functools.partial(loss_fn, model))(params, batch)
    grads = jax.lax.pmean(grads, axis_name='batch')
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  replicate = lambda tree: jax.tree_util.tree_map(
      lambda a: jnp.broadcast_to(a, (2,) + a.shape), tree
  )
  shard = lambda a: a.reshape((2, B // 2) + a.shape[1:])
  params, opt_state = replicate(params), replicate(optimizer.init(params))
  batch = jax.tree_util.tree_map(shard, batch)
  for _ in range(NUM_STEPS):
    params, opt_state = train_step(params, opt_state, batch)
  expected = single_device_params()
  for replica in range(2):
    chex.assert_trees_all_close(
        jax.tree_util.tree_map(lambda p: p[replica], params),
        expected,
        rtol=RTOL,
        atol=ATOL,
    )
  # The parameters did move.
  assert not np.allclose(
      expected['classifier']['kernel'],
      training_setup()[2]['classifier']['kernel'],
  )


def test_jit_sharded_batch_training_step_equals_single_device_step():
  """jit over a batch sharded on a 2-device mesh == one device, whole batch."""
  model, optimizer, params, batch = training_setup()
  mesh = Mesh(np.array(jax.devices()[:2]), ('batch',))
  replicated = NamedSharding(mesh, P())
  batch = jax.device_put(batch, NamedSharding(mesh, P('batch')))
  params = jax.device_put(params, replicated)
  opt_state = jax.device_put(optimizer.init(params), replicated)
  assert all(len(a.sharding.device_set) == 2 for a in batch)
  assert batch[0].addressable_shards[0].data.shape == (B // 2, T, D)

  @jax.jit
  def train_step(params, opt_state, batch):
    grads = jax.grad(functools.partial(loss_fn, model))(params, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(NUM_STEPS):
    params, opt_state = train_step(params, opt_state, batch)
  chex.assert_trees_all_close(
      params, single_device_params(), rtol=RTOL, atol=ATOL
  )
