"""The notebooks in notebooks/: committed clean, and run top to bottom.

Each notebook is executed with nbclient in a kernel of this interpreter, with
``ELEATT_SMALL=1`` (the notebooks shrink data, models and training) and
``notebooks/`` as the working directory; a cell that raises fails the test.
The real data is read from ``../shared/data`` (or ``$ELEATT_SHARED_DATA``);
without it, 02 runs on its synthetic fallback, which is also tested here.
"""

import json
import os
import pathlib
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / 'notebooks'
NOTEBOOKS = (
    '01_quickstart.ipynb',
    '02_skeleton_attention.ipynb',
    '03_use_in_your_flax_code.ipynb',
)
KERNEL_NAME = 'eleatt-test-python'
CELL_TIMEOUT_S = 600


def test_notebooks_present():
  assert sorted(p.name for p in NOTEBOOK_DIR.glob('*.ipynb')) == sorted(
      NOTEBOOKS
  )


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_committed_without_outputs(name):
  """Outputs are cleared: no outputs, no execution counts (nbformat 4)."""
  nb = json.loads((NOTEBOOK_DIR / name).read_text(encoding='utf-8'))
  assert nb['nbformat'] == 4
  dirty = [
      i
      for i, cell in enumerate(nb['cells'])
      if cell['cell_type'] == 'code'
      and (cell.get('outputs') or cell.get('execution_count') is not None)
  ]
  assert not dirty, (
      f'{name}: cells {dirty} have outputs or execution counts; '
      'clear them before committing (e.g. jupyter nbconvert '
      '--clear-output --inplace notebooks/*.ipynb)'
  )


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_first_cell_sets_up_colab_and_local(name):
  nb = json.loads((NOTEBOOK_DIR / name).read_text(encoding='utf-8'))
  code = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code']
  first = code[0]
  assert 'google.colab' in first and 'REPO_URL' in first and 'pip' in first
  assert 'sys.path.insert' in first and 'ELEATT_SMALL' in first


@pytest.fixture(scope='module')
def kernel_env(tmp_path_factory):
  """A kernelspec for this interpreter, found through $JUPYTER_PATH."""
  pytest.importorskip('nbclient')
  pytest.importorskip('nbformat')
  pytest.importorskip('ipykernel')
  pytest.importorskip('matplotlib')
  jupyter_path = tmp_path_factory.mktemp('jupyter')
  spec_dir = jupyter_path / 'kernels' / KERNEL_NAME
  spec_dir.mkdir(parents=True)
  (spec_dir / 'kernel.json').write_text(
      json.dumps({
          'argv': [
              sys.executable,
              '-m',
              'ipykernel_launcher',
              '-f',
              '{connection_file}',
          ],
          'display_name': 'eleatt-jax tests',
          'language': 'python',
      })
  )
  return jupyter_path


def run_notebook(name, jupyter_path, tmp_path, monkeypatch, **env):
  import nbclient  # pylint: disable=g-import-not-at-top
  import nbformat  # pylint: disable=g-import-not-at-top

  monkeypatch.setenv('JUPYTER_PATH', str(jupyter_path))
  monkeypatch.setenv('ELEATT_SMALL', '1')
  monkeypatch.setenv('JAX_NUMPY_RANK_PROMOTION', 'raise')  # as the suite's
  monkeypatch.setenv('ELEATT_OUTPUT_DIR', str(tmp_path / 'outputs'))
  monkeypatch.setenv('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
  monkeypatch.delenv('ELEATT_SAVE_FIGURES', raising=False)
  for key, value in env.items():
    monkeypatch.setenv(key, value)
  nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
  client = nbclient.NotebookClient(
      nb,
      kernel_name=KERNEL_NAME,
      timeout=CELL_TIMEOUT_S,
      resources={'metadata': {'path': str(NOTEBOOK_DIR)}},
  )
  start = time.perf_counter()
  client.execute()  # raises CellExecutionError naming the cell that failed
  elapsed = time.perf_counter() - start
  print(f'{name}: executed in {elapsed:.1f} s')
  return nb


def _text(nb):
  out = []
  for cell in nb.cells:
    for o in cell.get('outputs', []):
      out.append(
          o.get('text', '') or ''.join(o.get('data', {}).get('text/plain', ''))
      )
  return '\n'.join(out)


def _images(nb):
  return sum(
      'image/png' in o.get('data', {}) or 'image/gif' in o.get('data', {})
      for cell in nb.cells
      for o in cell.get('outputs', [])
  )


@pytest.mark.parametrize('name', NOTEBOOKS)
@pytest.mark.slow
def test_notebook_runs(name, kernel_env, tmp_path, monkeypatch):
  nb = run_notebook(name, kernel_env, tmp_path, monkeypatch)
  text = _text(nb)
  assert 'small: True' in text
  if name.startswith('01'):
    assert _images(nb) >= 3  # the digits, the curves, the gate
    assert 'test accuracy' in text
  elif name.startswith('02'):
    assert _images(nb) >= 6  # skeleton, GIF, curves, confusion, heat map, ...
    assert (tmp_path / 'outputs' / 'skeleton_attention.gif').stat().st_size > 0
  else:
    for check in (
        'same outputs: True',
        'outputs past the end are zero: True',
        'final carry = carry at the last valid step: True',
        'pmap and jit + sharding give the same parameters: True',
        'restored equals saved: True',
    ):
      assert check in text


@pytest.mark.slow
def test_skeleton_notebook_without_real_data(kernel_env, tmp_path, monkeypatch):
  """Without the real files 02 says so and runs on its synthetic data.

  (Where the real data is absent, test_notebook_runs already takes this path.)
  """
  data = pathlib.Path(
      os.environ.get('ELEATT_SHARED_DATA') or ROOT.parent / 'shared' / 'data'
  )
  if not (data / 'nucla').is_dir():
    pytest.skip(
        f'{data / "nucla"} is absent: test_notebook_runs covers the fallback'
    )
  nb = run_notebook(
      '02_skeleton_attention.ipynb',
      kernel_env,
      tmp_path,
      monkeypatch,
      ELEATT_SHARED_DATA=str(tmp_path / 'absent'),
  )
  text = _text(nb)
  assert 'N-UCLA not found' in text and 'FALLBACK' in text
  assert 'synthetic: train' in text
