# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test install install-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PIP) -e .

install-dev: $(PY)
	$(PIP) -e ".[dev,onnx,video,openvino]"

demo: install
	$(PY) -m sceneparse demo --out runs/demo

test: install-dev
	$(PY) -m pytest -q -n 2  # two workers: most tests run on one thread

clean:
	rm -rf runs/demo .pytest_cache
