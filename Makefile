# The two commands a user types are `make run` and `make test`; the rest are their parts.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Models the test suite uses live here, outside any test's data dir, so they download once.
TEST_MODELS_DIR ?= $(CURDIR)/.models
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
# A portable AVX2 build of llama.cpp: the native build (-march=native) picks up AMX/AVX-512
# paths that die with SIGILL on these virtual machines.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: run install test test-models test-tools lint bench quality clean audit

# The default chat model, the embedding model and every model a bundled skill answers with
# (config/default.toml; a unit test keeps this list and that file in step).
RUN_MODELS := qwen2.5-coder-0.5b minilm-l6 qwen2.5-coder-1.5b

run: install
	$(BIN)/assistant models pull $(RUN_MODELS)
	$(BIN)/assistant

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

# Re-installs only when the project's metadata changed; pip keeps the built llama-cpp-python wheel.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

test-models: install
	ASSISTANT_MODELS_DIR=$(TEST_MODELS_DIR) $(BIN)/assistant models pull smollm2-135m minilm-l6

# The TUI's end-to-end test drives the real command in tmux.
test-tools:
	@command -v tmux >/dev/null || (apt-get update -qq && apt-get install -y -qq tmux) \
		|| (echo "tmux is needed by the TUI end-to-end test: install it (apt-get install tmux)"; exit 1)

# lint-imports checks the layer contracts in pyproject.toml ([tool.importlinter]).
lint: install
	$(BIN)/ruff check assistant plugins tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

# Known vulnerabilities in the installed dependencies (pip-audit). Offline it says the packages
# were NOT audited and exits 0; AUDIT_STRICT=1 makes that an error.
audit: install
	$(BIN)/python scripts/audit.py

test: install test-models test-tools lint
	ASSISTANT_TEST_MODELS_DIR=$(TEST_MODELS_DIR) $(BIN)/python -m pytest -m "not quality" tests

quality: install test-models
	ASSISTANT_MODELS_DIR=$(TEST_MODELS_DIR) $(BIN)/assistant models pull $(RUN_MODELS)
	ASSISTANT_TEST_MODELS_DIR=$(TEST_MODELS_DIR) $(BIN)/python -m pytest -m quality tests

bench: install test-models
	ASSISTANT_MODELS_DIR=$(TEST_MODELS_DIR) $(BIN)/assistant models pull $(RUN_MODELS)
	ASSISTANT_TEST_MODELS_DIR=$(TEST_MODELS_DIR) $(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
