"""A real simulator over real HTTP (scripted backend unless a test asks for the model), and the tiny policy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[3]


class Simulator:
    def __init__(self, *, backend: str = "scripted", startup_s: float = 600, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"zs-trainer-sim-{self.port}.log"
        environment = os.environ | {"ZS_LOG_LEVEL": "warning"} | env
        environment.pop("ZS_REDIS_URL", None)
        self.proc = subprocess.Popen([str(VENV_BIN / "zerosearch"), "serve", "--backend", backend,
                                      "--port", str(self.port)], env=environment, stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"zerosearch serve exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"zerosearch serve not ready after {startup_s} s:\n{self.log.read_text()}")

    def batch_requests(self) -> float:
        """How many `POST /v1/search/batch` requests the server has answered (its Prometheus counter)."""
        text = httpx.get(self.url + "/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("zerosearch_requests_total{") and '"/v1/search/batch"' in line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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
