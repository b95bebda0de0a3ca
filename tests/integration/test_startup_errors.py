"""`zerosearch serve` refuses a bad configuration with one clear line and a non-zero exit, never a traceback;
an unreachable Redis gives a degraded start that says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServeProcess, free_port

ZEROSEARCH = str(Path(sys.executable).parent / "zerosearch")


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ZS_")} | (env or {})
    return subprocess.run([ZEROSEARCH, "serve", "--port", str(free_port()), *args], env=environment,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,env,says", [
    (("--backend", "vllm"), {}, "ZS_BACKEND=vllm needs vLLM"),
    (("--model", "/no/such/model"), {}, "ZS_MODEL='/no/such/model': no such directory"),
    (("--backend", "scripted"), {"ZS_MAX_QUEUE": "lots"}, "ZS_MAX_QUEUE='lots': Input should be a valid integer"),
    (("--backend", "scripted"), {"ZS_TIMEOUT_S": "-3"}, "ZS_TIMEOUT_S='-3'"),
    (("--backend", "scripted"), {"ZS_RATE_LIMIT": "fast"}, "ZS_RATE_LIMIT='fast' is not a rate"),
    (("--backend", "nope"), {}, "ZS_BACKEND='nope'"),
    (("--backend", "openai"), {}, "ZS_BACKEND=openai needs ZS_OPENAI_BASE_URLS"),
    (("--backend", "scripted"), {"ZS_CURRICULUM_BASE": "1"}, "ZS_CURRICULUM_BASE must not be 1"),
])
def test_bad_configuration_is_one_line_and_exit_2(args, env, says):
    if args == ("--backend", "vllm"):
        import importlib.util

        if importlib.util.find_spec("vllm") is not None:
            pytest.skip("vLLM is installed in this environment")
    result = serve(*args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_model_failing_inside_the_backend_is_one_log_line():
    """A hub id that is neither cached nor reachable fails when the backend loads, inside uvicorn: one line."""
    result = serve("--model", "nobody/no-such-model-here", env={"HF_HUB_OFFLINE": "1", "ZS_TORCH_THREADS": "1"})
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-2000:]
    assert "start-up failed: TransformersBackend could not start" in output


def test_unreachable_redis_starts_degraded_and_says_so():
    dead = f"redis://127.0.0.1:{free_port()}/0"
    server = ServeProcess("--backend", "scripted", "--redis-url", dead, startup_s=60, log_prefix="zs-degraded")
    try:
        ready = httpx.get(server.url + "/readyz", timeout=5).json()
        assert ready["status"] == "degraded" and ready["cache"] == "redis"
        answer = httpx.post(server.url + "/v1/search", json={"query": "no redis", "noise": 0}, timeout=10)
        assert answer.status_code == 200 and not answer.json()["cached"]
    finally:
        server.stop()
    log = server.log.read_text()
    assert f"warning: Redis at {dead} does not answer" in log and "starting degraded" in log
    assert "Traceback" not in log
    assert server.proc.returncode == 0
