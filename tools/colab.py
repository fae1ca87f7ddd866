r"""The notebooks' Colab badges and install cells, made from setup.cfg.

The repository's address is one setting, setup.cfg's ``project_urls``
``Source`` (:func:`tools.project.repository_url`). From it this module makes

* each notebook's Colab badge (in its first Markdown cell), and the badges in
  README.md and docs/*.md;
* each notebook's setup cell (its first code cell) up to the line
  ``# --- end of the generated setup ---``: in Colab it installs
  ``eleatt-jax[colab]`` (what the notebooks import; Colab has Jupyter) from a
  wheel uploaded next to the notebook (``make dist``) or else from the
  repository; elsewhere it puts the checkout on ``sys.path``.

Lines after the end marker are the notebook's own and are kept.

    python -m tools.colab            # lists what differs (exit status 1 if any)
    python -m tools.colab --write    # rewrites the files (make colab)

tests/test_colab.py fails while a file differs.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

from tools import project

ROOT = project.ROOT
NOTEBOOK_DIR = ROOT / 'notebooks'
# The Colab extra of setup.cfg: what the notebooks import.
EXTRA = 'colab'
END_MARKER = '# --- end of the generated setup ---'
BADGE_IMAGE = 'https://colab.research.google.com/assets/colab-badge.svg'
# A Colab link to one of our notebooks, whatever repository it names.
COLAB_LINK = re.compile(
    r'https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+'
    r'/blob/main/notebooks/(?P<name>[\w.-]+\.ipynb)'
)
# A pip requirement that installs the package from a GitHub repository.
GIT_REQUIREMENT = re.compile(r'git\+https://github\.com/[^/\s\'")]+/[\w.-]+')

SETUP_CELL = """\
# Setup. In Colab: install eleatt-jax (a wheel uploaded next to this notebook,
# from `make dist`, or else the repository). Elsewhere: use the local checkout
# this notebook sits in (or an installed eleatt-jax).
# Generated from setup.cfg's project_urls by `python -m tools.colab --write`.
import glob
import os
import pathlib
import subprocess
import sys

REPO_URL = '{url}'

try:
  import google.colab  # noqa: F401  (only importable inside Colab)
  IN_COLAB = True
except ImportError:
  IN_COLAB = False

REPO_ROOT = None
if IN_COLAB:
  wheels = glob.glob('eleatt_jax-*.whl')  # uploaded here (make dist)
  source = (pathlib.Path(max(wheels, key=os.path.getmtime)).resolve().as_uri()
            if wheels else f'git+{{REPO_URL}}')
  subprocess.check_call([sys.executable, '-m', 'pip', 'install', '-q',
                         f'eleatt-jax[{extra}] @ {{source}}'])
else:
  for folder in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents]:
    if (folder / 'eleatt_jax' / '__init__.py').exists():
      REPO_ROOT = folder
      sys.path.insert(0, str(folder))
      break
{end}
"""


def colab_url(name: str, url: str | None = None) -> str:
  """The Colab address of ``notebooks/<name>`` in the repository."""
  url = url or project.repository_url()
  return (
      url.replace(
          'https://github.com/', 'https://colab.research.google.com/github/'
      )
      + f'/blob/main/notebooks/{name}'
  )


def badge(name: str, url: str | None = None) -> str:
  return f'[![Open In Colab]({BADGE_IMAGE})]({colab_url(name, url)})'


def setup_cell(url: str | None = None) -> str:
  """The generated head of a notebook's first code cell."""
  url = url or project.repository_url()
  if '\\' in url or "'" in url:
    raise ValueError(f'not a plain URL: {url!r}')
  return SETUP_CELL.format(url=url, extra=EXTRA, end=END_MARKER)


def _fix_links(text: str, url: str) -> str:
  text = COLAB_LINK.sub(lambda m: colab_url(m['name'], url), text)
  return GIT_REQUIREMENT.sub(f'git+{url}', text)


def _source(cell) -> str:
  source = cell['source']
  return ''.join(source) if isinstance(source, list) else source


def _set_source(cell, text: str) -> None:
  cell['source'] = text.splitlines(keepends=True)


def notebook(path: pathlib.Path, url: str | None = None) -> str:
  """The notebook's JSON text with its badge and setup cell generated."""
  url = url or project.repository_url()
  nb = json.loads(path.read_text(encoding='utf-8'))
  first_markdown = next(c for c in nb['cells'] if c['cell_type'] == 'markdown')
  first_code = next(c for c in nb['cells'] if c['cell_type'] == 'code')
  text = _source(first_markdown)
  if not COLAB_LINK.search(text):
    raise ValueError(f'{path}: the first Markdown cell has no Colab badge')
  _set_source(first_markdown, _fix_links(text, url))
  code = _source(first_code)
  if END_MARKER in code:
    own = code.split(END_MARKER, 1)[1].lstrip('\n')
  else:  # the hand-written setup of older notebooks: keep what follows it
    match = re.search(r'^      break\n', code, re.MULTILINE)
    if not match:
      raise ValueError(
          f'{path}: the first code cell has neither {END_MARKER!r} nor the'
          ' setup it replaces'
      )
    own = code[match.end() :].lstrip('\n')
  _set_source(first_code, setup_cell(url) + ('\n' + own if own else ''))
  return json.dumps(nb, indent=1, ensure_ascii=False) + '\n'


def generated_files(url: str | None = None) -> dict[pathlib.Path, str]:
  """``{path: text it should have}`` for every file this module makes."""
  url = url or project.repository_url()
  files = {p: notebook(p, url) for p in sorted(NOTEBOOK_DIR.glob('*.ipynb'))}
  for path in [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]:
    files[path] = _fix_links(path.read_text(encoding='utf-8'), url)
  return files


def stale_files(url: str | None = None) -> list[pathlib.Path]:
  return [
      path
      for path, text in generated_files(url).items()
      if path.read_text(encoding='utf-8') != text
  ]


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--write', action='store_true', help='rewrite them')
  args = parser.parse_args(argv)
  url = project.repository_url()
  stale = stale_files(url)
  if args.write:
    files = generated_files(url)
    for path in stale:
      path.write_text(files[path], encoding='utf-8')
      print(f'wrote {path.relative_to(ROOT)}')
    return 0
  for path in stale:
    print(f'{path.relative_to(ROOT)}: differs from {url}; run make colab')
  return 1 if stale else 0


if __name__ == '__main__':
  sys.exit(main())
