# Concurrency Lab - the front door. `make help` lists every target.
# Every target installs what it needs into .venv first, so a fresh clone
# needs only Python 3.11+ and make.

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
.PHONY: help setup test test-fast charts figures notebooks lessons jupyter serve-wsgi serve-asgi serve-nginx serve-fastapi \
        calibrate handout grade try lint clean freethreaded

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,dev]'
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the lab into it

test: $(STAMP) ## run every test (quick mode: CONCLAB_QUICK=1)
	CONCLAB_QUICK=1 $(BIN)/python -m pytest

test-fast: $(STAMP) ## the tests without notebooks, browser, labs and faults
	CONCLAB_QUICK=1 $(BIN)/python -m pytest -m "not notebooks and not browser and not labs and not faults"

charts: $(STAMP) ## measure everything and write figures/*.png (ONLY=name for one)
	$(BIN)/conclab charts $(if $(ONLY),--only $(ONLY))

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

calibrate: $(STAMP) ## measure the load driver's own ceiling against /hello
	$(BIN)/conclab calibrate

handout: $(STAMP) ## write student copies of the labs to dist/handout/
	$(BIN)/conclab handout --out dist/handout

grade: $(STAMP) ## grade a lab: make grade LAB=01 [SUBMISSION=path/to/folder]
	$(BIN)/conclab grade $(LAB) $(if $(SUBMISSION),--submission $(SUBMISSION))

try: $(STAMP) ## run your copy of a lab by hand: make try LAB=01 SUBMISSION=path/to/folder [PORT=8000]
	$(BIN)/conclab try $(LAB) --port $(PORT) $(if $(SUBMISSION),--submission $(SUBMISSION))

lint: $(STAMP) ## ruff over the code
	$(BIN)/ruff check src servers tests labs notebooks

clean: ## remove the venv, build/ and dist/ (keeps figures/ and results/)
	rm -rf $(VENV) build dist .pytest_cache
