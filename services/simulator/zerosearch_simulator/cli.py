"""`zerosearch serve`: run the simulator with uvicorn."""

from __future__ import annotations

import importlib.util
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from zerosearch_simulator.settings import Settings

KEEP_ALIVE_S = 65

command = typer.Typer(add_completion=False, help="Start the search simulator (FastAPI + uvicorn).")


@command.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (env ZS_HOST; default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (env ZS_PORT; default 8000).")] = None,
    backend: Annotated[str | None, typer.Option(
        help="transformers (CPU/GPU default), vllm, openai, scripted (canned, for demos); real engines: corpus "
             "(BM25 over --corpus), upstream; hybrid (useful sets from the corpus, noisy from the model) "
             "(env ZS_BACKEND).")] = None,
    corpus: Annotated[str | None, typer.Option(
        help="corpus/hybrid: a JSONL corpus ({id, contents} as Search-R1's wiki-18, or {id, title, text}); "
             "default: the CIA World Factbook (env ZS_CORPUS).")] = None,
    model: Annotated[str | None, typer.Option(
        help="Local checkpoint, adapter directory (zerosearch tune-sim) or hub id; default: the bundled "
             "SmolLM2-135M-Instruct with the shipped tuned adapter; bundled-base: untuned (env ZS_MODEL).")] = None,
    redis_url: Annotated[str | None, typer.Option(
        help="Redis URL for a cache shared by replicas; default: in-process cache (env ZS_REDIS_URL).")] = None,
    upstream: Annotated[str | None, typer.Option(
        help="--backend upstream: serpapi, tavily, brave, serper, searxng, google_cse, exa or retrieve; the key "
             "comes from ZS_UPSTREAM_KEY or ZS_UPSTREAM_KEY_FILE (env ZS_UPSTREAM).")] = None,
    upstream_url: Annotated[str | None, typer.Option(
        help="--backend upstream: the API's base URL; default: its public address (env ZS_UPSTREAM_URL).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes (each loads the model).")] = 1,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning (env ZS_LOG_LEVEL).")] = None,
) -> None:
    """Start the simulator. Options override the matching ZS_* environment variables."""
    import uvicorn
    from pydantic import ValidationError

    from zerosearch_simulator.logs import configure_logging
    from zerosearch_simulator.settings import Settings

    overrides = {"ZS_HOST": host, "ZS_PORT": port, "ZS_BACKEND": backend, "ZS_MODEL": model,
                 "ZS_REDIS_URL": redis_url, "ZS_LOG_LEVEL": log_level, "ZS_CORPUS": corpus,
                 "ZS_UPSTREAM": upstream, "ZS_UPSTREAM_URL": upstream_url}
    # Environment variables carry the options to every worker process.
    os.environ.update({k: str(v) for k, v in overrides.items() if v is not None})
    try:
        settings = Settings()
    except ValidationError as exc:
        _fail("; ".join(_describe(e) for e in exc.errors()))
    if problem := preflight_problem(settings):
        _fail(problem)
    if settings.redis_url and (reason := redis_unreachable(settings.redis_url)):
        typer.echo(f"warning: Redis at {settings.redis_url} does not answer ({reason}): starting degraded, "
                   "answering uncached; the cache is used as soon as Redis answers.", err=True)
    log_config = configure_logging(settings.log_level)
    if settings.backend in ("corpus", "hybrid"):
        _check_corpus(settings)
    _prepare_model(settings)
    # uvicorn finishes the requests in flight on SIGTERM, then raises the signal again so that the process ends
    # "killed by SIGTERM" (status -15). A stop that was asked for (docker stop, Kubernetes) and went cleanly
    # is a success: exit 0. (Installed before uvicorn's own handler, which restores it when it is done.)
    signal.signal(signal.SIGTERM, _stopped)
    uvicorn.run("zerosearch_simulator.app:app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=workers, log_config=log_config, timeout_graceful_shutdown=int(settings.timeout_s) + 5,
                # Longer than a proxy's idle timeout (nginx here: 50 s), so the proxy, not the server, closes an
                # idle kept-alive connection, and a request sent on it never races the close (uvicorn's 5 s
                # default did: a reset connection now and then under steady load).
                timeout_keep_alive=KEEP_ALIVE_S,
                access_log=False)  # the middleware logs every request, with its id and route


def _prepare_model(settings: Settings) -> None:
    """Resolve the model before the workers start: a GGUF is converted and an adapter merged once, here, and a
    missing or corrupt model stops the start with one line instead of a traceback per worker."""
    model_backend = settings.hybrid_backend if settings.backend == "hybrid" else settings.backend
    if model_backend not in ("transformers", "vllm"):
        return
    from zerosearch_core.models import ModelUnavailableError, resolve_model
    from zerosearch_simulator.tuned import simulator_model

    try:
        resolve_model(simulator_model(settings.model))
    except ModelUnavailableError as exc:
        _fail(str(exc))


def _check_corpus(settings: Settings) -> None:
    """A bad corpus stops `serve` before uvicorn starts: one line naming the file and line, exit status 2."""
    from zerosearch_core.corpus import CorpusError
    from zerosearch_simulator.backends.corpus import check_corpus

    try:
        check_corpus(settings)
    except CorpusError as exc:
        _fail(f"corpus: {exc}")


def _stopped(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _fail(message: str) -> NoReturn:
    """A user mistake at start-up: one line on stderr, exit 2, no traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _describe(error: dict) -> str:
    names = [str(part) for part in error.get("loc", ())]
    name = f"ZS_{'_'.join(names).upper()}" if names else "ZS_* settings"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if error.get("type") == "value_error" or not names or "key" in name.lower():
        return message  # never echo a key (ZS_API_KEYS, ZS_UPSTREAM_KEY) back
    return f"{name}={error.get('input')!r}: {message}"


def preflight_problem(settings: Any) -> str | None:
    """What would stop the backend from starting and can be seen without loading anything, else None."""
    model_backend = settings.hybrid_backend if settings.backend == "hybrid" else settings.backend
    if model_backend == "vllm" and importlib.util.find_spec("vllm") is None:
        return ("ZS_BACKEND=vllm needs vLLM, which is not installed here: run `make setup-vllm` and start "
                "`.venv-vllm/bin/zerosearch serve --backend vllm`, or `pip install vllm` on a GPU host")
    name = settings.model
    if model_backend in ("transformers", "vllm") and name and name.startswith(("/", "./", "../", "~")):
        if not Path(name).expanduser().exists():
            return f"ZS_MODEL={name!r}: no such directory or .gguf file (unset it for the bundled model)"
    return None


def redis_unreachable(url: str) -> str | None:
    """Why Redis at `url` does not answer a PING within a second, else None."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
