# Two commands for a new user: `make run` (the app) and `make test` (lint + tests).
# Both create .venv and install everything on first use; later calls reuse it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean-venv

install: $(STAMP)

# Re-install only when the dependency lists change.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -m pip install --quiet --no-deps -e . 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import torch, torchvision, timm, rcl" && touch $(STAMP)

run: install
	$(BIN)/streamlit run app.py --server.headless true

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/loss_overhead.py

clean-venv:
	rm -rf $(VENV)
