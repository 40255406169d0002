# Concurrency Lab - the front door. `make help` lists every target.
# Every target installs what it needs into .venv first, so a fresh clone
# needs only Python 3.11+ and make.

# Native Windows has no fork, no fcntl and no process groups: say where the lab runs.
ifeq ($(OS),Windows_NT)
$(error Concurrency Lab does not run on native Windows: use WSL2 (wsl --install -d Ubuntu-24.04, then the README's WSL2 section) or the dev container (.devcontainer/, in VS Code or GitHub Codespaces))
endif

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ONLY   ?=
LAB    ?=
SUBMISSION ?=
PORT   ?= 8000
MANAGER ?= uvicorn
SERVER_PYTHON ?=
SERVER_PY := $(if $(SERVER_PYTHON),--python $(SERVER_PYTHON))

.DEFAULT_GOAL := help
.PHONY: help setup test test-fast test-stages test-cgroup timing charts figures notebooks lessons jupyter serve-wsgi \
        serve-asgi serve-nginx serve-fastapi calibrate handout grade try lint clean doctor slow-limits freethreaded

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed, found " + sys.version.split()[0] + " ($(PYTHON)): run make setup PYTHON=python3.13 (get one from python.org, with Homebrew: brew install python@3.13, or with uv: uv python install 3.13)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,dev]'
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the lab into it

# `make test` lists its 25 slowest tests at the end (docs/timing.md says why each
# takes that long). The long CI stages run from .ci/run after it: tests marked
# `stage` (Python matrix, free-threaded build, batch grading, a minute-long soak),
# `cgroup` (every lab graded under an autograder's 0.5 CPU and 768 MB, as root)
# and the notebooks in Chromium (marker `browser`, about 5 minutes).
STAGES := stage or browser or cgroup
test: $(STAMP) ## run every test but the long CI stages (quick mode: CONCLAB_QUICK=1)
	CONCLAB_QUICK=1 $(BIN)/python -m pytest -m "not ($(STAGES))" --durations=25

test-stages: $(STAMP) ## the long CI stages only (markers stage, browser, cgroup; .ci/run runs them after make test)
	CONCLAB_QUICK=1 $(BIN)/python -m pytest -m "$(STAGES)" --durations=25 || [ $$? -eq 5 ]  # 5: none collected

test-cgroup: $(STAMP) ## grade every lab under a 0.5-CPU, 768 MB cgroup, as root (one of the long stages)
	$(BIN)/python -m pytest -m cgroup tests/test_grading_cgroup.py

test-fast: $(STAMP) ## the tests without notebooks, browser, labs and faults
	CONCLAB_QUICK=1 $(BIN)/python -m pytest -m "not notebooks and not browser and not labs and not faults"

# Each Python of the supported range in a clean venv of its own (not .venv):
# scripts/test-pythons says which it ran on, skips a missing one (fails with
# CI=true) and, as root with debootstrap, gets a missing one from Debian.
PYTHONS ?= python3.12 python3.13 python3.14
.PHONY: test-pythons
test-pythons: ## install the lab under each of PYTHONS in a clean venv and run the smoke set
	scripts/test-pythons $(PYTHONS)

charts: $(STAMP) ## measure everything and write figures/*.png (ONLY=name for one)
	$(BIN)/conclab charts $(if $(ONLY),--only $(ONLY))

# docs/timing.md's tables, re-measured (on a quiet machine: about the time of
# `make test` plus six minutes): every quick figure from scratch into
# build/timing/ and its seconds into figures/data/timing.json (the full half is
# the last `make charts`'), then each quick figure again by a run of its own
# (build/timing-alone/: `make charts ONLY=name`'s seconds), the tables
# regenerated, then `make test` into figures/data/test_durations.json (kept when
# a test fails) and the tables again.
FIGURE_NAMES = $(BIN)/python -c "from conclab.figures.registry import REGISTRY; print(*REGISTRY)"
timing: $(STAMP) ## re-measure quick charts and make test, then regenerate docs/timing.md's tables
	CONCLAB_QUICK=1 $(BIN)/conclab charts --fresh --out build/timing --results build/timing/results
	rm -rf build/timing-alone
	for name in $$($(FIGURE_NAMES)); do \
	    CONCLAB_QUICK=1 $(BIN)/conclab charts --only $$name --fresh --out build/timing-alone \
	        --results build/timing-alone/results || exit 1; \
	done
	$(BIN)/python -m conclab.figures.timing_doc --quick build/timing --alone build/timing-alone
	-CONCLAB_TEST_DURATIONS=figures/data/test_durations.json $(MAKE) test
	$(BIN)/python -m conclab.figures.timing_doc

figures: $(STAMP) ## redraw figures/*.png from saved results, no measuring
	$(BIN)/conclab charts --replot $(if $(ONLY),--only $(ONLY))

notebooks: $(STAMP) ## execute every notebook headless, HTML into build/
	$(BIN)/conclab notebooks --out build

lessons: $(STAMP) ## sync each notebooks/NN-topic.py with its .ipynb (edit either side)
	$(BIN)/jupytext --sync --quiet notebooks/[0-9][0-9]-*.py

# JupyterLab comes with `make setup` and nothing is installed here, not even
# when pyproject.toml is newer (order-only: a class never waits for pip).
# jupyter_server_config.py binds it to 127.0.0.1 and shows only the notebooks;
# as root (a container) JupyterLab needs --allow-root.
jupyter: | $(STAMP) ## open JupyterLab on notebooks/ (127.0.0.1; root is fine)
	$(BIN)/jupyter lab --config=jupyter_server_config.py --ServerApp.root_dir=notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root)

