# Audio pipeline: `make help` lists the targets.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch lies on disk on this project's machines; pip looks there first.
WHEELS := $(wildcard /opt/wheels)
PIP_INSTALL := $(PY) -m pip install -q --disable-pip-version-check $(if $(WHEELS),--find-links $(WHEELS))

export DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/audio_pipeline
export AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/%2F
export STORAGE_DIR ?= $(CURDIR)/var/storage
export MODEL_CACHE_DIR ?= $(CURDIR)/.cache/models
# Whisper model for `make run` (a name or a checkpoint path): base, chosen by make
# bench-accuracy (WER 0.135 against tiny.en's 0.188, at RTF 0.15 on 2 cores). Tests always use tiny.en.
export WHISPER_MODEL ?= base
export PYANNOTE_METRICS_ENABLED := false

.DEFAULT_GOAL := help
.PHONY: help run test unit lint format services migrate system-deps prometheus speech models bench-ingest bench-pipeline bench-transcribe bench-diarize bench-accuracy replay-dlq deploy-check clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed ## Create the virtual environment (only when pyproject.toml changed)

system-deps: ## Install ffmpeg, espeak-ng and sox if missing (Debian, as root)
	@bash scripts/install_system_packages.sh

prometheus: ## Install Debian's prometheus package (promtool) for the deploy/ checks
	@bash scripts/install_prometheus.sh

speech: venv ## Install the CPU speech stack (torch, openai-whisper, pyannote.audio) into .venv
	@bash scripts/install_speech_stack.sh $(PY)

# Each model twice: the openai-whisper checkpoint and the CTranslate2 directory (ctranslate2 engine).
models: speech ## Provision Whisper and diarization weights offline into $(MODEL_CACHE_DIR)
	@for format in "" --ctranslate2; do \
		$(PY) -m processing_service.transcribe.weights --model tiny.en $$format \
			--cache-dir $(MODEL_CACHE_DIR) >/dev/null || exit 1; \
		case "$(WHISPER_MODEL)" in tiny.en|base) $(PY) -m processing_service.transcribe.weights \
			--model $(WHISPER_MODEL) $$format --cache-dir $(MODEL_CACHE_DIR) >/dev/null || exit 1;; esac; \
	done
	@$(PY) -m processing_service.diarize.weights --cache-dir $(MODEL_CACHE_DIR) >/dev/null

services: ## Make sure RabbitMQ and Postgres answer on loopback; create the database
	@bash scripts/ensure_services.sh

migrate: venv services ## Apply the database schema
	@$(PY) -m ingest_service migrate

run: venv system-deps models migrate ## Set everything up, then run the ingest API and the workers
	@bash scripts/run_stack.sh

# The suite runs on tiny.en (its prerequisites then provision only that model).
test unit: export WHISPER_MODEL := tiny.en

test: venv system-deps prometheus models services ## Set everything up, then run the whole test suite
	@$(PY) -m pytest $(PYTEST_ARGS)

unit: venv system-deps services ## The fast lane: unit tests and the in-process job state machine (no weights)
	@$(PY) -m pytest tests/unit tests/statemachine $(PYTEST_ARGS)

lint: speech ## ruff (lint + format check) and mypy --strict on the five packages
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv ## Reformat the code with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

deploy-check: venv prometheus services ## Check deploy/: compose file, promtool config/rules/unit tests, RabbitMQ settings
	@$(PY) -m pytest tests/integration/test_deploy_files.py -m "not models" $(PYTEST_ARGS)

replay-dlq: venv services ## List dead letters and move them back (QUEUE=name|all, LIMIT=N, DRY_RUN=1)
	@$(PY) -m processing_service.replay --queue $(or $(QUEUE),all) $(if $(LIMIT),--limit $(LIMIT)) \
		$(if $(filter 1 true yes,$(DRY_RUN)),--dry-run)

bench-ingest: venv system-deps models services ## The ingest API side by side with a FastAPI + Celery baseline, beside busy workers, 1 vs N processes -> bench/ingest.json
	@$(PY) -m scripts.bench_ingest --out bench/ingest.json $(BENCH_ARGS)

bench-pipeline: venv system-deps models services ## Pipeline vs bare whisper; a 10 min job sequential vs overlapped stages; worker memory on 6 h -> bench/pipeline.json
	@$(PY) -m scripts.bench_pipeline --out bench/pipeline.json $(BENCH_ARGS)

bench-transcribe: venv system-deps models ## Bare whisper vs the transcribe stage (encoder reuse, beam 5) vs the ctranslate2 engine: RTF, WER, peak RSS, tiny.en and base -> bench/transcribe.json
	@$(PY) -m processing_service.transcribe.weights --model base --cache-dir $(MODEL_CACHE_DIR) >/dev/null
	@$(PY) -m processing_service.transcribe.weights --model base --ctranslate2 --cache-dir $(MODEL_CACHE_DIR) >/dev/null
	@$(PY) -m scripts.bench_transcribe --out bench/transcribe.json $(BENCH_ARGS)

bench-diarize: venv system-deps models ## Diarization RTF, DER and peak RSS per segmentation step on a generated 10 min conversation -> bench/diarize.json
	@$(PY) -m scripts.bench_diarize --out bench/diarize.json $(BENCH_ARGS)

bench-accuracy: venv system-deps models ## DER, speaker count, word attribution and WER on AMI, pyannote's sample and generated voices -> bench/accuracy.json
	@$(PY) -m processing_service.transcribe.weights --model base --cache-dir $(MODEL_CACHE_DIR) >/dev/null
	@$(PY) -m scripts.bench_accuracy --out bench/accuracy.json $(BENCH_ARGS)

clean: ## Remove the virtual environment, caches and local storage
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache var
