# Two commands: `make run` (the demo service on http://127.0.0.1:5000) and `make test` (lint + the suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test lint format venv bench clean soak soak-bounded

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

run: venv
	$(BIN)/flask --app wsgi db upgrade
	$(BIN)/flask --app wsgi demo
	SCHEDULER_ENABLED=1 $(BIN)/gunicorn --config gunicorn.conf.py --workers 1 --threads 8 --bind $(HOST):$(PORT) wsgi:app

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q
	$(BIN)/python bench/score_corpus.py

# The long runs of issue 9 (load, kill -9, a 30 s database outage, the RapidSMS peer): see README "Soak".
soak: venv
	$(BIN)/python bench/soak.py all $(SOAK_ARGS)

soak-bounded: venv
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test} $(BIN)/python -m pytest -q -m soak tests/soak

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
