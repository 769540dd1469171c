# lrnn-lib: the two commands a fresh machine needs.
#   make demo   installs what is missing, builds, runs the demonstration
#   make test   installs what is missing, builds, runs every test (GoogleTest via ctest, pytest)
PYTHON ?= python3
BUILD_DIR ?= build
export LRNN_BUILD_DIR := $(abspath $(BUILD_DIR))

.PHONY: deps build test test-c test-python demo bench clean

deps:
	PYTHON=$(PYTHON) bash scripts/install_deps.sh

build: deps
	$(PYTHON) -m pip install -q --no-build-isolation --no-deps -e .

test-c: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure

test-python: build
	$(PYTHON) -m pytest -q tests/python

test: test-c test-python

demo: build
	$(PYTHON) examples/demo.py

bench: build
	$(PYTHON) benchmarks/bench_linear_scan.py

clean:
	rm -rf $(BUILD_DIR) python/lrnn/liblrnn_ops.so python/lrnn/build_info.json
