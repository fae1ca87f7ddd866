"""The notebooks' Colab badges and install cells come from setup.cfg.

tools/colab.py makes them from the one repository URL (setup.cfg
``project_urls``, ``Source``); here they must match it, name no placeholder,
install only what the notebooks need, and work in Colab (simulated: a fake
``google.colab`` module, ``pip`` captured) from the repository or a wheel.
"""

import configparser
import json
import subprocess
import sys
import types

import pytest

from tools import colab
from tools import project

ROOT = project.ROOT


def test_notebooks_readme_and_docs_match_setup_cfg():
  stale = colab.stale_files()
  assert not stale, (
      f"{[str(p.relative_to(ROOT)) for p in stale]} differ from setup.cfg's "
      'repository URL: run `python -m tools.colab --write` (make colab)'
  )


def test_no_placeholder_owner():
  for path in [
      ROOT / 'README.md',
      *ROOT.glob('docs/*.md'),
      *ROOT.glob('notebooks/*.ipynb'),
  ]:
    assert 'OWNER' not in path.read_text(encoding='utf-8'), path


def test_another_url_changes_every_badge_and_install(tmp_path):
  url = 'https://github.com/someone/a-fork'
  for path, text in colab.generated_files(url).items():
    if path.suffix == '.ipynb':
      assert f"REPO_URL = '{url}'" in text, path
      assert colab.colab_url(path.name, url) in text, path
    for match in colab.COLAB_LINK.finditer(text):
      assert match[0].startswith(
          'https://colab.research.google.com/github/someone/a-fork/'
      ), (path, match[0])


def test_repository_url_must_be_a_github_repository(tmp_path):
  cfg = tmp_path / 'setup.cfg'
  cfg.write_text('[metadata]\nproject_urls =\n  Source = https://x.org/a/b\n')
  with pytest.raises(ValueError, match='github.com/<owner>/<name>'):
    project.repository_url(cfg)
  cfg.write_text('[metadata]\nproject_urls =\n  Docs = https://x.org\n')
  with pytest.raises(KeyError, match='Source'):
    project.repository_url(cfg)


def _extra(name, extras):
  """The requirements of an extra, self-references (eleatt-jax[a,b]) expanded."""
  found = []
  for line in extras[name].split('\n'):
    line = line.split('#')[0].strip()
    if line.startswith('eleatt-jax['):
      for inner in line[len('eleatt-jax[') : -1].split(','):
        found += _extra(inner, extras)
    elif line:
      found.append(line)
  return found


def test_colab_extra_pulls_only_what_the_notebooks_need():
  config = configparser.ConfigParser()
  config.read(ROOT / 'setup.cfg')
  requirements = _extra(colab.EXTRA, config['options.extras_require'])
  names = {r.split('>')[0].split('=')[0].split('[')[0] for r in requirements}
  assert not names & {'nbclient', 'nbformat', 'ipykernel', 'jupyter'}, names
  # What the notebooks import beyond the core.
  assert {'optax', 'orbax-checkpoint', 'matplotlib', 'mlxtend'} <= names


def _run_setup_cell_in_fake_colab(tmp_path, monkeypatch):
  """Runs the generated part of a setup cell as Colab would; returns pip's
  command line."""
  calls = []
  monkeypatch.setitem(sys.modules, 'google', types.ModuleType('google'))
  monkeypatch.setitem(
      sys.modules, 'google.colab', types.ModuleType('google.colab')
  )
  monkeypatch.setattr(subprocess, 'check_call', calls.append)
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(colab.setup_cell(), namespace)  # pylint: disable=exec-used
  assert namespace['IN_COLAB'] and namespace['REPO_ROOT'] is None
  (command,) = calls
  return command


def test_colab_installs_from_the_repository(tmp_path, monkeypatch):
  command = _run_setup_cell_in_fake_colab(tmp_path, monkeypatch)
  assert command[1:] == [
      '-m',
      'pip',
      'install',
      '-q',
      f'eleatt-jax[colab] @ git+{project.repository_url()}',
  ]


def test_colab_installs_an_uploaded_wheel(tmp_path, monkeypatch):
  wheel = tmp_path / 'eleatt_jax-0.1.0-py3-none-any.whl'
  wheel.write_bytes(b'')
  command = _run_setup_cell_in_fake_colab(tmp_path, monkeypatch)
  assert command[-1] == f'eleatt-jax[colab] @ {wheel.as_uri()}'


def test_setup_cell_finds_the_checkout_outside_colab(monkeypatch):
  monkeypatch.chdir(ROOT / 'notebooks')
  monkeypatch.setattr(sys, 'path', list(sys.path))
  namespace = {}
  exec(colab.setup_cell(), namespace)  # pylint: disable=exec-used
  assert not namespace['IN_COLAB'] and namespace['REPO_ROOT'] == ROOT


def test_notebooks_keep_their_own_setup_after_the_marker():
  for path in sorted((ROOT / 'notebooks').glob('*.ipynb')):
    nb = json.loads(path.read_text(encoding='utf-8'))
    code = next(c for c in nb['cells'] if c['cell_type'] == 'code')
    text = ''.join(code['source'])
    assert text.startswith(colab.setup_cell()), path
    assert 'ELEATT_SMALL' in text.split(colab.END_MARKER, 1)[1], path
