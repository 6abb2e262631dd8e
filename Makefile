# mathlm: `make test`, `make demo`, `make bench`. Each target installs what it needs first.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# The CPU build of torch lies on the CI machines' disk; an unpinned torch would pull a CUDA build.
CPU_TORCH ?= torch==2.13.0
STAMP := .make/installed

.PHONY: install test test-all demo bench clean

$(STAMP): setup.py pyproject.toml
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install $(CPU_TORCH)
	$(PIP) install -e ".[test]"
	@mkdir -p .make && touch $(STAMP)

install: $(STAMP)

# The default suite: CPU only, Triton kernels under TRITON_INTERPRET=1 (set by tests/conftest.py).
test: install
	$(PYTHON) -m pytest -q -m "not slow" tests

test-all: install
	$(PYTHON) -m pytest -q tests

demo: install
	$(PYTHON) recipes/pipeline.py

# Every microbenchmark: each prints a table with ratios against a baseline run in the same process
# and writes JSON to benchmarks/results/. On a machine without a GPU, attention.py only checks
# correctness at a tiny size under the Triton interpreter (and says so).
bench: install
	@for b in benchmarks/*.py; do echo "== $$b"; $(PYTHON) $$b || exit 1; done

clean:
	rm -rf .make build dist *.egg-info .pytest_cache
