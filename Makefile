# The two commands a user types are `make run` and `make test`; the rest are their parts.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Models the test suite uses live here, outside any test's data dir, so they download once.
TEST_MODELS_DIR ?= $(CURDIR)/.models
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
# llama.cpp's CPU code is built once per CPU generation (x64, haswell = AVX2, skylakex and zen4
# = AVX-512, sapphirerapids = AMX, …) and the model host loads the fastest one this CPU and its
# OS can run (assistant/models/cpu.py): one build runs at full speed on any x86-64 machine.
# Not -march=native: it died with SIGILL on virtual machines whose CPUID reports AVX-512 or AMX
# their kernel never enabled, and a venv built on one machine may run on another. Not the
# portable AVX2 build alone: it read prompts at 0.6x the speed on AVX-512 machines (issue 17).
# Measured on an AVX-512 EPYC, qwen 0.5B prompt read, one run: zen4 variant 206-218 tok/s,
# -march=native 185-197, AVX2 128-138.
# The version is pyproject.toml's pin, so the two cannot drift apart.
LLAMA_CPP := $(shell grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)
# A CMAKE_ARGS (or LLAMA_CMAKE_ARGS) of your own, e.g. for a GPU build, replaces these.
LLAMA_CMAKE_ARGS ?= $(or $(CMAKE_ARGS),-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON)
# The built wheel is kept by version and flags (pip's own wheel cache ignores CMAKE_ARGS), so
# another clone, a `make clean` or a CI run on the same machine installs it without compiling.
LLAMA_KEY := $(shell printf '%s' '$(LLAMA_CPP) $(LLAMA_CMAKE_ARGS) $(shell uname -m)' | sha256sum | cut -c1-16)
LLAMA_WHEELS ?= $(HOME)/.cache/assistant/wheels/$(LLAMA_KEY)
LLAMA_STAMP := $(VENV)/.llama-$(LLAMA_KEY)

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

# Compiles llama-cpp-python (about 10 minutes on two cores: 17 CPU-minutes) only when no wheel of this version
# and these flags was built before.
$(LLAMA_STAMP): | $(BIN)/python
	@ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' $(BIN)/python -m pip wheel --quiet --no-deps \
		--no-cache-dir --no-binary llama-cpp-python -w $(LLAMA_WHEELS) '$(LLAMA_CPP)'
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps \
		$(LLAMA_WHEELS)/llama_cpp_python-*.whl
	rm -f $(VENV)/.llama-*
	touch $@

# Re-installs only when the project's metadata changed. The distribution was named "assistant"
# until it took a name no other registry project holds: a venv made before holds that one too
# (the same package files, entry points twice), so it goes first.
$(STAMP): pyproject.toml $(LLAMA_STAMP) | $(BIN)/python
	$(BIN)/python -m pip uninstall --quiet --yes assistant 2>/dev/null || true
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
	ASSISTANT_TEST_MODELS_DIR=$(TEST_MODELS_DIR) $(BIN)/python -m pytest -m "not quality" --durations=25 tests

quality: install test-models
	ASSISTANT_MODELS_DIR=$(TEST_MODELS_DIR) $(BIN)/assistant models pull $(RUN_MODELS)
	ASSISTANT_TEST_MODELS_DIR=$(TEST_MODELS_DIR) $(BIN)/python -m pytest -m quality --durations=0 tests

bench: install test-models
	ASSISTANT_MODELS_DIR=$(TEST_MODELS_DIR) $(BIN)/assistant models pull $(RUN_MODELS)
	ASSISTANT_TEST_MODELS_DIR=$(TEST_MODELS_DIR) $(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
