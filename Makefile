# `make train` and `make test` are all a newcomer types: each creates .venv and installs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch/torchvision are pinned to the builds these machines carry; override for another platform.
TORCH ?= torch==2.14.1 torchvision==0.29.1
EXP ?= quickstart
TRAINER ?= cpu
ARGS ?=
PYTEST_ARGS ?=

.PHONY: help install train test lint format clean

help:
	@echo "make train [EXP=quickstart] [TRAINER=cpu|gpu|ddp] [ARGS=\"--trainer.max_epochs=3\"]"
	@echo "make test [PYTEST_ARGS=...]   make lint   make format   make clean"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

train: $(VENV)/.installed
	$(BIN)/medlab run --config experiments/trainer/$(TRAINER).yaml --config experiments/$(EXP).yaml $(ARGS)

test: $(VENV)/.installed
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
