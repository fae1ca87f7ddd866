r"""Serialized StableHLO of a trained classifier: no Flax, no eleatt_jax to run it.

:func:`export_classifier` exports four functions of a
:class:`~eleatt_jax.StackedRNNClassifier` with its parameters embedded as
constants (``jax.export``; ``b`` and ``t`` symbolic)::

    sequence(x <f32>[b, t, D], lengths <i32>[b]) -> logits <f32>[b, C]
    initialize_carry(x_t <f32>[b, D])            -> carry   (x_t: its shape only)
    step(carry, x_t <f32>[b, D])                 -> (carry, logits_t <f32>[b, C],
                                                     probabilities_t <f32>[b, C])
    step_valid(carry, x_t <f32>[b, D], valid <bool>[b]) -> the same as step

``step`` is :meth:`StackedRNNClassifier.step <eleatt_jax.StackedRNNClassifier.step>`:
``logits_t`` are the logits of the prefix ``0..t``. ``step_valid`` is the same
step with its ``valid`` argument, for a batch of streams of different lengths:
where ``valid`` is False (that stream has ended, or has no frame now), the
stream's carry, logits and probabilities stay as they were. The carry is a
dict of arrays. :func:`save` writes one ``<name>.jax_exported`` file per
function and a ``model_card.json`` (each function's signature and shapes, the
SHA-256 of each file, and what the caller adds: classes, preprocessing...).
Loading needs JAX alone::

    import jax
    with open('export/step.jax_exported', 'rb') as f:
      step = jax.export.deserialize(bytearray(f.read()))
    step_fn = jax.jit(step.call)   # a bare .call is ~3x slower per frame
    carry, logits_t, probabilities_t = step_fn(carry, x_t)

:func:`load` reads the files and checks them against the card first (a clear
ValueError for a damaged, missing or mismatched file); :func:`load_callables`
also wraps each function in ``jax.jit``, what to call frame by frame, with
``step(carry, x_t, valid=None)``.

Example usage::

  >>> import jax, jax.numpy as jnp, tempfile
  >>> from eleatt_jax import StackedRNNClassifier, export
  >>> model = StackedRNNClassifier(num_classes=3, hidden_sizes=(8,))
  >>> x = jnp.ones((2, 6, 4))                          # [B, T, D]
  >>> variables = model.init(jax.random.key(0), x)
  >>> functions = export.export_classifier(model, variables, input_features=4)
  >>> directory = tempfile.mkdtemp()
  >>> card = export.save(functions, directory)
  >>> loaded = export.load(directory)
  >>> logits = loaded['sequence'].call(jnp.ones((5, 9, 4)),
  ...                                  jnp.full((5,), 9, jnp.int32))
  >>> logits.shape
  (5, 3)
  >>> f = export.load_callables(directory)  # checked and jitted
  >>> carry = f['initialize_carry'](jnp.ones((2, 4)))
  >>> carry, logits_t, probabilities_t = f['step'](carry, jnp.ones((2, 4)))
  >>> carry, logits_t, probabilities_t = f['step'](   # stream 1 has ended
  ...     carry, jnp.ones((2, 4)), valid=jnp.array([True, False]))
  >>> carry['count'].tolist()
  [2, 1]
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable, Mapping

import jax
import jax.export  # noqa: F401  (jax 0.4.33 does not import it with jax)
import jax.numpy as jnp

#: The suffix of each exported function's file.
SUFFIX = '.jax_exported'
#: The model card's file name, beside the functions' files.
CARD = 'model_card.json'
#: The card's own checksum, a key of the card: the SHA-256 of the rest of it.
CARD_DIGEST = 'card_sha256'


def card_digest(card: Mapping[str, Any]) -> str:
  """SHA-256 of a card without its `CARD_DIGEST` (canonical JSON).

  >>> ab, ba = {'classes': ['a', 'b']}, {'classes': ['b', 'a']}
  >>> card_digest(ab) == card_digest(dict(ab, card_sha256='anything'))
  True
  >>> card_digest(ab) == card_digest(ba)
  False
  """
  body = {k: v for k, v in card.items() if k != CARD_DIGEST}
  text = json.dumps(body, sort_keys=True, separators=(',', ':'))
  return hashlib.sha256(text.encode()).hexdigest()


#: The functions that :func:`export_classifier` can export.
FUNCTIONS = ('sequence', 'initialize_carry', 'step', 'step_valid')
#: How each function is called, written to the model card.
SIGNATURES = {
    'sequence': 'sequence(x [b, t, D], lengths <int32>[b]) -> logits [b, C]',
    'initialize_carry': (
        'initialize_carry(x_t [b, D]) -> carry (a dict of '
        'arrays; x_t: its shape only)'
    ),
    'step': (
        'step(carry, x_t [b, D]) -> (carry, logits_t [b, C], '
        'probabilities_t [b, C])'
    ),
    'step_valid': (
        'step_valid(carry, x_t [b, D], valid <bool>[b]) -> (carry, '
        'logits_t [b, C], probabilities_t [b, C]); where valid is '
        "False, that stream's carry, logits_t and probabilities_t "
        'stay as they were'
    ),
}


def export_classifier(
    model,
    variables: Mapping[str, Any],
    input_features: int,
    *,
    platforms: tuple[str, ...] | None = None,
    dtype: Any = jnp.float32,
    names: tuple[str, ...] = FUNCTIONS,
) -> dict[str, jax.export.Exported]:
  """Exports the full-sequence, initial-carry and step functions of ``model``.

  Args:
    model: a unidirectional :class:`~eleatt_jax.StackedRNNClassifier` for the
      step (a bidirectional one exports ``sequence`` alone).
    variables: its variables, ``{'params': ...}``; embedded as constants.
    input_features: D.
    platforms: the platforms to lower for (default: JAX's default backend).
    dtype: the inputs' dtype.
    names: the functions to export, among :data:`FUNCTIONS` (each is traced
      and lowered: fewer export faster).

  Returns:
    A dict from each function's name (``sequence``, ``initialize_carry``,
    ``step``, ``step_valid``, or those of ``names``) to its
    ``jax.export.Exported`` (the module docstring gives their signatures).
  """
  unknown = set(names) - set(FUNCTIONS)
  if unknown:
    raise ValueError(
        f'export_classifier: unknown functions {sorted(unknown)};'
        f' the functions are {FUNCTIONS}.'
    )
  variables = jax.tree_util.tree_map(jnp.asarray, dict(variables))
  b, t = jax.export.symbolic_shape('b, t')
  d = int(input_features)
  export = lambda f, *specs: jax.export.export(jax.jit(f), platforms=platforms)(
      *specs
  )

  def sequence(x, lengths):
    return model.apply(variables, x, lengths)

  out = {}
  if 'sequence' in names:
    out['sequence'] = export(
        sequence,
        jax.ShapeDtypeStruct((b, t, d), dtype),
        jax.ShapeDtypeStruct((b,), jnp.int32),
    )
  if getattr(model, 'bidirectional', False):
    return out

  def initialize_carry(x_t):
    return model.initialize_carry(x_t.shape[0])

  def step_valid(carry, x_t, valid):
    carry, logits, _ = model.apply(variables, carry, x_t, valid, method='step')
    return carry, logits, jax.nn.softmax(logits, axis=-1)

  x_spec = jax.ShapeDtypeStruct((b, d), dtype)
  carry_spec = jax.tree_util.tree_map(
      lambda a: jax.ShapeDtypeStruct((b,) + a.shape[1:], a.dtype),
      model.initialize_carry(1),
  )
  if 'initialize_carry' in names:
    out['initialize_carry'] = export(initialize_carry, x_spec)
  if 'step' in names:
    # Without valid: the signature of the first exports, for their callers.
    out['step'] = export(
        lambda carry, x_t: step_valid(carry, x_t, None), carry_spec, x_spec
    )
  if 'step_valid' in names:
    out['step_valid'] = export(
        step_valid, carry_spec, x_spec, jax.ShapeDtypeStruct((b,), jnp.bool_)
    )
  return out


def _describe(exported: jax.export.Exported) -> dict[str, Any]:
  spec = lambda avals: [
      {'shape': [str(s) for s in a.shape], 'dtype': str(a.dtype)} for a in avals
  ]
  return {
      'inputs': spec(exported.in_avals),
      'outputs': spec(exported.out_avals),
      'platforms': list(exported.platforms),
  }


def save(
    functions: Mapping[str, jax.export.Exported],
    directory: str,
    card: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
  """Writes ``<name>.jax_exported`` per function and ``model_card.json``.

  ``card`` (classes, preprocessing, accuracy...) is merged into the card,
  which also lists each file with its SHA-256, inputs and outputs, and the
  signature (:data:`SIGNATURES`) of each function named there, and carries
  its own checksum (:data:`CARD_DIGEST`, checked by :func:`load`). Returns the
  card.
  """
  os.makedirs(directory, exist_ok=True)
  artifacts = {}
  for name, exported in functions.items():
    data = exported.serialize()
    path = os.path.join(directory, name + SUFFIX)
    with open(path + '.tmp', 'wb') as f:
      f.write(data)
    os.replace(path + '.tmp', path)
    artifacts[name] = {
        'file': name + SUFFIX,
        'sha256': hashlib.sha256(data).hexdigest(),
        **_describe(exported),
    }
    if name in SIGNATURES:
      artifacts[name]['signature'] = SIGNATURES[name]
  out = dict(card or {})
  out['artifacts'] = artifacts
  out.setdefault('versions', {})
  out['versions'].setdefault('jax', jax.__version__)
  out = json.loads(json.dumps(out))  # what a reader of the file will see
  out[CARD_DIGEST] = card_digest(out)
  with open(os.path.join(directory, CARD + '.tmp'), 'w') as f:
    json.dump(out, f, indent=2)
  os.replace(
      os.path.join(directory, CARD + '.tmp'), os.path.join(directory, CARD)
  )
  return out


def load(
    directory: str, names: tuple[str, ...] | None = None
) -> dict[str, jax.export.Exported]:
  """Reads the functions of a :func:`save` directory (``jax.export.deserialize``).

  Raises:
    FileNotFoundError: no ``model_card.json`` or a listed file is missing.
    ValueError: the card was changed after the export (its own checksum), a
      file does not match its SHA-256 in the card (damaged or from another
      export), or does not deserialize, or its inputs differ from the
      card's.
  """
  card_path = os.path.join(directory, CARD)
  if not os.path.exists(card_path):
    raise FileNotFoundError(
        f'{card_path} does not exist: is {directory!r} a '
        'directory written by eleatt_jax.export.save '
        '(python -m train.export)?'
    )
  with open(card_path) as f:
    try:
      card = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{card_path} is not valid JSON: {e}') from e
  if CARD_DIGEST in card and card_digest(card) != card[CARD_DIGEST]:
    raise ValueError(
        f'{card_path} was changed after the export (it no longer matches its '
        f'{CARD_DIGEST}): its classes or preprocessing may not be those of '
        'the functions. Export again (python -m train.export).'
    )
  artifacts = card.get('artifacts')
  if not isinstance(artifacts, dict):
    raise ValueError(f'{card_path} has no "artifacts" entry.')
  out = {}
  for name in names or tuple(artifacts):
    if name not in artifacts:
      raise ValueError(
          f'{card_path} lists the functions {sorted(artifacts)}, not {name!r}.'
      )
    entry = artifacts[name]
    path = os.path.join(directory, entry['file'])
    with open(path, 'rb') as f:
      data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry['sha256']:
      raise ValueError(
          f'{path}: SHA-256 {digest[:12]}... differs from the '
          f'{entry["sha256"][:12]}... in {CARD}: the file is damaged or comes '
          'from another export.'
      )
    try:
      exported = jax.export.deserialize(bytearray(data))
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(
          f'{path} is not a serialized jax.export function '
          f'({type(e).__name__}: {e}).'
      ) from e
    if _describe(exported)['inputs'] != entry['inputs']:
      raise ValueError(
          f'{path}: inputs {_describe(exported)["inputs"]} differ '
          f'from {entry["inputs"]} in {CARD}.'
      )
    out[name] = exported
  return out


def load_callables(
    directory: str, names: tuple[str, ...] | None = None
) -> dict[str, Callable[..., Any]]:
  """:func:`load`, each function wrapped in ``jax.jit``: what to call per frame.

  ``jax.jit(exported.call)`` compiles once per input shape and then runs as
  fast as the model's own jitted step; a bare ``exported.call`` dispatches
  the call eagerly, several times slower per frame. ``step`` takes the
  optional ``valid`` of :meth:`StackedRNNClassifier.step
  <eleatt_jax.StackedRNNClassifier.step>`::

    step(carry, x_t, valid=None) -> (carry, logits_t, probabilities_t)

  runs the ``step`` export without ``valid`` and ``step_valid`` with it
  (``<bool>[b]``, or anything that converts to it).

  Args:
    directory: a :func:`save` directory.
    names: the functions to load (default: all in the card). ``'step'``
      loads ``'step_valid'`` too where the card lists it.

  Raises:
    The errors of :func:`load`; ``step(..., valid=...)`` raises a ValueError
    if the export has no ``step_valid`` (it predates it: export again).
  """
  if (
      names is not None
      and 'step' in names
      and 'step_valid' not in names
      and 'step_valid' in _listed(directory)
  ):
    names = tuple(names) + ('step_valid',)
  functions = load(directory, names)
  out = {name: jax.jit(exported.call) for name, exported in functions.items()}
  if 'step_valid' in functions:
    step_valid_exported = functions['step_valid']
    out['step_valid'] = jax.jit(
        lambda carry, x_t, valid: step_valid_exported.call(
            carry, x_t, jnp.asarray(valid, bool)
        )
    )
  if 'step' in out:
    out['step'] = _step_with_valid(
        out['step'], out.get('step_valid'), directory
    )
  return out


def _listed(directory: str) -> tuple[str, ...]:
  """The functions the card lists (none if unreadable: load then says why)."""
  try:
    with open(os.path.join(directory, CARD)) as f:
      return tuple(json.load(f)['artifacts'])
  except (OSError, ValueError, KeyError, TypeError):
    return ()


def _step_with_valid(step, step_valid, directory):
  def call(carry, x_t, valid=None):
    if valid is None:
      return step(carry, x_t)
    if step_valid is None:
      raise ValueError(
          f'The export in {directory} has no step_valid function (it was '
          'written before step took valid): export the model again, or call '
          'step(carry, x_t) without valid.'
      )
    return step_valid(carry, x_t, valid)

  return call
