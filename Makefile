# `make run` and `make test` work on a fresh clone: they create .venv and install into it.
# The first install compiles llama.cpp (about 5 minutes on 2 cores; uv caches the wheel) and
# downloads the model's packages (1.1 GB; the tests' smaller model adds 0.5 GB).
PYTHON ?= python3
VENV := .venv
UV := $(VENV)/bin/uv
UV_ENV := UV_PROJECT_ENVIRONMENT=$(VENV) UV_PYTHON=$(VENV)/bin/python
# Installs compile the packages' bytecode: where PYTHONDONTWRITEBYTECODE is set, every process
# would compile them from source at each start instead (the server: 9 s instead of 3 s to
# import on two busy cores, and 4 MB more resident; docs/performance.md).
UV_SYNC := $(UV) sync --frozen --compile-bytecode

.PHONY: run test lint typecheck install install-dev install-js clean bench bench-tools

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.8

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV_ENV) $(UV_SYNC) --inexact --extra local
	touch $@

$(VENV)/.installed-dev: pyproject.toml uv.lock | $(UV)
	$(UV_ENV) $(UV_SYNC) --extra dev
	touch $@ $(VENV)/.installed

# The JavaScript clients our users run (the official openai package, the AI SDK with its
# OpenAI and OpenAI-compatible providers), for tests/test_openai_js.py, test_clients_ai_sdk.py,
# test_responses_js.py and test_ui_js.py; and the AI SDK example page's (examples/ui,
# tests/test_ui_page.py).
JS_DEPS := tests/js/node_modules/.package-lock.json
EXAMPLE_DEPS := examples/ui/node_modules/.package-lock.json

$(JS_DEPS): tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund
	touch $@

$(EXAMPLE_DEPS): examples/ui/package.json examples/ui/package-lock.json
	npm ci --prefix examples/ui --no-audit --no-fund
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

install-js: $(JS_DEPS) $(EXAMPLE_DEPS)

run: install
	$(VENV)/bin/streamchat serve

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install-dev
	$(VENV)/bin/mypy

# The test suite includes a short smoke run of the benchmark, which needs Go.
test: lint typecheck install-js bench-tools
	$(VENV)/bin/pytest

# The benchmark's fake upstream and load generator are Go programs (standard library only), so
# that the instruments are never the bottleneck. `python -m bench` builds them; this installs
# Debian's Go first when it is missing. Settings: BENCH_* variables, see docs/performance.md.
bench: install bench-tools
	$(VENV)/bin/python -m bench

bench-tools:
	@command -v go >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's golang-go for the benchmark tools"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go; \
	  else \
	    echo "the benchmark needs Go: install it (Debian: sudo apt-get install golang-go)" >&2; \
	    exit 1; \
	  fi; }

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache tests/js/node_modules bench/bin bench/.gocache
