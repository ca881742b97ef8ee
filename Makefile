# playhouse — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(BIN)/pip
DOCKER ?= docker
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM := false
export WANDB_MODE := disabled

.DEFAULT_GOAL := help
.PHONY: help install install-system run test test-unit test-faults lint typecheck bench bench-worker bench-fanout bench-latency bench-listing bench-dataset bench-gpu demo-models images clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.stamp-install: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0   # the CPU wheel on local disk, before anything pulls a CUDA build
	$(PIP) install -q -e '.[worker,train,dev]'
	touch $@

node_modules/.stamp-install: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install-system: ## Debian packages the tests use (chromium, redis-server, systemd for systemd-analyze)
	@if ! command -v chromium >/dev/null || ! command -v redis-server >/dev/null || ! command -v systemd-analyze >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium redis-server systemd >/dev/null; \
	  else echo "install chromium, redis-server and systemd (Debian packages) for the browser, Redis and deploy tests"; fi; \
	fi

install: $(VENV)/.stamp-install node_modules/.stamp-install install-system ## venv (torch CPU first), Python deps, Azurite, chromium, redis

run: $(VENV)/.stamp-install node_modules/.stamp-install ## install what is missing, then run the whole playhouse on the embedded default
	$(BIN)/playhouse run

lint: $(VENV)/.stamp-install ## ruff and mypy --strict
	$(BIN)/ruff check playhouse tests bench
	$(BIN)/mypy --strict playhouse

typecheck: lint

test: install ## the whole suite, plus ruff and mypy --strict
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -m "not faults" -p no:cacheprovider

test-unit: $(VENV)/.stamp-install ## fast unit tests only
	$(BIN)/pytest tests/unit -q -p no:cacheprovider

test-faults: install ## the full fault, load and bad-input scenarios
	$(BIN)/pytest -m faults -p no:cacheprovider

bench: bench-worker bench-fanout bench-latency bench-listing ## the benchmarks under bench/ (tables under bench/results)

bench-worker: install ## old design vs batched worker (bench/results/worker.md)
	$(PY) bench/worker.py

bench-fanout: install ## 500 websocket viewers, 200 posts (bench/results/fanout.md)
	$(PY) bench/fanout.py

bench-latency: install ## a person's wait for a bot, idle vs saturated (bench/results/latency.md)
	$(PY) bench/latency.py

bench-listing: install ## first page of a 100,000-thread room: index vs scan (bench/results/listing.md)
	$(PY) bench/listing.py

bench-gpu: install demo-models ## on a CUDA machine: batch 1 vs padded vs continuous vs CUDA graphs vs CTranslate2 (bench/results/gpu_generation.md)
	$(PY) bench/gpu_generation.py --device cuda --tokenizer var/models/demo/.base --out bench/results/gpu_generation.md

bench-dataset: install ## peak memory of `dataset build` on a generated 1 GB dump
	$(PY) bench/dataset_memory.py

demo-models: install ## build the offline demo models under var/models
	$(BIN)/playhouse models build-demo

images: ## build the web and worker images (deploy/docker; needs a working Docker)
	@if ! command -v $(DOCKER) >/dev/null 2>&1 || ! $(DOCKER) info >/dev/null 2>&1; then \
	  echo "make images: Docker is not available here ('$(DOCKER)' is missing or its daemon does not answer); run it where Docker works" >&2; exit 1; \
	fi
	$(DOCKER) build -f deploy/docker/Dockerfile.web -t playhouse-web:latest .
	$(DOCKER) build -f deploy/docker/Dockerfile.worker -t playhouse-worker:latest .

clean: ## remove build outputs (keeps var/ and its history)
	rm -rf dist build .mypy_cache .ruff_cache .pytest_cache
