"""The one-minute version of the soak benchmark (bench/soak.py; the 10-minute run is in docs/reliability.md):
half a minute against `zerosearch serve` with Redis, half a minute against two replicas behind nginx, the
scripted backend answering. No request may fail (a 503 from a full queue would be documented backpressure),
RSS may grow at most 10% after warm-up, and no file descriptor may leak."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]


def test_one_minute_soak(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "0.5", "--warmup-s", "7",
                          "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=380)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(out.read_text())["results"]
    assert [r["target"] for r in results] == ["single", "2 replicas + nginx"]
    for r in results:
        assert r["errors"] == 0 and r["warmup_errors"] == 0, (r["target"], r["statuses"], r["failure_examples"])
        assert r["ok"] > 100, r
        assert set(r["by_kind"]) >= {"native", "tavily", "serpapi", "serper", "brave", "google", "exa", "searxng",
                                     "searchr1", "batch"}
        assert r["rss_growth"] <= 1.10, r
        assert all(end <= start + 5 for start, end in zip(r["start"]["fds"], r["end"]["fds"], strict=True)), r
    assert "(met)" in run.stdout.splitlines()[-1], run.stdout
