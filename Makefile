# `make bench`: the scan benchmark (README, Performance). Without make:
#   .venv/bin/python -m benchmarks.bench
PYTHON ?= .venv/bin/python

.PHONY: bench bench-quick
bench:
	$(PYTHON) -m benchmarks.bench $(ARGS)

bench-quick:
	$(PYTHON) -m benchmarks.bench --quick $(ARGS)
