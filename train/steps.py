"""The pure step functions, and `evaluate` (a pass of eval steps).

`train_step(state, batch, rng) -> (state, metrics)` draws its dropout key by
``fold_in(rng, step)``; under `jax.jit` with a batch sharded over a `Mesh` its
sums run over the global batch, under `jax.pmap` (``axis_name`` set) they are
`psum`-ed. `train.parallel` runs them one way or the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from eleatt_jax.models import StackedRNNClassifier
from train.state import TrainState


def _cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _smoothed_cross_entropy(logits, labels, smoothing: float):
  """Cross-entropy against (1 - smoothing) one-hot + smoothing / C."""
  if not smoothing:
    return _cross_entropy(logits, labels)
  targets = optax.smooth_labels(
      jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype), smoothing
  )
  return optax.softmax_cross_entropy(logits, targets)


def _all_finite(tree) -> jax.Array:
  leaves = [
      jnp.all(jnp.isfinite(x))
      for x in jax.tree_util.tree_leaves(tree)
      if jnp.issubdtype(x.dtype, jnp.inexact)
  ]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def train_step(
    state: TrainState,
    batch: Mapping[str, jax.Array],
    rng: jax.Array,
    *,
    model: StackedRNNClassifier,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    axis_name: str | None = None,
    label_smoothing: float = 0.0,
):
  """One optimizer step on one (global) batch.

  Pure: the dropout key is ``fold_in(rng, step)`` (and, under pmap, the
  device index).

  Args:
    state: The train state.
    batch: ``x`` <f32>[B, T, D], ``length`` <i32>[B], ``label`` <i32>[B],
      ``mask`` <bool>[B] (rows that count).
    rng: The run's dropout key (the same at every step).
    model: The classifier.
    tx: The optimizer (without the plateau scale).
    schedule: Its learning-rate schedule, for the metrics.
    axis_name: The pmap axis, or None under jit.
    label_smoothing: Of the loss's targets (0: off).

  Returns:
    ``(new_state, metrics)``; metrics: ``loss``, ``accuracy``, ``grad_norm``,
    ``learning_rate`` (scalars) and ``params_finite`` (whether every new
    parameter is finite: no checkpoint is saved otherwise).
  """
  rng = jax.random.fold_in(rng, state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
  weights = batch['mask'].astype(jnp.float32)
  count = weights.sum()
  if axis_name is not None:
    count = jax.lax.psum(count, axis_name)
  count = jnp.maximum(count, 1.0)

  def loss_fn(params):
    logits = model.apply(
        {'params': params},
        batch['x'],
        batch['length'],
        train=True,
        rngs={'dropout': rng},
    )
    loss = (
        _smoothed_cross_entropy(logits, batch['label'], label_smoothing)
        * weights
    ).sum() / count
    return loss, logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params
  )
  correct = ((logits.argmax(-1) == batch['label']) * weights).sum() / count
  if axis_name is not None:
    grads, loss, correct = jax.lax.psum((grads, loss, correct), axis_name)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  scale = state.plateau.scale
  updates = jax.tree_util.tree_map(
      lambda u: (u * scale).astype(u.dtype), updates
  )
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(
      step=state.step + 1, params=params, opt_state=opt_state
  )
  metrics = {
      'loss': loss,
      'accuracy': correct,
      'grad_norm': optax.tree.norm(grads),
      'learning_rate': schedule(state.step) * scale,
      'params_finite': _all_finite(params),
  }
  return new_state, metrics


def eval_step(
    params,
    batch: Mapping[str, jax.Array],
    *,
    model: StackedRNNClassifier,
    num_classes: int,
    axis_name: str | None = None,
):
  """Sums over one evaluation batch (masked rows do not count).

  ``x`` <f32>[B, T, D], or <f32>[B, K, T, D] for test-time averaging: then
  the class probabilities of the K versions of each example are averaged,
  p = mean_k softmax(logits_k), and the loss is -log p[label].

  Returns:
    ``loss_sum``, ``correct``, ``count`` (scalars) and ``confusion``
    <f32>[C, C] (rows: true class, columns: predicted).
  """
  x, length = batch['x'], batch['length']
  if x.ndim == 4:
    b, k = x.shape[:2]
    logits = model.apply(
        {'params': params},
        x.reshape((b * k,) + x.shape[2:]),
        jnp.repeat(length, k),
        train=False,
    )
    # scores: log of the mean probability over the K versions.
    scores = jax.nn.log_softmax(logits.reshape(b, k, -1), axis=-1)
    scores = jax.nn.logsumexp(scores, axis=1) - jnp.log(k)
  else:
    scores = model.apply({'params': params}, x, length, train=False)
  per_example_loss = _cross_entropy(scores, batch['label'])
  weights = batch['mask'].astype(jnp.float32)
  pred = scores.argmax(-1)
  true_1h = jax.nn.one_hot(batch['label'], num_classes) * weights[:, None]
  out = {
      'loss_sum': (per_example_loss * weights).sum(),
      'correct': ((pred == batch['label']) * weights).sum(),
      'count': weights.sum(),
      'confusion': true_1h.T @ jax.nn.one_hot(pred, num_classes),
  }
  if axis_name is not None:
    out = jax.lax.psum(out, axis_name)
  return out


def plateau_update(state: TrainState, value, *, plateau_tx) -> TrainState:
  """Steps the reduce-on-plateau state with an evaluation loss."""
  _, plateau = plateau_tx.update(
      updates=jnp.zeros(()), state=state.plateau, value=value
  )
  return state.replace(plateau=plateau)


def evaluate(
    par, state, batches: Iterable[Mapping[str, np.ndarray]], num_classes: int
) -> dict:
  """Accuracy, loss, per-class accuracy and confusion over `batches`.

  Args:
    par: A `train.parallel` runner.
    state: The state as `par` holds it.
    batches: This process's rows of each global evaluation batch.
    num_classes: C.
  """
  totals = None
  for batch in batches:
    out = par.eval_step(state, par.device_batch(batch))
    totals = (
        out if totals is None else jax.tree_util.tree_map(jnp.add, totals, out)
    )
  totals = jax.device_get(totals)
  confusion = np.rint(np.asarray(totals['confusion'])).astype(np.int64)
  count = int(round(float(totals['count'])))
  per_class_total = confusion.sum(axis=1)
  per_class = [
      float(confusion[c, c] / per_class_total[c])
      if per_class_total[c]
      else None
      for c in range(num_classes)
  ]
  return {
      'accuracy': float(totals['correct']) / max(count, 1),
      'loss': float(totals['loss_sum']) / max(count, 1),
      'num_examples': count,
      'per_class_accuracy': per_class,
      'confusion_matrix': confusion.tolist(),
  }
