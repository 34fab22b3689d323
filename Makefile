# NeuroCore Console — make run · make test · make bench
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.13 2>/dev/null || echo python3)
VENV := .venv
PY := $(VENV)/bin/python
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint bench

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 13) else "NeuroCore Console needs Python 3.13 or newer, found " + sys.version.split()[0] + ". Install it (e.g. pyenv install 3.13) and run make again; .python-version selects it.")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint constraints.txt --editable '.[dev]'
	@touch $@

install: $(VENV)/.installed

## Start the console with demo data on SQLite at http://$(HOST):$(PORT), with its task worker (Ctrl-C stops both)
run: install
	@$(PY) -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); sys.exit(0 if s.connect_ex(("$(HOST)", $(PORT))) else "Port $(PORT) on $(HOST) is taken. Stop what uses it, or run: make run PORT=8001")'
	export DJANGO_DEBUG=$${DJANGO_DEBUG:-1} CONSOLE_BASE_URL=$${CONSOLE_BASE_URL:-http://$(HOST):$(PORT)}; \
	$(PY) manage.py migrate --no-input || { echo "The database could not be migrated: see above. To start the demo afresh: rm var/console.sqlite3 and run make run again." >&2; exit 1; }; \
	$(PY) manage.py seed_demo && \
	{ $(PY) manage.py db_worker --no-reload & worker=$$!; \
	  trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT; \
	  $(PY) manage.py runserver --noreload $(HOST):$(PORT); }

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DJANGO_SECRET_KEY=lint-only-not-a-secret $(VENV)/bin/mypy

## Install everything, lint, and run the whole test suite (on $$DATABASE_URL, default SQLite)
test: lint
	$(VENV)/bin/pytest

## Benchmarks (not run by CI): SQLite, then PostgreSQL at $(POSTGRES_URL)
bench: install
	$(PY) bench/store_bench.py
	DATABASE_URL=$(POSTGRES_URL) $(PY) bench/store_bench.py
	$(PY) bench/cli_bench.py
	DATABASE_URL=$(POSTGRES_URL) $(PY) bench/cli_bench.py
	$(PY) bench/console_compare.py --db-name var/bench_console.sqlite3 --keep
	DATABASE_URL=$(POSTGRES_URL) $(PY) bench/console_compare.py --db-name bench_console --keep
