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
SEEDS ?= 0 1 2
GRID ?=
RUNS ?= runs/$(EXP)
RUN ?=

.PHONY: help install train sweep compare resume notebooks notebooks-shared bench test lint format clean

help:
	@echo "make train [EXP=quickstart] [TRAINER=cpu|gpu|ddp] [ARGS=\"--trainer.max_epochs=3\"]"
	@echo "make sweep [EXP=...] [SEEDS=\"0 1 2\"] [GRID=\"model.optimizer.init_args.lr=0.01,0.003\"] [ARGS=...]"
	@echo "make compare [RUNS=runs/<experiment> ...]   make resume RUN=runs/<experiment>/<run-id>"
	@echo "make test [PYTEST_ARGS=...]   make notebooks   make notebooks-shared   make bench   make lint   make format   make clean"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

train: $(VENV)/.installed
	$(BIN)/medlab run --config experiments/trainer/$(TRAINER).yaml --config experiments/$(EXP).yaml $(ARGS)

sweep: $(VENV)/.installed
	$(BIN)/medlab sweep --seeds $(SEEDS) $(foreach point,$(GRID),--grid $(point)) \
		--config experiments/trainer/$(TRAINER).yaml --config experiments/$(EXP).yaml $(ARGS)

compare: $(VENV)/.installed
	$(BIN)/medlab compare $(RUNS)

resume: $(VENV)/.installed
	@test -n "$(RUN)" || (echo "make resume RUN=runs/<experiment>/<run-id>" && exit 2)
	$(BIN)/medlab run --config $(RUN)/config.yaml --ckpt_path=last $(ARGS)

# The notebooks in CI's small setting (MEDLAB_NOTEBOOK_QUICK=1); `make test` runs them too.
notebooks: $(VENV)/.installed
	MEDLAB_NOTEBOOK_QUICK=1 $(BIN)/pytest notebooks $(PYTEST_ARGS)

# The notebooks as they are shared: executed in their full setting (the real experiments, or their runs under runs/)
# and saved with their outputs.
notebooks-shared: $(VENV)/.installed
	cd notebooks && for notebook in *.ipynb; do ../$(BIN)/jupyter-execute --inplace --timeout=-1 $$notebook || exit 1; done

# Benchmarks (not part of the test suite): figures printed and written to benchmarks/results/*.json.
bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks.overhead --breakdown LeNet
	$(BIN)/python -m benchmarks.throughput
	$(BIN)/python -m benchmarks.time_to_accuracy
	$(BIN)/python -m benchmarks.gpu
	$(BIN)/python -m benchmarks.wandb_fallback
	$(BIN)/python -m benchmarks.export_parity
	$(BIN)/python -m benchmarks.explanation_sanity
	$(BIN)/python -m benchmarks.predict_parity
	$(BIN)/python -m benchmarks.deid_check
	$(BIN)/python -m benchmarks.registration_check

test: $(VENV)/.installed
	MEDLAB_NOTEBOOK_QUICK=1 $(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
