"""The server harness the tests and benchmarks share, on small real servers (Python's http.server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.harness import PORT, ROOT, ServerProcess, ServerStartError, read_metric

# A tiny HTTP server on the port given as argv[1]; optional: ignore SIGTERM, start a child first.
SERVE = """
import http.server, os, signal, subprocess, sys
port, mode, pid_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "child":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    open(pid_file, "w").write(str(child.pid))
print("serving on", port, flush=True)
http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def serve(tmp_path: Path, mode: str = "plain", **options) -> ServerProcess:
    return ServerProcess([sys.executable, "-c", SERVE, PORT, mode, str(tmp_path / "child.pid")], ready_path="/",
                         cwd=tmp_path, name="harness-test", startup_s=30, poll_s=0.05, **options)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed child of init stays a zombie until init reaps it
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def gone_soon(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_starts_on_a_free_port_answers_and_stops_with_sigterm(tmp_path):
    with serve(tmp_path) as server:
        assert f":{server.port}" in server.url and str(server.port) in server.argv
        assert httpx.get(server.url + "/").status_code == 200
        assert server.ready_after_s > 0
        assert f"serving on {server.port}" in server.log.read_text()
    assert server.proc.returncode == -signal.SIGTERM
    assert server.stop() == -signal.SIGTERM  # stopping twice is harmless


def test_a_server_that_exits_shows_its_log(tmp_path):
    with pytest.raises(ServerStartError, match=r"(?s)exited with 3 before it was ready.*no model at /nowhere"):
        ServerProcess([sys.executable, "-c", "print('no model at /nowhere'); raise SystemExit(3)"], cwd=tmp_path,
                      name="broken", startup_s=30, poll_s=0.05)


def test_a_server_that_never_gets_ready_is_stopped_at_the_deadline(tmp_path):
    pid_file = tmp_path / "pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); print('loading', flush=True); " \
             "time.sleep(300)"
    with pytest.raises(ServerStartError, match=r"(?s)not ready at http://127\.0\.0\.1:\d+/readyz after 1 s.*loading"):
        ServerProcess([sys.executable, "-c", script], cwd=tmp_path, name="slow", startup_s=1, poll_s=0.05)
    assert gone_soon(int(pid_file.read_text()))


def test_a_server_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    server = serve(tmp_path, "ignore-term", grace_s=0.5)
    assert server.stop() == -signal.SIGKILL


@pytest.mark.parametrize("term_group", [False, True])
def test_no_child_outlives_its_server(tmp_path, term_group):
    server = serve(tmp_path, "child", term_group=term_group)
    child = int((tmp_path / "child.pid").read_text())
    assert alive(child)
    assert server.stop() == -signal.SIGTERM
    assert gone_soon(child)


def test_environment_is_passed_and_dropped(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DROPPED", "1")
    script = "import os; print(os.environ.get('HARNESS_SET'), os.environ.get('HARNESS_DROPPED')); raise SystemExit(1)"
    with pytest.raises(ServerStartError, match="yes None"):
        ServerProcess([sys.executable, "-c", script], env={"HARNESS_SET": "yes"}, drop_env=("HARNESS_DROPPED",),
                      cwd=tmp_path, startup_s=30, poll_s=0.05)


def test_read_metric_sums_matching_samples():
    text = "\n".join(['# TYPE zerosearch_requests_total counter',
                      'zerosearch_requests_total{route="/v1/search",status="200"} 3.0',
                      'zerosearch_requests_total{route="/v1/search/batch",status="200"} 2.0',
                      'zerosearch_requests_total_created 1.7e9', 'zerosearch_generations_total 5'])
    assert read_metric(text, "zerosearch_requests_total") == 5
    assert read_metric(text, "zerosearch_requests_total", {"route": "/v1/search"}) == 3
    assert read_metric(text, "zerosearch_requests_total", must_contain='"/v1/search/batch"') == 2
    assert read_metric(text, "zerosearch_generations_total") == 5
    assert read_metric(text, "missing") == 0


def test_a_benchmark_stopped_with_sigterm_stops_its_servers(tmp_path):
    """A benchmark (anything importing bench._servers) killed by `timeout` must not leave its servers running."""
    driver = (
        "import sys, time\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import bench._servers\n"
        "from tests.unit.test_harness import serve\n"
        "from pathlib import Path\n"
        "with serve(Path(sys.argv[2])) as server:\n"
        "    Path(sys.argv[2], 'server.pid').write_text(str(server.proc.pid))\n"
        "    time.sleep(300)\n")
    bench = subprocess.Popen([sys.executable, "-c", driver, str(ROOT), str(tmp_path)], cwd=ROOT)
    pid_file = tmp_path / "server.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and bench.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists(), "the benchmark did not start its server"
    server_pid = int(pid_file.read_text())
    bench.send_signal(signal.SIGTERM)
    assert bench.wait(60) == 128 + signal.SIGTERM
    assert not alive(server_pid)
