"""The server-side curriculum state (step, total_steps, start, end, base).

Stored in Redis when configured, so every replica draws noise from the same schedule;
otherwise in this process. Reads are memoised for a moment (STALE_AFTER_S) to keep a
Redis round trip off every search; a PUT on one replica reaches the others within that time.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from zerosearch_core.curriculum import noise_probability
from zerosearch_core.schemas import CurriculumResponse, CurriculumState

logger = logging.getLogger(__name__)

STALE_AFTER_S = 0.5
REDIS_KEY = "zerosearch:v1:curriculum"


def describe(state: CurriculumState) -> CurriculumResponse:
    return CurriculumResponse(**state.model_dump(), noise=noise_at(state, state.step))


def noise_at(state: CurriculumState, step: int) -> float:
    return noise_probability(step, state.total_steps, state.start, state.end, state.base)


class CurriculumStore:
    def __init__(self, initial: CurriculumState, redis: Any | None = None,
                 on_error: Any = None) -> None:
        self._redis = redis
        self._state = initial
        self._read_at = 0.0
        self._on_error = on_error or (lambda: None)

    async def get(self) -> CurriculumState:
        if self._redis is None or time.monotonic() - self._read_at < STALE_AFTER_S:
            return self._state
        try:
            raw = await self._redis.get(REDIS_KEY)
        except Exception as exc:  # keep the last known schedule while Redis is away
            self._on_error()
            logger.debug("curriculum read failed: %s", exc)
        else:
            if raw is not None:
                self._state = CurriculumState.model_validate_json(raw)
        self._read_at = time.monotonic()
        return self._state

    async def set(self, state: CurriculumState) -> CurriculumState:
        if self._redis is not None:
            # A write that cannot reach Redis must fail loudly: replicas would disagree otherwise.
            await self._redis.set(REDIS_KEY, state.model_dump_json())
        self._state = state
        self._read_at = time.monotonic()
        return state
