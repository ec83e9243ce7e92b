# pwopsd: `make book` renders the book from the committed results, `make test` runs the test suite,
# `make results SEED=k` runs every section's notebook for one seed (toy profile, CPU).
# Both create .venv on first use (scripts/install.sh).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SEED   ?= 1
PROFILE ?= toy
export HF_HUB_OFFLINE ?= 1
export PYTHONHASHSEED ?= 0
SECTIONS := diagnostic main_table schedule_sweep cross_model reduction_factorial position_premise beyond

.PHONY: install book main-table results $(SECTIONS) test test-slow lint format lab sync-notebooks toy-data toy-models calibrate teacher-signal bench bench-loss bench-grading bench-rollout check-triton clean-book

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh
	@touch $@

install: $(STAMP)  ## create .venv and install pwopsd (CPU vLLM)

book: $(STAMP)  ## build the book from the committed results (no compute; HTML in _build/html)
	$(VENV)/bin/jupyter-book build --all -W -n --keep-going book  # --all: re-execute every page; -W: a warning fails
	@echo "Book: _build/html/index.html"

# `make main_table SEED=2` (or any section): run that notebook with papermill for one seed; the
# seed adds itself to the section's tables. The executed copy lands beside the results.
$(SECTIONS): $(STAMP)
	@mkdir -p results/$(PROFILE)/$@
	$(VENV)/bin/papermill notebooks/$@.ipynb results/$(PROFILE)/$@/$@.seed$(SEED).executed.ipynb \
		-p seed $(SEED) -p profile $(PROFILE) --cwd notebooks

main-table: main_table  ## alias: the main table for SEED at PROFILE

results: $(SECTIONS)  ## all five notebooks for SEED at PROFILE (toy: see the book's Reproduce page), then `make book`
	$(MAKE) book

test: $(STAMP)  ## the test suite CI runs (no slow tests)
	$(PY) -m pytest -m "not slow" -q

test-slow: $(STAMP)  ## everything, including slow tests (full pretraining, big benchmarks)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check pwopsd tests scripts notebooks
	$(VENV)/bin/ruff format --check pwopsd tests scripts notebooks

format: $(STAMP)
	$(VENV)/bin/ruff format pwopsd tests scripts notebooks
	$(VENV)/bin/ruff check --fix pwopsd tests scripts notebooks

lab: $(STAMP)  ## JupyterLab (with jupytext pairing) on the project's environment
	$(VENV)/bin/jupyter lab --notebook-dir=.

sync-notebooks: $(STAMP)  ## after editing notebooks/*.py, refresh the paired .ipynb (outputs stripped)
	$(VENV)/bin/jupytext --sync notebooks/*.py

toy-data: $(STAMP)  ## regenerate data/toy/*.jsonl
	$(PY) -m pwopsd.toy data

toy-models: $(STAMP)  ## retrain the three shipped toy checkpoints (2400 steps, seed 0, FAMILY_SETTINGS; see each pretrain_log.json)
	$(PY) -m pwopsd.toy pretrain --family all

calibrate: $(STAMP)  ## results/toy/calibration.json: scores per template, then each family's teacher_signal
	$(PY) -m pwopsd.toy calibrate
	$(PY) -m pwopsd.toy teacher-signal

teacher-signal: $(STAMP)  ## only the teacher-signal measurement (toy_val rollouts, HF forwards) into calibration.json
	$(PY) -m pwopsd.toy teacher-signal

bench: bench-loss bench-grading bench-rollout  ## loss, grading and rollout benchmarks -> results/bench/*.json

bench-loss: $(STAMP)  ## oracle vs chunked vs fused-linear clipped FKL (V=151,936, 2x1024; ~8 GiB peak)
	$(PY) -m pwopsd.bench loss

bench-grading: $(STAMP)  ## grading throughput, serial vs process pool
	$(PY) -m pwopsd.bench grading

bench-rollout: $(STAMP)  ## rollout tokens/s: vLLM engine vs HF generate at batch 8 and 64 (toy model)
	$(PY) -m pwopsd.bench rollout

check-triton: $(STAMP)  ## on a CUDA machine: Triton clipped FKL vs fp64 oracle, and timings
	$(PY) scripts/check_triton.py

clean-book:
	rm -rf book/_build
