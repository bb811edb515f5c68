# Two commands do all set-up on a fresh machine (Python >= 3.11, pip, Debian packages):
#   make demo   creates .venv, installs qcn-lsp, writes the tiny test model (or uses $QCN_MODEL),
#               and drives the server over stdio as an editor does
#   make test   creates .venv, installs qcn-lsp with its test extras, runs the whole test suite
# and one to put the server on PATH for editors:
#   make install   qcn-lsp into $(BINDIR) (~/.local/bin), in its own environment under $(LIBDIR);
#                  PREFIX, BINDIR, LIBDIR and DESTDIR as usual; `make uninstall` removes both
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LLAMA_CPP_PYTHON := llama-cpp-python==0.3.36
PREFIX ?= $(HOME)/.local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
# The installed server's own virtual environment: independent of this checkout and its .venv.
INSTALL_ENV := $(LIBDIR)/qcn-lsp

.PHONY: demo test bench lint vscode clean install uninstall

# $(call install_llama_cpp,PYTHON): pip shows nothing while it compiles, so its compile steps
# become progress lines.
define install_llama_cpp
@$(1) -m pip install -q --upgrade pip wheel
@echo ">> installing $(LLAMA_CPP_PYTHON): the first install compiles llama.cpp from source"
@echo "   (about 10 minutes on 2 cores; pip caches the built wheel, so later installs take seconds)"
@$(1) -m pip install -v $(LLAMA_CPP_PYTHON) 2>&1 \
  | grep --line-buffered -E '^\s*\[[0-9]+/[0-9]+\]|Successfully|already satisfied|ERROR|error:' \
  | sed -u -E 's/^\s*(\[[0-9]+\/[0-9]+\]).*/   compiling llama.cpp \1/'
endef

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(call install_llama_cpp,$(PY))
	@echo ">> installing qcn-lsp and its test extras"
	@# setuptools warns that folders named like the packages shadow them: in a checkout they are them.
	@PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q -e '.[test]'
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

# The VS Code extension: its checks and .vsix, then the real-VS-Code test (editors/vscode/README.md).
vscode: $(VENV)/.installed
	editors/vscode/scripts/setup-e2e.sh
	QCN_REQUIRE_EDITORS=1 $(PY) -m pytest -q tests/editors/test_vscode_settings.py tests/editors/test_vscode.py

# The command runs the environment's Python (not its entry-point script), so that a tree staged
# under DESTDIR works once it is moved to PREFIX; -I keeps the folder it runs in (an editor's
# project, which may have its own `context/` or `engine/`) and PYTHONPATH out of its imports.
install:
	@if [ -e "$(DESTDIR)$(INSTALL_ENV)" ] && [ ! -f "$(DESTDIR)$(INSTALL_ENV)/pyvenv.cfg" ]; then \
	  echo "make install: $(DESTDIR)$(INSTALL_ENV) exists and is not qcn-lsp's environment; set LIBDIR"; exit 1; fi
	@echo ">> installing qcn-lsp into its own environment, $(DESTDIR)$(INSTALL_ENV)"
	@$(PYTHON) -m venv "$(DESTDIR)$(INSTALL_ENV)"
	$(call install_llama_cpp,"$(DESTDIR)$(INSTALL_ENV)/bin/python")
	@"$(DESTDIR)$(INSTALL_ENV)/bin/python" -m pip install -q .
	@mkdir -p "$(DESTDIR)$(BINDIR)"
	@printf '#!/bin/sh\nexec "%s/bin/python" -I -m qcn_lsp "$$@"\n' "$(INSTALL_ENV)" > "$(DESTDIR)$(BINDIR)/qcn-lsp"
	@chmod 755 "$(DESTDIR)$(BINDIR)/qcn-lsp"
	@echo ">> installed $(BINDIR)/qcn-lsp (editors run this command; remove it with make uninstall)"
	@case ":$$PATH:" in *":$(BINDIR):"*) ;; *) \
	  echo "   $(BINDIR) is not on your PATH: add  export PATH=\"$(BINDIR):\$$PATH\"  to ~/.profile" \
	  "(or ~/.bashrc), then open a new shell";; esac

uninstall:
	rm -rf "$(DESTDIR)$(INSTALL_ENV)" "$(DESTDIR)$(BINDIR)/qcn-lsp"

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
