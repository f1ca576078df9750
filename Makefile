# The two commands a new user needs are `make run` and `make test`; both set everything up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages

.PHONY: run test check lint types unit integration integration-kafka kafka-setup bench fmt clean kafka-up kafka-down fuzz

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "dccgate needs Python 3.11 or newer; set PYTHON=python3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,loadtest]'
	touch $(STAMP)

# Debian packages the test suite uses: prometheus and prometheus-alertmanager give
# promtool/amtool, which check deploy/'s rules and configs; chromium renders the load-test
# report in tests/unit/workers/tools/loadtest/test_report_browser.py; zsh runs the zsh
# completion script in tests/unit/workers/tools/test_completion.py. Installed when missing and
# we are root with apt-get (CI, dev machines); otherwise those tests say what to install.
$(SYSTEM_STAMP): $(STAMP) Makefile
	@missing=""; \
	if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null; then \
	  missing="prometheus prometheus-alertmanager"; \
	fi; \
	if [ ! -x /usr/bin/chromium ]; then missing="$$missing chromium"; fi; \
	if ! command -v zsh >/dev/null; then missing="$$missing zsh"; fi; \
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

# The demo's configuration: the example Users (registered in their roles, so the router
# decides their requests), allocations, ADT values and alert settings. CONFIG= runs without.
CONFIG ?= docs/examples/dccgate.toml

## run: set up and run the whole gateway (embedded broker unless DCCGATE_BOOTSTRAP is set)
run: $(STAMP)
	$(BIN)/dccgate run $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

## test: set up, lint, type-check and run every test (unit and integration) on the embedded
## broker, then the integration tests again on a 1-node Apache Kafka (docs/operations.md)
test: $(STAMP) $(SYSTEM_STAMP) kafka-setup lint types
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m pytest tests/integration --broker kafka $(PYTEST_ARGS)

check: test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/yamllint -c deploy/.yamllint.yml deploy/

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

## integration-kafka: the integration tests on a 1-node Apache Kafka the session starts itself
integration-kafka: $(STAMP) kafka-setup
	$(BIN)/python -m pytest tests/integration --broker kafka $(PYTEST_ARGS)

# What the Apache Kafka leg needs: Java 17+ and Maven (Debian's openjdk-17-jre-headless and
# maven, installed when missing and we are root with apt-get, as CI is; otherwise a message
# says what to install), then the broker jars, fetched once into .kafka/ (deploy/kafka/).
kafka-setup: $(STAMP)
	@missing=""; \
	if ! command -v java >/dev/null && [ -z "$$JAVA_HOME" ]; then missing=" openjdk-17-jre-headless"; fi; \
	if ! command -v mvn >/dev/null; then missing="$$missing maven"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "the Apache Kafka tests need Java 17+ and Maven: install$$missing (Debian:" \
	      "apt-get install$$missing)" >&2; \
	    exit 1; \
	  fi; \
	fi
	@jars="$$($(BIN)/python deploy/kafka/kafka.py fetch)" || exit 1; \
	echo "Apache Kafka jars: $$(echo "$$jars" | tail -n 1)"

bench: $(STAMP)
	$(BIN)/dccgate bench $(ARGS)

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# A local Apache Kafka (KRaft) on 127.0.0.1, see deploy/kafka/README.md. The first kafka-up
# fetches the broker jars with Maven into .kafka/; the last line it prints is
# `bootstrap: HOST:PORT[,...]`. KAFKA_NODES=1|3; the nodes use 2 x KAFKA_NODES ports from
# KAFKA_PORT; data, configs and logs in KAFKA_DATA, which kafka-down stops and deletes.
KAFKA_NODES ?= 1
KAFKA_PORT ?= 19092
KAFKA_DATA ?= .kafka/run

## kafka-up: start a local Apache Kafka (KAFKA_NODES=1|3, KAFKA_PORT=19092), print its bootstrap
kafka-up: $(STAMP)
	@$(BIN)/python deploy/kafka/kafka.py up --nodes $(KAFKA_NODES) --base-port $(KAFKA_PORT) --data-dir $(KAFKA_DATA)

## kafka-down: stop the local Apache Kafka and delete its data
kafka-down:
	@$(PYTHON) deploy/kafka/kafka.py down --data-dir $(KAFKA_DATA)

# Coverage-guided fuzzing (atheris) of what a hostile record meets first: the wire guard, the
# msgspec decoders, DUIS validation and the ADT value checks (fuzz/fuzz_decoders.py). The
# corpus grows in $(VENV)/fuzz/corpus; an input that fails is written to $(VENV)/fuzz/ and
# replays with `$(BIN)/python fuzz/fuzz_decoders.py FILE`. `make test` runs a short seeded run.
FUZZ_SECONDS ?= 60

## fuzz: fuzz the record decoders for FUZZ_SECONDS (60)
fuzz: $(STAMP)
	@mkdir -p $(VENV)/fuzz/corpus
	$(BIN)/python fuzz/fuzz_decoders.py -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	  -dict=fuzz/json.dict -artifact_prefix=$(VENV)/fuzz/ $(VENV)/fuzz/corpus fuzz/seeds
