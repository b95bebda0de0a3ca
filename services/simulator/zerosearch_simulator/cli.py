"""`zerosearch serve`: run the simulator with uvicorn."""

from __future__ import annotations

import os
from typing import Annotated

import typer

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
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes (each loads the model).")] = 1,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning (env ZS_LOG_LEVEL).")] = None,
) -> None:
    """Start the simulator. Options override the matching ZS_* environment variables."""
    import uvicorn
    from pydantic import ValidationError

    from zerosearch_simulator.logs import configure_logging
    from zerosearch_simulator.settings import Settings

    overrides = {"ZS_HOST": host, "ZS_PORT": port, "ZS_BACKEND": backend, "ZS_MODEL": model,
                 "ZS_REDIS_URL": redis_url, "ZS_LOG_LEVEL": log_level, "ZS_CORPUS": corpus}
    # Environment variables carry the options to every worker process.
    os.environ.update({k: str(v) for k, v in overrides.items() if v is not None})
    try:
        settings = Settings()
    except ValidationError as exc:
        errors = "; ".join(f"ZS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(errors) from None
    log_config = configure_logging(settings.log_level)
    if settings.backend in ("corpus", "hybrid"):
        _check_corpus(settings)
    _prepare_model(settings)
    uvicorn.run("zerosearch_simulator.app:app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=workers, log_config=log_config, timeout_graceful_shutdown=int(settings.timeout_s) + 5,
                access_log=False)  # the middleware logs every request, with its id and route


def _prepare_model(settings) -> None:
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
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(1) from None


def _check_corpus(settings: object) -> None:
    """A bad corpus stops `serve` before uvicorn starts: one line naming the file and line, exit status 2."""
    from zerosearch_core.corpus import CorpusError
    from zerosearch_simulator.backends.corpus import check_corpus

    try:
        check_corpus(settings)  # type: ignore[arg-type]
    except CorpusError as exc:
        typer.echo(f"Error: corpus: {exc}", err=True)
        raise typer.Exit(2) from None
