# Two commands do all set-up on a fresh machine (Python >= 3.11, pip, Debian packages):
#   make demo   creates .venv, installs qcn-lsp, writes a test model with Qwen's vocabulary (or uses $QCN_MODEL),
#               and drives the server over stdio as an editor does
#   make test   creates .venv, installs qcn-lsp with its test extras, runs the whole test suite
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LLAMA_CPP_PYTHON := llama-cpp-python==0.3.36

.PHONY: demo test bench lint clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip wheel
	@echo ">> installing $(LLAMA_CPP_PYTHON): the first install compiles llama.cpp from source"
	@echo "   (about 10 minutes on 2 cores; pip caches the built wheel, so later installs take seconds)"
	@$(PY) -m pip install -v $(LLAMA_CPP_PYTHON) 2>&1 \
	  | grep --line-buffered -E '^\s*\[[0-9]+/[0-9]+\]|Successfully|already satisfied|ERROR|error:' \
	  | sed -u -E 's/^\s*(\[[0-9]+\/[0-9]+\]).*/   compiling llama.cpp \1/'
	@echo ">> installing qcn-lsp and its test extras"
	@$(PY) -m pip install -q -e '.[test]'
	@touch $@

demo: $(VENV)/.installed
	@$(PY) scripts/demo.py

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) bench/keystroke.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy engine context qcn_lsp scripts bench --ignore-missing-imports

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
