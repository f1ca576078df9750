# The two commands a new user needs are `make run` and `make test`; both set everything up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages

.PHONY: run test check lint types unit integration bench fmt clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "dccgate needs Python 3.11 or newer; set PYTHON=python3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,loadtest]'
	touch $(STAMP)

# Debian packages the test suite uses: prometheus and prometheus-alertmanager give
# promtool/amtool, which check deploy/'s rules and configs; chromium renders the load-test
# report in tests/unit/workers/tools/loadtest/test_report_browser.py. Installed when missing and
# we are root with apt-get (CI, dev machines); otherwise those tests say what to install.
$(SYSTEM_STAMP): $(STAMP) Makefile
	@missing=""; \
	if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null; then \
	  missing="prometheus prometheus-alertmanager"; \
	fi; \
	if [ ! -x /usr/bin/chromium ]; then missing="$$missing chromium"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "note: missing Debian packages:$$missing (install them for the tests that use them)"; \
	  fi; \
	fi
	touch $(SYSTEM_STAMP)

## run: set up and run the whole gateway (embedded broker unless DCCGATE_BOOTSTRAP is set)
run: $(STAMP)
	$(BIN)/dccgate run $(ARGS)

## test: set up, lint, type-check and run every test (unit and integration)
test: $(STAMP) $(SYSTEM_STAMP) lint types
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/dccgate bench $(ARGS)

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
