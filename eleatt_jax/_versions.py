"""The versions that parts of eleatt_jax need beyond the core's bounds.

The core (gate, cells, layers, models, export) runs on the lower bounds in
setup.cfg (`make test-min` tests them). :mod:`eleatt_jax.nnx` needs a newer
Flax: its ``import`` raises an ImportError that says so instead of failing
deep inside ``flax.nnx``. setup.cfg's ``[nnx]`` extra states the same bound
(tests/test_versions.py checks that they agree).
"""

from __future__ import annotations

import importlib.metadata
import re

# The oldest Flax that eleatt_jax.nnx is tested with (`make test`).
NNX_MIN_FLAX = '0.12.8'


def version_tuple(version: str) -> tuple[int, ...]:
  """``'0.12.8'`` -> ``(0, 12, 8)``; a suffix (``rc1``, ``.dev3``) is dropped."""
  match = re.match(r'\d+(\.\d+)*', version)
  if not match:
    raise ValueError(f'not a version number: {version!r}')
  return tuple(int(part) for part in match.group(0).split('.'))


def require(distribution: str, minimum: str, feature: str, extra: str) -> None:
  """Raises ImportError if ``distribution`` is older than ``minimum``.

  Args:
    distribution: the installed package to check, e.g. ``'flax'``.
    minimum: the oldest version that works, e.g. ``'0.12.8'``.
    feature: what needs it, named in the message.
    extra: the eleatt-jax extra that installs it.
  """
  installed = importlib.metadata.version(distribution)
  if version_tuple(installed) < version_tuple(minimum):
    raise ImportError(
        f'{feature} needs {distribution}>={minimum}, but {distribution} '
        f'{installed} is installed; upgrade it with '
        f"pip install 'eleatt-jax[{extra}]' (or pip install -U "
        f"'{distribution}>={minimum}')."
    )
