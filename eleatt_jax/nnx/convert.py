"""Parameters between the linen and the NNX modules.

The NNX modules of :mod:`eleatt_jax.nnx` store their parameters under the linen
modules' names, so a linen ``params`` tree and ``nnx.state(module, nnx.Param)``
have the same paths: cell ``{gate: {...}, input_kernel, recurrent_kernel, bias,
(recurrent_bias)}``; ``RNN`` ``{cell: ...}``; classifier ``{layer_i: {cell}``
or ``{forward_rnn, backward_rnn}}, classifier: {kernel, bias}}``.
``EleAtt(cell)`` converts its ``gate``; its ``cell`` converts only if the
wrapped linen and NNX cells name their parameters alike (Flax's stock linen and
NNX cells do not).

Example usage::

  >>> import jax, jax.numpy as jnp
  >>> import flax.linen as nn
  >>> from flax import nnx
  >>> import eleatt_jax
  >>> from eleatt_jax.nnx import EleAttGRUCell, from_linen, to_linen
  >>> x = jnp.ones((2, 5, 3))
  >>> variables = eleatt_jax.RNN(eleatt_jax.EleAttGRUCell(4)).init(
  ...     jax.random.key(0), x)
  >>> cell = from_linen(variables['params']['cell'])   # shapes give the cell
  >>> type(cell).__name__, cell.in_features, cell.hidden_features
  ('EleAttGRUCell', 3, 4)
  >>> y = eleatt_jax.nnx.RNN(cell)(x)
  >>> y_linen = eleatt_jax.RNN(eleatt_jax.EleAttGRUCell(4)).apply(variables, x)
  >>> bool(jnp.allclose(y, y_linen, atol=1e-6))
  True
  >>> jax.tree_util.tree_structure(to_linen(cell)) == (
  ...     jax.tree_util.tree_structure(dict(variables['params']['cell'])))
  True
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx
from flax import traverse_util
from flax.linen import meta

from eleatt_jax.nnx import cells

__all__ = ['cell_from_params', 'from_linen', 'load', 'to_linen']

# G (gate blocks per hidden unit) and the GRU's recurrent bias -> NNX class.
_BY_BLOCKS = {
    3: cells.EleAttGRUCell,
    4: cells.EleAttLSTMCell,
    1: cells.EleAttSimpleCell,
}


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
  """A plain nested dict of arrays: unwraps ``{'params': ...}``, unboxes."""
  params = meta.unbox(params)
  if isinstance(params, Mapping) and set(params) == {'params'}:
    params = params['params']
  return jax.tree_util.tree_map(
      jnp.asarray,
      traverse_util.unflatten_dict(traverse_util.flatten_dict(dict(params))),
  )


def to_linen(module: nnx.Module) -> dict[str, Any]:
  """The linen ``params`` tree of an :mod:`eleatt_jax.nnx` module.

  Apply it as ``{'params': to_linen(module)}`` to the linen module of the same
  configuration (cell, ``RNN(cell)`` or the classifier).
  """
  flat = nnx.to_flat_state(nnx.state(module, nnx.Param))
  return traverse_util.unflatten_dict(
      {tuple(str(k) for k in path): cells.value_of(v) for path, v in flat}
  )


def cell_from_params(
    params: Mapping[str, Any], *, rngs: nnx.Rngs | None = None, **kwargs
) -> cells.FusedCellBase:
  """An NNX fused cell shaped like a linen fused cell's ``params``.

  ``G = recurrent_kernel.shape[1] // recurrent_kernel.shape[0]`` says which
  cell (3: GRU, 4: LSTM, 1: Simple), ``gate`` whether it is gated; ``kwargs``
  (``gate_fn``, ``dtype``, ...) go to the constructor, which shape cannot say.
  """
  params = _plain(params)
  missing = {'input_kernel', 'recurrent_kernel', 'bias'} - set(params)
  if missing:
    raise ValueError(
        'from_linen: expected the params of a fused cell (keys input_kernel, '
        'recurrent_kernel, bias, optional gate/recurrent_bias); missing '
        f'{sorted(missing)} in keys {sorted(params)}. For an RNN, a classifier '
        'or EleAtt, pass the NNX module to load into: from_linen(params, '
        'module).'
    )
  d, gh = params['input_kernel'].shape
  h = params['recurrent_kernel'].shape[0]
  cls = _BY_BLOCKS.get(gh // h)
  if cls is None or gh % h:
    raise ValueError(
        f'from_linen: input_kernel {(d, gh)} and recurrent_kernel '
        f'{params["recurrent_kernel"].shape} give {gh / h} gate blocks; '
        'expected 1 (Simple), 3 (GRU) or 4 (LSTM).'
    )
  kwargs.setdefault('use_gate', 'gate' in params)
  kwargs.setdefault('param_dtype', params['input_kernel'].dtype)
  cell = cls(d, h, rngs=rngs or nnx.Rngs(0), **kwargs)
  return load(cell, params)


def load(module: nnx.Module, params: Mapping[str, Any]) -> nnx.Module:
  """Copies a linen ``params`` tree into ``module`` (in place) and returns it.

  Raises a ValueError naming the paths that are missing, extra, or of another
  shape than the module's.
  """
  params = traverse_util.flatten_dict(_plain(params))
  state = nnx.state(module, nnx.Param)
  flat = {
      tuple(str(k) for k in path): v for path, v in nnx.to_flat_state(state)
  }
  missing, extra = sorted(set(flat) - set(params)), sorted(
      set(params) - set(flat)
  )
  if missing or extra:
    fmt = lambda paths: ['/'.join(p) for p in paths][:6]
    raise ValueError(
        f'from_linen: the params do not match {type(module).__name__}: '
        f'missing {fmt(missing)}, unexpected {fmt(extra)}.'
    )
  for path, variable in flat.items():
    value = params[path]
    current = cells.value_of(variable)
    if tuple(value.shape) != tuple(current.shape):
      raise ValueError(
          f'from_linen: {"/".join(path)} has shape {tuple(value.shape)}; '
          f'{type(module).__name__} expects {tuple(current.shape)}.'
      )
    cells.set_value(variable, value.astype(current.dtype))
  nnx.update(module, state)
  return module


def from_linen(
    params: Mapping[str, Any], module: nnx.Module | None = None, **kwargs
) -> nnx.Module:
  """An NNX module holding a linen ``params`` tree.

  Args:
    params: the linen parameters (or ``{'params': ...}`` variables; boxed
      ``nn.Partitioned`` values are unboxed).
    module: the NNX module to load them into (same configuration as the linen
      one); None: a fused cell inferred from the shapes
      (:func:`cell_from_params`, with ``kwargs``).

  Returns:
    ``module`` (updated in place) or the new cell.
  """
  if module is None:
    return cell_from_params(params, **kwargs)
  if kwargs:
    raise ValueError(
        f'from_linen: {sorted(kwargs)} apply only when the cell '
        'is inferred (module=None).'
    )
  return load(module, params)
