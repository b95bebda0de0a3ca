"""Drop-in dialects of the search APIs agents already call. Each dialect is one module in this
package that translates its wire format to the native engine and back:

    searchr1   POST /retrieve                     Search-R1 / veRL / SkyRL batch form, ZeroSearch wiki form
    serpapi    GET /search.json, GET /search      SerpAPI
    tavily     POST /search, POST /extract        Tavily
    serper     POST /search, GET /search          Serper
    searxng    GET|POST /search?format=json, GET /?format=json
    brave      GET|POST /res/v1/web/search        Brave Search
    google     GET /customsearch/v1               Google Custom Search JSON API
    exa        POST /search                       Exa
    mcp        /mcp (streamable HTTP), /mcp/sse   MCP tools web_search and search

`shared_paths` owns `/search` and `/` and picks the dialect from the request's own fields; `extensions`
holds the X-ZeroSearch-* curriculum extensions and the API-key check every dialect uses.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from zerosearch_simulator.api import brave, google, searchr1, serpapi, shared_paths, tavily

logger = logging.getLogger(__name__)


def include_dialects(app: FastAPI) -> None:
    """Add every dialect's router to the app (shared_paths also serves `GET /`, the playground page)."""
    for router in (searchr1.router, serpapi.router, tavily.router, brave.router, google.router,
                   shared_paths.router):
        app.include_router(router)
    try:
        from zerosearch_simulator.api import mcp
    except ImportError as exc:  # the `mcp` SDK is a simulator dependency; without it only /mcp is missing
        logger.warning("MCP server disabled: %s (pip install mcp)", exc)
        return
    mcp.include(app)


@asynccontextmanager
async def dialects_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start and stop what dialects need while the app runs (the MCP session manager)."""
    if getattr(app.state, "mcp_server", None) is None:
        yield
        return
    from zerosearch_simulator.api import mcp

    async with mcp.lifespan(app):
        yield
