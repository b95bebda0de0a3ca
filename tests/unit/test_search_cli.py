"""`zerosearch search` against a real HTTP server on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from tests.conftest import serve_in_thread
from zerosearch_core.schemas import SearchRequest, SearchResponse
from zerosearch_core.search_cli import command

ZEROSEARCH = Path(sys.executable).with_name("zerosearch")
received: list[dict] = []


async def _search(request: Request) -> Response:
    body = await request.json()
    received.append(body)
    try:
        req = SearchRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        error = {"code": "invalid_request", "message": first["msg"], "field": str(first["loc"][0])}
        return JSONResponse({"error": error}, status_code=422)
    docs = [{"id": f"d{i}", "title": f"Hamlet{i}", "url": f"https://example.org/hamlet/{i}",
             "snippet": f"Snippet{i} [bold]not markup[/bold]", "label": "noisy" if i == 2 else "useful"}
            for i in range(1, req.k + 1)]
    response = SearchResponse(query=req.query, documents=docs, noisy=False, noise=req.noise or 0.0,
                              cached=True, model="fake-model", latency_ms=12.0, text="Doc 1: ...")
    return JSONResponse(response.model_dump())


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_in_thread(Starlette(routes=[Route("/v1/search", _search, methods=["POST"])])) as base:
        yield base


@pytest.fixture
def down() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture(autouse=True)
def _reset() -> None:
    received.clear()


def invoke(*args: str, **env: str):
    return CliRunner().invoke(command, list(args), env={"COLUMNS": "200", "ZS_SEARCH_URL": None, **env})


def test_table_output(url: str) -> None:
    result = invoke("who wrote hamlet", "--url", url, "-k", "3")
    assert result.exit_code == 0, result.output
    for text in ("Hamlet1", "Hamlet3", "useful", "noisy", "https://example.org/hamlet/2",
                 "[bold]not markup[/bold]", "cached=True", "model=fake-model", "latency=12 ms"):
        assert text in result.stdout
    assert result.stderr == ""
    # Options left out are not sent: the server decides.
    assert received == [{"query": "who wrote hamlet", "k": 3}]


def test_json_output_and_options(url: str) -> None:
    result = invoke("hamlet", "--url", url, "--noise", "0.3", "--step", "4",
                    "--question", "Who wrote Hamlet?", "--answer", "Shakespeare", "-a", "William Shakespeare",
                    "--mode", "prompt", "--seed", "7", "--no-cache", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["query"] == "hamlet" and len(payload["documents"]) == 5
    assert received == [{"query": "hamlet", "k": 5, "noise": 0.3, "step": 4, "question": "Who wrote Hamlet?",
                         "answers": ["Shakespeare", "William Shakespeare"], "mode": "prompt", "seed": 7,
                         "cache": False}]


def test_url_from_environment(url: str) -> None:
    result = invoke("q", "--json", ZS_SEARCH_URL=f"http://127.0.0.1:1,{url}")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["query"] == "q"


def test_refused_request_is_one_line(url: str) -> None:
    result = invoke("   ", "--url", url)
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "field: query" in line and "HTTP 422" in line
    assert result.stdout == ""


def test_unreachable_url_is_one_line(down: str) -> None:
    started = time.monotonic()
    result = invoke("q", "--url", down, "--retries", "1")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert f"{down}: connection refused" in line and "zerosearch serve" in line
    assert time.monotonic() - started < 5


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("ZS_SEARCH_URL", None)
    return subprocess.run([str(ZEROSEARCH), *args], capture_output=True, text=True, timeout=60, env=env)


def test_installed_command_unreachable(down: str) -> None:
    proc = _run("search", "who wrote hamlet", "--url", down, "--retries", "0")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert down in line and "zerosearch serve" in line


def test_installed_command_lists_search() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    assert "search" in proc.stdout


def test_installed_command_help() -> None:
    proc = _run("search", "--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("--url", "--noise", "--step", "--json", "--no-cache", "ZS_SEARCH_URL"):
        assert option in proc.stdout
