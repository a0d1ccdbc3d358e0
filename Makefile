# One command to install and serve, one to test (see README.md). Everything installs into .venv.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: serve test install install-test browser

serve: install
	$(BIN)/framepack-live serve

test: install-test browser
	$(BIN)/python -m pytest

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first and pinned: left to the resolver, pip would pull a multi-GB CUDA build on CPU machines.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The browser tests drive Debian's Chromium; playwright's own browser download cannot work offline.
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
