"""Helpers shared by the benchmarks: start/stop servers on free ports, read /metrics, print tables.

Every server runs as a subprocess with the same uvicorn settings (1 worker, log level warning, no
access log) so that the benchmarks compare the service, not logging.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"  # the benchmarks' own database, flushed before each run
LOG_LEVEL = "warning"  # the same for the simulator and the bare baseline
STARTUP_TIMEOUT_S = 600  # the first start of the transformers backend converts the bundled GGUF


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


class Server:
    """A server subprocess on a free port, ready once `ready_path` answers 200. Use as a context manager."""

    def __init__(self, argv: Sequence[str], *, port: int, env: dict[str, str] | None = None, name: str = "server",
                 ready_path: str = "/readyz", timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.name = name
        self.log = Path(tempfile.gettempdir()) / f"zerosearch-bench-{name}-{port}.log"
        environment = os.environ | (env or {})
        self.proc = subprocess.Popen(list(argv), env=environment, cwd=ROOT, stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
        except BaseException:  # interrupted while starting: no server is left behind
            self.stop()
            raise
        self.stop()
        raise RuntimeError(f"{name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def metrics_text(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=30).text

    def metric(self, name: str, labels: dict[str, str] | None = None, text: str | None = None) -> float:
        """Sum of the samples of `name` (all label sets, or those matching `labels`)."""
        return read_metric(text if text is not None else self.metrics_text(), name, labels)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def read_metric(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        if labels:
            found = dict(_LABEL.findall(m.group(2) or ""))
            if any(found.get(k) != v for k, v in labels.items()):
                continue
        total += float(m.group(3))
    return total


def start_simulator(*, backend: str | None = None, redis_url: str | None = None,
                    env: dict[str, str] | None = None, name: str = "simulator") -> Server:
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
    return Server(argv, port=port, env=environment, name=name)


def start_bare_app(*, redis_url: str, key: str, name: str = "bare") -> Server:
    """bench/bare_redis_app.py under uvicorn: 1 worker, log level warning, no access log (as the simulator)."""
    port = free_port()
    argv = [str(VENV_BIN / "python"), "-m", "uvicorn", "bench.bare_redis_app:app", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--log-level", LOG_LEVEL, "--no-access-log"]
    return Server(argv, port=port, env={"BENCH_REDIS_URL": redis_url, "BENCH_KEY": key}, name=name,
                  ready_path="/healthz", timeout_s=60)


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
