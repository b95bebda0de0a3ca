"""`zerosearch search QUERY`: query a running simulator and print the documents."""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from zerosearch_core.client import SearchClient
from zerosearch_core.errors import RequestError, SearchUnavailableError
from zerosearch_core.schemas import MAX_K, SearchResponse

DEFAULT_URL = "http://127.0.0.1:8000"

command = typer.Typer(add_completion=False, help="Query a running simulator and print the documents.")


class _Mode(str, enum.Enum):
    sft = "sft"
    prompt = "prompt"


@command.command()
def search(
    query: Annotated[str, typer.Argument(help="The search query.", show_default=False)],
    url: Annotated[str, typer.Option(
        "--url", envvar="ZS_SEARCH_URL",
        help="Base URL of the simulator; several, comma-separated, fail over.")] = DEFAULT_URL,
    noise: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="Probability that the result set is noisy (overrides --step).")] = None,
    step: Annotated[int | None, typer.Option(
        min=0, help="Training step: the server's curriculum turns it into a noise level.")] = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, max=MAX_K, help="Number of documents.")] = 5,
    question: Annotated[str | None, typer.Option(help="The question being answered (sft prompt).")] = None,
    answer: Annotated[list[str] | None, typer.Option(
        "--answer", "-a", help="A golden answer; repeat for several.")] = None,
    mode: Annotated[_Mode | None, typer.Option(help="Prompt: sft (fine-tuned simulators) or prompt "
                                                    "(few-shot). Default: the server's.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Fixes the useful/noisy draw.")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="--no-cache bypasses the server cache.")
                     ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the response as JSON.")] = False,
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds to wait for each attempt.")] = 30.0,
    retries: Annotated[int, typer.Option(min=0, help="Retries after a failed attempt.")] = 2,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each retry to stderr.")] = False,
) -> None:
    """Query a running simulator for documents.

    Prints them as a table, or as the raw JSON response with --json. Start a simulator with
    `zerosearch serve`.
    """
    err = Console(stderr=True)
    try:
        client = SearchClient(url, timeout_s=timeout, retries=retries)
    except ValueError as exc:
        err.print(Text(f"Error: {exc}"), soft_wrap=True)
        raise typer.Exit(2) from None

    async def _run() -> SearchResponse:
        async with client:
            return await client.search(
                query, k=k, noise=noise, step=step, question=question, answers=answer or None,
                mode=mode.value if mode else None, seed=seed, cache=None if cache else False)

    client_logger = logging.getLogger("zerosearch_core.client")
    saved_level = client_logger.level
    # Retries are noise for a one-off command unless asked for; the final error says what each URL got.
    client_logger.setLevel(logging.WARNING if verbose else logging.ERROR)
    try:
        with err.status("Searching…"):
            response = asyncio.run(_run())
    except RequestError as exc:
        where = f" (field: {exc.field})" if exc.field else ""
        err.print(Text(f"Error: the simulator refused the request [{exc.code}, HTTP {exc.status}]: "
                       f"{exc.message}{where}"), soft_wrap=True)
        raise typer.Exit(2) from None
    except SearchUnavailableError as exc:
        err.print(Text(f"Error: {exc} (--url / ZS_SEARCH_URL: {', '.join(client.urls)})"), soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        client_logger.setLevel(saved_level)

    if as_json:
        typer.echo(response.model_dump_json(indent=2))
        return
    _print_table(Console(), response)


def _print_table(console: Console, response: SearchResponse) -> None:
    table = Table(title=Text(f"Results for: {response.query}"), show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("label")
    table.add_column("title / snippet", ratio=3)
    table.add_column("url", ratio=1, overflow="fold")
    for index, doc in enumerate(response.documents, start=1):
        # Text objects, not markup strings: generated titles may contain "[...]".
        label = Text(doc.label, style="green" if doc.label == "useful" else "red")
        body = Text(doc.title, style="bold")
        body.append("\n")
        body.append(doc.snippet, style="dim")
        table.add_row(str(index), label, body, Text(doc.url))
    if response.documents:
        console.print(table)
    else:
        console.print(Text(f"No documents for: {response.query}"))
    partial = " partial=True" if response.partial else ""
    summary = (f"noisy={response.noisy} noise={response.noise:.2f} cached={response.cached} "
               f"model={response.model} latency={response.latency_ms:.0f} ms{partial}")
    console.print(Text(summary), soft_wrap=True)
