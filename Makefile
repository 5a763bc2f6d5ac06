# PageLab: `make run` serves the app, `make test` runs lint and every test.
# Both create .venv and install what they need on a fresh machine (Python >= 3.11; the
# browser page also needs Node.js >= 20 with npm, its browser tests Debian's chromium).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint bench install clean web web-test core-compiled

# ---- the browser page (web/): npm ci when the lock file changes, a build when a source
# is newer than the last build.  Both stamps live in folders npm/vite recreate.
NPM       ?= npm
WEB       := web
WEB_DEPS  := $(WEB)/node_modules/.installed-stamp
WEB_BUILT := $(WEB)/dist/.built-stamp
WEB_SRC   := $(shell find $(WEB)/src -type f 2>/dev/null) $(WEB)/index.html $(WEB)/vite.config.js $(WEB)/package.json
# true when npm is there and node is at least 20 (Vite 8 needs it)
NODE_OK   := command -v $(NPM) >/dev/null 2>&1 && node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' >/dev/null 2>&1

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,ray]'
	touch $(STAMP)

install: $(STAMP)

$(WEB_DEPS): $(WEB)/package-lock.json $(WEB)/package.json
	cd $(WEB) && $(NPM) ci
	touch $@

$(WEB_BUILT): $(WEB_DEPS) $(WEB_SRC)
	cd $(WEB) && $(NPM) run build
	touch $@

web: $(WEB_BUILT)

web-test: $(WEB_DEPS)
	cd $(WEB) && $(NPM) test

run: $(STAMP)
	@if $(NODE_OK); then $(MAKE) --no-print-directory web; \
	else echo "make run: the browser page is not built: it needs Node.js >= 20 with npm (found: $$(node --version 2>/dev/null || echo no node), $$(command -v $(NPM) >/dev/null 2>&1 && echo npm || echo no npm)); serving the API only"; fi
	$(PY) -m app.serve --host $(HOST) --port $(PORT)

# ---- the compiled core (app/core built with mypyc into build/mypyc, selected with
# PAGELAB_CORE=compiled; the source stays the default).  Rebuilt when a core source changes;
# needs a C compiler and the Python headers.  `make test` builds it when a compiler is there.
CC        ?= cc
CORE_OUT  := build/mypyc/app/core/stamp.json
CORE_SRC  := $(wildcard app/core/*.py app/core/vm_page/*.py) tools/build_core.py
CC_OK     := command -v $(CC) >/dev/null 2>&1

$(CORE_OUT): $(STAMP) $(CORE_SRC)
	$(PY) tools/build_core.py

core-compiled: $(CORE_OUT)

lint: $(STAMP)
	$(VENV)/bin/ruff check app tests bench tools
	$(VENV)/bin/mypy app
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint Dockerfile

test: lint web web-test
	@if $(CC_OK); then $(MAKE) --no-print-directory core-compiled; \
	else echo "make test: no C compiler ($(CC)): the compiled core is not built and its tests are skipped"; fi
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis $(WEB)/node_modules $(WEB)/dist build
