"""Typed dependencies read from app.state (tests override them through app.dependency_overrides)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from zerosearch_simulator.engine import SearchEngine
from zerosearch_simulator.settings import Settings


# async on purpose: FastAPI runs a plain `def` dependency in a worker thread, which costs more than the
# whole cache-hit path.
async def get_engine(request: Request) -> SearchEngine:
    return request.app.state.engine


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


EngineDep = Annotated[SearchEngine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
