"""Writes the API reference pages from the package: every public name.

``docs/conf.py`` calls :func:`write` before Sphinx reads the sources, so the
reference follows the code: a name added to a module's ``__all__`` (or, for a
module without one, any public class, function or constant it exports) gets
its page on the next build, and a removed one loses it. The pages are build
outputs (``docs/api/``, ignored by git).
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import pkgutil
import types

# The public modules, in the order of the reference.
MODULES = (
    'eleatt_jax',
    'eleatt_jax.nnx',
    'eleatt_jax.export',
    'eleatt_jax.pretrained',
    'eleatt_jax.frame_encoders',
    'eleatt_jax.datasets',
    'eleatt_jax.viz',
)


def public_names(module: types.ModuleType) -> list[str]:
  """The names a user imports from ``module``.

  ``__all__`` when the module has one; otherwise the names without a leading
  underscore that are classes or functions defined in ``eleatt_jax`` (not
  re-exported from jax, flax or the standard library) or UPPER_CASE
  constants.
  """
  if hasattr(module, '__all__'):
    return sorted(module.__all__, key=str.lower)
  names = []
  for name in dir(module):  # dir(): the lazily loaded names of viz too
    if name.startswith('_'):
      continue
    value = getattr(module, name)
    if inspect.ismodule(value):
      continue
    if inspect.isclass(value) or inspect.isfunction(value):
      if (getattr(value, '__module__', '') or '').startswith('eleatt_jax'):
        names.append(name)
    elif name.isupper():
      names.append(name)
  return sorted(names, key=str.lower)


def page(module_name: str) -> str:
  """The reST source of one module's page: its docstring and a summary table
  whose entries each get a page of their own (autosummary)."""
  module = importlib.import_module(module_name)
  lines = [
      module_name,
      '=' * len(module_name),
      '',
      f'.. automodule:: {module_name}',
      '   :no-members:',
      '',
      f'.. currentmodule:: {module_name}',
      '',
      '.. autosummary::',
      '   :toctree: _autosummary',
      '   :nosignatures:',
      '',
  ]
  lines += [f'   {name}' for name in public_names(module)]
  return '\n'.join(lines) + '\n'


def modules_table() -> str:
  """A Markdown table of every module of ``eleatt_jax`` (private ones
  included: this is the map of the code) with its docstring's first line."""
  import eleatt_jax  # pylint: disable=g-import-not-at-top

  rows = ['| module | what |', '|---|---|']
  names = ['eleatt_jax'] + sorted(
      info.name
      for info in pkgutil.walk_packages(eleatt_jax.__path__, 'eleatt_jax.')
      if not info.name.endswith('__main__')
  )
  for name in names:
    module = importlib.import_module(name)
    first = (module.__doc__ or '').strip().splitlines()
    summary = first[0].replace('|', '\\|') if first else ''
    rows.append(f'| `{name}` | {summary} |')
  return '\n'.join(rows) + '\n'


def write(directory: pathlib.Path) -> list[pathlib.Path]:
  """Writes ``<module>.rst`` for each of :data:`MODULES` into ``directory``
  (only files whose text changed, so that Sphinx rebuilds only those)."""
  directory.mkdir(parents=True, exist_ok=True)
  written = []
  for module_name in MODULES:
    path = directory / f'{module_name}.rst'
    text = page(module_name)
    if not path.exists() or path.read_text() != text:
      path.write_text(text)
    written.append(path)
  path = directory / 'modules.md'
  text = modules_table()
  if not path.exists() or path.read_text() != text:
    path.write_text(text)
  written.append(path)
  return written
