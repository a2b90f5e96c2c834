# The README's commands: `make test` and `make bench`. Both create .venv, install torch and the tools,
# and build fusedrnn into it (pip install --no-build-isolation -e .).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1
TOOLS := pybind11 ninja pytest pytest-benchmark hypothesis numpy setuptools wheel tqdm matplotlib onnx==1.23.2 onnxruntime==1.32.0 onnxscript==0.7.2
SOURCES := setup.py pyproject.toml $(shell find csrc -type f 2>/dev/null)

.PHONY: test bench build clean

$(VENV)/.tools: Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(TOOLS)
	touch $@

$(VENV)/.built: $(VENV)/.tools $(SOURCES)
	$(PY) -m pip install --quiet --no-build-isolation -e .
	touch $@

build: $(VENV)/.built

test: build
	$(PY) -m pytest tests

bench: build
	$(PY) -m fusedrnn.bench --out benchmarks/results

clean:
	rm -rf build *.egg-info fusedrnn/*.so $(VENV)/.built
