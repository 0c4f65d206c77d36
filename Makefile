# synthlab: every target creates the virtual environment first if it is missing.
#   make test      unit tests, the notebooks under nbval, then run-all in the ci profile (the CI command)
#   make run-all   execute every notebook in order with papermill into notebooks/executed/ (with time-outs)
#   make lab       JupyterLab;  make sync   pair notebooks/*.py with their .ipynb (jupytext)
#   make bench     the synthesis benchmark (installs the benchmark-only TorchIO extra)
#   make studies   run every measured study whose results file is missing (synthlab/studies; tens of minutes each)
#   make results   regenerate the README's results table from notebooks/results/*.json (written by notebook 05)
#   make weights   retrain every shipped network from its committed recipe (synthlab/weights/*.json; minutes each)
#   On a GPU machine (with GPU_PYTHON, default python3, holding a CUDA build of torch and synthlab's needs):
#   make gpu-test  the device tests on CUDA;  make gpu-check  every GPU figure in results/gpu_check.json
#   make gpu-weights  every shipped network at GPU scale (the recipes' gpu profile), all at once

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROFILE ?= ci
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.py))
# papermill waits for ever on a kernel that stopped answering unless it is told otherwise: every cell gets at
# most CELL_TIMEOUT seconds and a kernel START_TIMEOUT seconds to start, so a hang becomes an error that names
# the notebook and shows the cell (the slowest ci cell takes about 5 minutes on one thread).
CELL_TIMEOUT ?= 900
START_TIMEOUT ?= 120

# Real evaluation data sits beside the checkout when it exists; everything skips cleanly without it.
SYNTHLAB_DATA ?= $(wildcard $(CURDIR)/../shared/data)
export SYNTHLAB_DATA
export PYTHONHASHSEED := 0

.PHONY: install test unit unit-first unit-second notebooks-test notebooks-run run-all lab sync lint bench results studies weights gpu-test \
	gpu-check gpu-weights clean

install: $(STAMP)

# torch is pinned to the CPU release first, so the package's torch range is already met and pulls no CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# The notebooks run twice, side by side (one torch thread each, so two cores serve both): under nbval, and
# under papermill with injected parameters and time-outs, as `make run-all` runs them for a user.
test: unit
	$(MAKE) --no-print-directory -j2 --output-sync=target notebooks-test notebooks-run

notebooks-run: $(STAMP)
	OMP_NUM_THREADS=1 TQDM_DISABLE=1 $(MAKE) --no-print-directory run-all PROFILE=ci

# The unit tests in two halves side by side, one thread each (the halves take about equal time; the multi-process
# tests of training and of the losses stay in one half, so no two of them share a port). New test files join
# the second half.
UNIT_FIRST := tests/test_segment.py tests/test_hostile.py tests/test_results.py tests/test_data.py \
	tests/test_shipped.py tests/test_bench.py tests/test_correspondence.py tests/test_viz.py

unit: $(STAMP)
	$(MAKE) --no-print-directory -j2 --output-sync=target unit-first unit-second

unit-first: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider $(UNIT_FIRST)

unit-second: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests $(addprefix --ignore=,$(UNIT_FIRST))

notebooks-test: $(STAMP)
	OMP_NUM_THREADS=1 SYNTHLAB_PROFILE=ci TQDM_DISABLE=1 $(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax \
		--nbval-current-env --nbval-cell-timeout=900 notebooks/*.ipynb

run-all: $(STAMP)
	mkdir -p notebooks/executed
	@for nb in $(NOTEBOOKS); do \
		name=$$(basename $$nb .py); start=$$(date +%s); \
		echo "== $$name (profile $(PROFILE))"; \
		$(BIN)/jupytext --quiet --to ipynb --output notebooks/executed/$$name.src.ipynb $$nb || exit 1; \
		SYNTHLAB_PROFILE=$(PROFILE) $(BIN)/papermill --log-level WARNING $$([ -t 2 ] || echo --no-progress-bar) -k python3 --cwd notebooks \
			--execution-timeout $(CELL_TIMEOUT) --start-timeout $(START_TIMEOUT) -p profile $(PROFILE) \
			notebooks/executed/$$name.src.ipynb notebooks/executed/$$name.ipynb \
			|| { echo "run-all: $$nb failed or timed out; the failing cell is marked in notebooks/executed/$$name.ipynb" >&2; exit 1; }; \
		rm -f notebooks/executed/$$name.src.ipynb; \
		echo "== $$name: $$(( $$(date +%s) - start )) s"; \
	done

lab: $(STAMP)
	$(BIN)/jupyter lab --allow-root notebooks/  # root is common in containers; the URL is printed on start

sync: $(STAMP)
	$(BIN)/jupytext --sync $(NOTEBOOKS)

lint: $(STAMP)
	$(BIN)/ruff check synthlab tests notebooks/*.py

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m synthlab.bench synth --dim 3 --size 128 --n 8 --device cpu

# One thread per run: on a 2-core machine two single-threaded jobs beat one two-threaded job. A killed build
# continues exactly with `make weights RESUME=--resume`.
weights: $(STAMP)
	OMP_NUM_THREADS=1 TQDM_DISABLE=1 $(BIN)/python -m synthlab.shipped build all $(RESUME)

# GPU machines use their own Python with its CUDA build of torch (the .venv pins the CPU build).
GPU_PYTHON ?= python3

gpu-test:
	$(GPU_PYTHON) -m pytest -q -p no:cacheprovider tests/test_device.py --device cuda

# About 3 minutes on one H100/H200: synthesis, fp32 vs bf16 (channels-last, compiled) steps, CPU/CUDA agreement.
gpu-check:
	$(GPU_PYTHON) -m synthlab.gpu_check --out results/gpu_check.json

# Every recipe's gpu profile, eight trainings side by side on one GPU (3-5 minutes each on an H200; the 2D supcon
# run, at 0.29-0.36 s a step there, 7-9 minutes); a cut
# run continues with `make gpu-weights RESUME=--resume`. Prints the probe numbers and what to commit.
gpu-weights:
	TQDM_DISABLE=1 $(GPU_PYTHON) -m synthlab.shipped build all --profile gpu --jobs 8 $(RESUME)

results: $(STAMP)
	$(BIN)/python -m synthlab.results --update README.md --results notebooks/results

# The measured studies behind the README (synthlab/studies): every one whose results file is missing, one after
# another, with every core (tens of minutes each; `python -m synthlab.studies list` names them and their cost).
studies: $(STAMP)
	$(BIN)/python -m synthlab.studies run all

clean:
	rm -rf notebooks/executed .pytest_cache
