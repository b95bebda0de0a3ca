"""A real simulator over real HTTP (scripted backend unless a test asks for the model), and the tiny policy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ServeProcess

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[3]


class Simulator(ServeProcess):
    def __init__(self, *, backend: str = "scripted", startup_s: float = 600, **env: str) -> None:
        super().__init__("--backend", backend, env={"ZS_LOG_LEVEL": "warning"} | env, drop_env=("ZS_REDIS_URL",),
                         startup_s=startup_s, log_prefix="zs-trainer-sim")

    def batch_requests(self) -> float:
        """How many `POST /v1/search/batch` requests the server has answered (its Prometheus counter)."""
        return self.metric("zerosearch_requests_total", '"/v1/search/batch"')


@pytest.fixture(scope="session")
def simulator():
    server = Simulator()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def policy():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zerosearch_trainer.models import resolve_policy

    path = resolve_policy(None)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)


@pytest.fixture
def one_thread():
    """torch on one thread for this test (restored after): on a shared, loaded 2-core machine two threads
    oversubscribe the cores and generation gets several times slower."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def run_cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m zerosearch_trainer.cli ARGS` from the repository root (what `zerosearch ARGS` runs)."""
    environment = os.environ | {"TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"} | (env or {})
    return subprocess.run([sys.executable, "-m", "zerosearch_trainer.cli", *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=timeout, check=False)
