# Set-up is idempotent: the venv is created and the project installed once, then reused.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.faceid-installed

.PHONY: install demo lint test test-fast bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev,pretrained]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/faceid demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The whole suite, slow cases included; lint first, so CI (which runs `make test`) checks both.
test: lint
	$(PY) -m pytest -q

# Everyday loop: skips the cases marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(VENV)/bin/faceid bench losses

clean:
	rm -rf $(VENV) build *.egg-info
