"""Sphinx configuration of the eleatt-jax documentation (`make docs`).

MyST Markdown pages and MyST-NB notebooks, as Flax and Optax build theirs.
The notebooks are rendered without running them (tests/test_notebooks.py runs
them); the API reference is generated from the package (api_pages.py).
"""

import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # this checkout's eleatt_jax
sys.path.insert(0, str(DOCS))

import api_pages  # noqa: E402
import eleatt_jax  # noqa: E402
from tools import project as project_settings  # noqa: E402

api_pages.write(DOCS / 'api')

project = 'eleatt-jax'
author = 'the eleatt-jax authors'
copyright = '2026, the eleatt-jax authors'  # noqa: A001
version = release = eleatt_jax.__version__

extensions = [
    'myst_nb',
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
    'sphinx.ext.viewcode',
]
templates_path = ['_templates']
exclude_patterns = [
    '_build',
    'api_pages.py',
    'api/modules.md',  # included by architecture.md
    'notebooks/.ipynb_checkpoints',
]

# MyST: $...$ maths (the notebooks use it), ::: fences, heading anchors for
# links such as [Streaming](streaming.md#latency).
myst_enable_extensions = ['dollarmath', 'colon_fence']
myst_heading_anchors = 3
# MyST-NB: render the committed (output-free) notebooks as they are.
nb_execution_mode = 'off'

# Autodoc: Google-style docstrings (Flax's), members in source order, the
# signature's type hints in the description.
autosummary_generate = True
autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# `Attributes:` as fields of the class, not as attribute entries that
# :members: would document a second time.
napoleon_use_ivar = True

html_theme = 'sphinx_book_theme'
html_title = 'eleatt-jax'
html_theme_options = {
    'repository_url': project_settings.repository_url(),  # setup.cfg
    'use_repository_button': True,
    'show_toc_level': 2,
}
