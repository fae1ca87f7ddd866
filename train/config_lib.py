"""The config schema and its one validation, `validate(config)`.

The schema is train/configs/default.py: every experiment config changes its
values only. `validate` checks, once at start-up, that no key is unknown or
missing and that every value is in its allowed range, with a message naming
the key and the range. `unknown_key` gives the message for one dotted key,
for the command line (absl cannot parse an override of a key that does not
exist, so main.py asks before it parses). `run_defining_diff` names the keys
in which two runs differ in their model or data (for a rerun on a workdir).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from eleatt_jax import classifier
from train.configs import default as default_config


class ConfigError(ValueError):
  """A config value is outside its allowed range."""


def flatten(cfg: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """``{'model.cell': 'gru', ...}``: dotted key -> leaf value."""
  keys = {}
  for k, v in cfg.items():
    path = f'{prefix}{k}'
    if isinstance(v, (ml_collections.ConfigDict, dict)):
      keys.update(flatten(v, path + '.'))
    else:
      keys[path] = v
  return keys


def valid_keys(section: str = '') -> list[str]:
  """The config keys that exist (below `section`, e.g. ``'model'``)."""
  keys = sorted(flatten(default_config.get_config()))
  if section:
    keys = [k for k in keys if k.startswith(section + '.')]
  return keys


def unknown_key(key: str, where: str = '') -> str | None:
  """A message for `key` if it is not a config key (None if it is).

  The message names the closest key and lists the valid ones at the level
  where `key` leaves the schema.
  """
  node, walked = default_config.get_config(), []
  for part in key.split('.'):
    children = list(node.keys()) if hasattr(node, 'keys') else []
    if part not in children:
      section = '.'.join(walked)
      close = difflib.get_close_matches(part, children, n=1)
      return (
          f'Unknown config key {key!r}{where}'
          + (f' (did you mean {".".join(walked + close)!r}?)' if close else '')
          + '. Valid keys'
          + (f' under {section!r}' if section else '')
          + ': '
          + ', '.join(sorted('.'.join(walked + [c]) for c in children))
      )
    walked.append(part)
    node = node[part]
  return None


# ----------------------------------------------------------------- ranges --


def _one_of(*allowed) -> tuple[Callable[[Any], bool], str]:
  return (lambda v: v in allowed), f'one of {allowed}'


def _number(
    lo=None, hi=None, *, lo_open=False, hi_open=False, integer=False
) -> tuple[Callable[[Any], bool], str]:
  """A range check ``lo <(=) v <(=) hi`` and its description."""

  def ok(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
      return False
    if integer and int(v) != v:
      return False
    if lo is not None and (v <= lo if lo_open else v < lo):
      return False
    return hi is None or (v < hi if hi_open else v <= hi)

  kind = 'an integer' if integer else 'a number'
  bounds = []
  if lo is not None:
    bounds.append(f'{">" if lo_open else ">="} {lo}')
  if hi is not None:
    bounds.append(f'{"<" if hi_open else "<="} {hi}')
  return ok, kind + (' ' + ' and '.join(bounds) if bounds else '')


def _streams_ok(v) -> bool:
  parts = v.split('+')
  return len(set(parts)) == len(parts) and set(parts) <= set(_STREAMS)


def _yaws_ok(v) -> bool:
  return isinstance(v, (tuple, list)) and all(
      isinstance(a, (int, float)) and not isinstance(a, bool) for a in v
  )


def _hidden_sizes_ok(v) -> bool:
  return len(v) > 0 and all(int(h) >= 1 for h in v)


_STREAMS = ('position', 'velocity', 'bone')  # eleatt_jax.datasets.pipeline

RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    'data.preprocess': _one_of('sequence', 'skeleton', 'video'),
    'data.num_frames': _number(0, integer=True),
    'data.train_per_class': _number(0, integer=True),
    'data.temporal': _one_of('pad', 'sample'),
    'data.center_joint': _number(-1, integer=True),
    'data.align_view': _one_of('none', 'shoulders', 'hips', 'body'),
    'data.max_angle': _number(0),
    'data.max_scale': _number(0, 1, hi_open=True),
    'data.jitter_sigma': _number(0),
    'data.streams': (
        _streams_ok,
        "distinct names of ('position', 'velocity', 'bone') joined by '+'",
    ),
    'data.temporal_crop': _number(0, 1, lo_open=True),
    'data.test_clips': _number(1, integer=True),
    'data.test_yaws': (_yaws_ok, 'a tuple of angles in radians'),
    'data.num_threads': _number(1, integer=True),
    'data.prefetch': _number(0, integer=True),
    'model.cell': _one_of(*classifier.CELLS),
    'model.hidden_sizes': (_hidden_sizes_ok, 'a non-empty tuple of sizes >= 1'),
    'model.gate_layers': (
        lambda v: classifier.parse_gate_layers(v) is not None,
        "'all', 'none' or an integer >= 0",
    ),
    'model.gate_bias_init': _number(),
    'model.dropout_rate': _number(0, 1, hi_open=True),
    'model.readout': _one_of(*classifier.READOUTS),
    'model.dtype': _one_of('float32', 'bfloat16', 'float16'),
    'model.unroll': _number(1, integer=True),
    'model.frame_encoder': _one_of('none', 'cnn'),
    'model.cnn_features': (_hidden_sizes_ok, 'a non-empty tuple of sizes >= 1'),
    'model.frame_features': _number(1, integer=True),
    'model.remat': _one_of(False, True),
    'optim.optimizer': _one_of('adam', 'adamw', 'sgd'),
    'optim.learning_rate': _number(0, lo_open=True),
    'optim.schedule': _one_of('constant', 'cosine', 'step', 'plateau'),
    'optim.warmup_steps': _number(0, integer=True),
    'optim.decay_factor': _number(0, 1, lo_open=True),
    'optim.plateau_patience': _number(0, lo_open=True),
    'optim.plateau_cooldown': _number(0),
    'optim.plateau_min_scale': _number(0, 1, lo_open=True),
    'optim.weight_decay': _number(0),
    'optim.label_smoothing': _number(0, 1, hi_open=True),
    'optim.ema_decay': _number(0, 1, hi_open=True),
    'optim.momentum': _number(0, 1, hi_open=True),
    'optim.grad_clip_norm': _number(0),
    'batch_size': _number(1, integer=True),
    'eval_batch_size': _number(1, integer=True),
    'num_train_steps': _number(0, integer=True),
    'num_epochs': _number(1, integer=True),
    'log_every_steps': _number(1, integer=True),
    'eval_every_steps': _number(0, integer=True),
    'checkpoint_every_steps': _number(0, integer=True),
    'keep_best': _number(1, integer=True),
    'final_checkpoint': _one_of('latest', 'best'),
    'seed': _number(0, integer=True),
    'parallel': _one_of('jit', 'pmap'),
    'progress': _one_of('auto', 'bar', 'lines', 'none'),
    'inject_nan_at_step': (
        lambda v: v == -1 or (isinstance(v, int) and v >= 1),
        '-1 (off) or a step >= 1',
    ),
}


def validate(config) -> None:
  """Checks every key and value of `config` against the schema.

  Raises:
    KeyError: a key is unknown (the message lists the valid ones) or missing.
    ConfigError: a value is outside its range (the message names the key and
      the allowed values).
  """
  schema = flatten(default_config.get_config())
  given = flatten(config)
  unknown = sorted(set(given) - set(schema))
  if unknown:
    raise KeyError(unknown_key(unknown[0]))
  missing = sorted(set(schema) - set(given))
  if missing:
    raise KeyError(
        f'Config lacks the keys {missing}; start from train/configs/default.py.'
    )
  for key, (ok, allowed) in RULES.items():
    value = given[key]
    try:
      good = ok(value)
    except (TypeError, ValueError):
      good = False
    if not good:
      raise ConfigError(f'config.{key} must be {allowed}, got {value!r}.')
  video = given['data.preprocess'] == 'video'
  if video != (given['model.frame_encoder'] == 'cnn'):
    raise ConfigError(
        "config.data.preprocess='video' and config.model.frame_encoder='cnn'"
        ' go together (the CNN reads the frames), got '
        f"data.preprocess={given['data.preprocess']!r}, "
        f"model.frame_encoder={given['model.frame_encoder']!r}."
    )
  if video and given['model.bidirectional']:
    raise ConfigError(
        "config.model.frame_encoder='cnn' runs a unidirectional RNN (it "
        'streams frame by frame); set config.model.bidirectional=False.'
    )
  if (
      given['data.eval_split'] == given['data.test_split']
      and not given['allow_test_selection']
  ):
    split = given['data.eval_split']
    raise ConfigError(
        f'config.data.eval_split={split!r} is the test split '
        '(config.data.test_split): the learning-rate schedule and the best '
        'checkpoint would be chosen on the test data, and the final test '
        'accuracy would no longer estimate the accuracy on unseen data. Give '
        'a split carved from the training data (--config.data.eval_split='
        'validation), or --config.allow_test_selection=True to select on '
        'the test split knowingly (its result is then no test result).'
    )
  if given['optim.schedule'] == 'step' and not all(
      int(s) > 0 for s in given['optim.decay_steps']
  ):
    raise ConfigError(
        'config.optim.decay_steps must be steps > 0, got '
        f'{given["optim.decay_steps"]!r}.'
    )
  if given['optim.ema_decay'] > 0 and given['optim.schedule'] == 'plateau':
    raise ConfigError(
        'config.optim.ema_decay > 0 does not go with optim.schedule='
        "'plateau' (the plateau scale is applied after the optimizer); use "
        'another schedule or ema_decay=0.'
    )
  if given['data.test_clips'] > 1 and given['data.temporal'] != 'sample':
    raise ConfigError(
        "config.data.test_clips > 1 needs data.temporal='sample', got "
        f'{given["data.temporal"]!r}.'
    )


def from_json(values: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """A saved config.json as a config; keys added since it was written get
  their defaults."""
  config = default_config.get_config()
  for key, value in flatten(values).items():
    node = config
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    if leaf in node:
      node[leaf] = tuple(value) if isinstance(value, list) else value
  return config


# Keys that say how a run is carried out, not what it trains: they may change
# between a run and its resumption (more steps, other logging, elsewhere).
OPERATIONAL_KEYS = frozenset({
    'data.data_dir',
    'data.manual_dir',
    'data.path',
    'data.num_threads',
    'data.prefetch',
    'eval_batch_size',
    'num_train_steps',
    'num_epochs',
    'log_every_steps',
    'checkpoint_every_steps',
    'keep_best',
    'final_checkpoint',
    'parallel',
    'progress',
    'tensorboard',
    'plots',
    'inject_nan_at_step',
    'overwrite',
    'allow_test_selection',
})


def run_defining_diff(saved: Mapping[str, Any], config) -> list[str]:
  """The keys, outside `OPERATIONAL_KEYS`, where `config` differs from a
  saved config.json (keys the saved one lacks do not count)."""
  old = flatten(saved)
  new = flatten(json.loads(config.to_json_best_effort()))
  return sorted(
      k
      for k in new
      if k in old and k not in OPERATIONAL_KEYS and old[k] != new[k]
  )
