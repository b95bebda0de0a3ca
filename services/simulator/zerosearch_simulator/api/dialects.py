"""Drop-in dialects of the search APIs agents already call. Each dialect is one module in this
package that translates its wire format to the native engine and back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from zerosearch_simulator.api import system


def include_dialects(app: FastAPI) -> None:
    """Add every dialect's router to the app."""
    app.include_router(system.playground_router)


@asynccontextmanager
async def dialects_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start and stop what dialects need while the app runs (e.g. the MCP session manager)."""
    yield
