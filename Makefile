# whisperx-assets: `make run` and `make test` install whatever a fresh machine lacks first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# uv from PyPI, run as a module so no PATH set-up is needed.
UV := python3 -m uv
# libsox-fmt-base: AMR-NB decoding via sox; libvo-amrwbenc0: AMR-WB test fixtures; postgresql: the tests' throwaway server.
APT_PACKAGES := ffmpeg espeak-ng sox libsox-fmt-base libvo-amrwbenc0 postgresql
export PYANNOTE_METRICS_ENABLED ?= 0

.PHONY: help install system-packages uv venv test run bench

help:
	@echo "make run      install what is missing, then start the Dagster UI and daemon on 127.0.0.1:3000"
	@echo "make test     install what is missing, then run the whole test suite"
	@echo "make install  only install (idempotent)"

install: system-packages venv

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

venv: uv
	@$(UV) sync --frozen --quiet

test: install
	@$(UV) run --frozen --no-sync pytest -q -p no:cacheprovider $(PYTEST_ARGS)

SAMPLE := .venv/lib/python3.11/site-packages/pyannote/audio/sample/sample.wav
run: export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
run: export INBOX_URL ?= $(CURDIR)/media/inbox
run: export STORAGE_URL ?= $(CURDIR)/media/storage
HOST ?= 127.0.0.1
PORT ?= 3000

# Webserver + daemon on the embedded default instance (SQLite under DAGSTER_HOME; PostgreSQL when
# DAGSTER_POSTGRES_URL is set). Drop files into $(INBOX_URL); the bundled sample recording is placed there
# (when it is a local folder) so a first partition runs with no clicks.
run: install
	@mkdir -p "$(DAGSTER_HOME)"
	@cat dagster.yaml $(if $(DAGSTER_POSTGRES_URL),deploy/storage.postgres.yaml) > "$(DAGSTER_HOME)/dagster.yaml"
	@case "$(INBOX_URL)" in *://*) ;; *) mkdir -p "$(INBOX_URL)"; \
	  [ -e "$(INBOX_URL)/pyannote-sample.wav" ] || cp $(SAMPLE) "$(INBOX_URL)/pyannote-sample.wav";; esac
	@echo "Dagster UI: http://$(HOST):$(PORT)  inbox: $(INBOX_URL)  outputs: $(STORAGE_URL)"
	$(UV) run --frozen --no-sync dagster dev -h $(HOST) -p $(PORT) -w workspace.yaml

# Library alone vs. the pipeline through Dagster (bench/run.py); BENCH_FILES=N, BENCH_MODES=limit,inprocess,daemon.
bench: install
	$(UV) run --frozen --no-sync python bench/run.py