serve-wsgi: $(STAMP) ## Flask on Gunicorn at 127.0.0.1:8000 (PORT=...) until Ctrl-C
	$(BIN)/conclab serve wsgi --port $(PORT) $(SERVER_PY)

serve-asgi: $(STAMP) ## the raw ASGI app on Uvicorn at 127.0.0.1:8000 (PORT=...) until Ctrl-C
	$(BIN)/conclab serve asgi --port $(PORT) $(SERVER_PY)

serve-nginx: $(STAMP) ## nginx at 127.0.0.1:8000 (PORT=...) in front of Gunicorn, 2 sync workers (needs nginx)
	$(BIN)/conclab serve wsgi --workers 2 --behind-nginx --port $(PORT) $(SERVER_PY)

serve-fastapi: $(STAMP) ## FastAPI on Uvicorn at 127.0.0.1:8000 (MANAGER=gunicorn: Gunicorn managing Uvicorn workers)
	$(BIN)/conclab serve fastapi --manager $(MANAGER) --port $(PORT) $(SERVER_PY)

# SERVER_PYTHON=PATH runs any serve-* target on another Python, e.g. the
# free-threaded build: make serve-asgi SERVER_PYTHON=~/.cache/conclab/python3.13t/bin/python3.13t
freethreaded: ## build CPython 3.13 without the GIL into ~/.cache/conclab/python3.13t (once, a few minutes)
	scripts/build-freethreaded

doctor: $(STAMP) ## what runs on this machine (system, Python, cores, tools) and how to fix the rest
	$(BIN)/conclab doctor

slow-limits: $(STAMP) ## measure --limit-concurrency under slow clients and nginx's memory per idle client (needs nginx)
	$(BIN)/python -m conclab.figures.slow_limits

calibrate: $(STAMP) ## measure the load driver's own ceiling against /hello
	$(BIN)/conclab calibrate

handout: $(STAMP) ## write student copies of the labs to dist/handout/
	$(BIN)/conclab handout --out dist/handout

grade: $(STAMP) ## grade a lab: make grade LAB=01 [SUBMISSION=folder] [FORMAT=text|json|gradescope] [CHECK=name] [OUT=file] [BATCH=dir JOBS=n]
	$(BIN)/conclab grade $(LAB) $(if $(SUBMISSION),--submission $(SUBMISSION)) $(if $(FORMAT),--format $(FORMAT)) \
	    $(if $(CHECK),--check '$(CHECK)') $(if $(OUT),--out $(OUT)) $(if $(BATCH),--batch $(BATCH)) $(if $(JOBS),--jobs $(JOBS))

try: $(STAMP) ## run your copy of a lab by hand: make try LAB=01 SUBMISSION=path/to/folder [PORT=8000]
	$(BIN)/conclab try $(LAB) --port $(PORT) $(if $(SUBMISSION),--submission $(SUBMISSION))

lint: $(STAMP) ## ruff over the code
	$(BIN)/ruff check src servers tests labs notebooks

.PHONY: format
format: $(STAMP) ## ruff format over the code (lessons are formatted by hand: notebooks/*.py)
	$(BIN)/ruff format src servers tests labs

clean: ## remove the venv, build/ and dist/ (keeps figures/ and results/)
	rm -rf $(VENV) build dist .pytest_cache
