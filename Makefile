# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup data run test test-fast lint bench browser

setup: $(STAMP) data

# The virtual environment with fcnet (editable) and its dev extras; redone when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Fashion-MNIST, the real data set on this machine: on disk already, else Debian's package (as root
# with apt), else a download from the public mirrors. Checksums are verified in every case.
data: $(STAMP)
	@if ! $(BIN)/fcnet download fashion-mnist --offline 2>/dev/null; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	  fi; \
	  $(BIN)/fcnet download fashion-mnist; \
	fi

# The seed 001 lab (784-300-10, ReLU/softmax, SGD lr 0.1, batch 64, 20 epochs) on Fashion-MNIST.
run: setup
	$(BIN)/fcnet train --dataset fashion-mnist --out runs/lab
	$(BIN)/fcnet report runs/lab -o runs/lab/report.html

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks

# Headless Chromium (Debian's package) for the test that opens the HTML report like a person would.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium not installed: the browser test will be skipped"; fi; }

test: setup lint browser
	$(BIN)/python -m pytest

# The fast core (under a minute here): no test marked slow, gpu, browser or e2e (pyproject.toml lists the markers).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# The benchmark suite. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE pin NumPy's OpenBLAS to its AVX2 kernels on this
# machine; the benchmark (only) unsets them so OpenBLAS picks its best kernel, and prints which one ran.
bench: setup
	$(BIN)/python -m pip install -q -e '.[bench]'
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench.py
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/sklearn_bench.py --out benchmarks/results/sklearn.json
