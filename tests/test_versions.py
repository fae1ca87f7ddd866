"""The version bounds are true: setup.cfg, the pins and the runtime checks.

`make test-min` runs this file on the lower bounds (requirements-min.txt),
where Flax is too old for eleatt_jax.nnx; `make test` on current versions.
"""

import configparser
import importlib.metadata
import pathlib
import re
import subprocess
import sys

import pytest

from eleatt_jax import _versions

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _setup_cfg():
  config = configparser.ConfigParser()
  config.read(ROOT / 'setup.cfg')
  return config


def _requirements(text):
  """'flax>=0.8.5' lines -> {'flax': ('>=', '0.8.5')}."""
  found = {}
  for line in text.splitlines():
    line = line.split('#')[0].strip()
    match = re.fullmatch(r'([A-Za-z0-9_.\-\[\]]+?)\s*(>=|==)\s*(\S+)', line)
    if match:
      found[match.group(1).lower()] = (match.group(2), match.group(3))
  return found


def test_core_lower_bounds_are_the_pins_of_make_test_min():
  core = _requirements(_setup_cfg()['options']['install_requires'])
  pins = _requirements((ROOT / 'requirements-min.txt').read_text())
  for name, (op, version) in core.items():
    assert op == '>=', f'setup.cfg install_requires: {name}{op}{version}'
    assert pins.get(name) == ('==', version), (
        f'setup.cfg requires {name}>={version} but requirements-min.txt pins '
        f'{pins.get(name)}: change both together'
    )


def test_nnx_extra_states_the_runtime_minimum():
  nnx = _requirements(_setup_cfg()['options.extras_require']['nnx'])
  assert nnx['flax'] == ('>=', _versions.NNX_MIN_FLAX)


def test_version_tuple():
  assert _versions.version_tuple('0.12.8') == (0, 12, 8)
  assert _versions.version_tuple('0.4.33rc1') == (0, 4, 33)
  assert _versions.version_tuple('1.0.dev3') == (1, 0)
  with pytest.raises(ValueError, match='not a version'):
    _versions.version_tuple('main')


def test_require_names_the_version_and_the_extra():
  installed = importlib.metadata.version('flax')
  _versions.require('flax', installed, 'this', extra='nnx')  # old enough
  with pytest.raises(ImportError) as error:
    _versions.require('flax', '999.0', 'eleatt_jax.nnx', extra='nnx')
  message = str(error.value)
  assert 'flax>=999.0' in message and installed in message
  assert 'eleatt-jax[nnx]' in message


def test_nnx_imports_or_says_which_flax_it_needs():
  """On a Flax older than the bound, a clear ImportError; else it imports.

  In a fresh interpreter, so that this process's eleatt_jax.nnx stays as the
  other tests imported it.
  """
  installed = importlib.metadata.version('flax')
  too_old = _versions.version_tuple(installed) < _versions.version_tuple(
      _versions.NNX_MIN_FLAX
  )
  run = subprocess.run(
      [sys.executable, '-c', 'import eleatt_jax.nnx'],
      cwd=ROOT,
      capture_output=True,
      text=True,
      check=False,
  )
  if too_old:
    assert run.returncode != 0
    last_line = run.stderr.strip().splitlines()[-1]
    assert last_line.startswith(
        'ImportError: eleatt_jax.nnx needs flax>='
    ), run.stderr
  else:
    assert run.returncode == 0, run.stderr
