"""Helpers shared by the benchmarks: start the servers they compare, read /metrics, print tables.

Starting, waiting for and stopping a server is `tests/harness.py`'s `ServerProcess`, as in the tests.

Every server runs as a subprocess with the same uvicorn settings (1 worker, log level warning, no
access log) so that the benchmarks compare the service, not logging.
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the server harness is shared with the tests: tests/harness.py
from tests.harness import ServerProcess, free_port, read_metric  # noqa: E402

__all__ = ["DEFAULT_REDIS_URL", "ServerProcess", "add_model_options", "flush_redis", "free_port", "machine_line",
           "median", "model_env", "read_metric", "result_line", "start_bare_app", "start_simulator", "table"]

VENV_BIN = Path(sys.executable).parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"  # the benchmarks' own database, flushed before each run
LOG_LEVEL = "warning"  # the same for the simulator and the bare baseline
STARTUP_TIMEOUT_S = 600  # the first start of the transformers backend converts the bundled GGUF


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


# A benchmark stopped with SIGTERM (`timeout`, `kill`) unwinds like one stopped with Ctrl-C, so its `finally` and
# `with` blocks stop the servers it started: they run in their own process sessions and would outlive it (seen on
# a GPU host: a timed-out fidelity run left three servers holding the GPU). A benchmark with its own handler keeps it.
if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def start_simulator(*, backend: str | None = None, redis_url: str | None = None,
                    env: dict[str, str] | None = None, name: str = "simulator") -> ServerProcess:
    """`zerosearch serve` with 1 worker and log level warning; `env` overrides ZS_* variables."""
    port = free_port()
    argv = [str(VENV_BIN / "zerosearch"), "serve", "--port", str(port), "--log-level", LOG_LEVEL, "--workers", "1"]
    if backend:
        argv += ["--backend", backend]
    if redis_url:
        argv += ["--redis-url", redis_url]
    environment = {k: v for k, v in (env or {}).items()}
    if not redis_url:
        environment.setdefault("ZS_REDIS_URL", "")  # an inherited ZS_REDIS_URL must not switch the cache
    return ServerProcess(argv, port=port, env=environment, name=f"bench-{name}", startup_s=STARTUP_TIMEOUT_S)


def start_bare_app(*, redis_url: str, key: str, name: str = "bare") -> ServerProcess:
    """bench/bare_redis_app.py under uvicorn: 1 worker, log level warning, no access log (as the simulator)."""
    port = free_port()
    argv = [str(VENV_BIN / "python"), "-m", "uvicorn", "bench.bare_redis_app:app", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--log-level", LOG_LEVEL, "--no-access-log"]
    return ServerProcess(argv, port=port, env={"BENCH_REDIS_URL": redis_url, "BENCH_KEY": key}, name=f"bench-{name}",
                         ready_path="/healthz", startup_s=60)


def model_env(args: object) -> dict[str, str]:
    """ZS_TIMEOUT_S and torch thread variables from the model benchmarks' common options."""
    env = {"ZS_TIMEOUT_S": str(args.timeout_s)}
    if args.torch_threads:
        n = str(args.torch_threads)
        env |= {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}
    return env


def add_model_options(parser: object) -> None:
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="OMP_NUM_THREADS for the server (0: torch's default, one per core). On a shared, "
                             "loaded machine 1 avoids thread oversubscription (default: 0)")
    parser.add_argument("--timeout-s", type=float, default=600,
                        help="ZS_TIMEOUT_S: a generation's deadline (service default 120; longer here so a slow, "
                             "shared machine measures instead of answering 504) (default: 600)")


# -- output ------------------------------------------------------------------------------------------

def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def result_line(name: str, ratio: float, goal: str, met: bool) -> str:
    return f"RESULT {name} ratio={ratio:.3f} goal={goal} ({'met' if met else 'not met'})"


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"machine: {os.cpu_count()} CPUs, {cpu}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
