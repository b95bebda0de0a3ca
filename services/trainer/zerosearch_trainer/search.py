"""Opening the simulator connection a command searches through, checked before any model is loaded."""

from __future__ import annotations

from zerosearch_core.errors import ZeroSearchError
from zerosearch_trainer.config import SimulatorArguments
from zerosearch_trainer.rollout import SearchService

__all__ = ["SetupError", "open_search"]


class SetupError(ZeroSearchError):
    """The run cannot start: the search URL is malformed or no simulator answers there."""


def open_search(sim: SimulatorArguments, rendering: str) -> SearchService:
    """A `SearchService` to `sim.search_url`; with `check_simulator`, fails fast when GET /readyz does not answer."""
    try:
        service = SearchService(sim.search_url, timeout_s=sim.search_timeout_s, retries=sim.search_retries,
                                backoff_s=sim.search_backoff_s, max_backoff_s=sim.search_max_backoff_s,
                                rendering=rendering)
    except ValueError as exc:
        raise SetupError(f"--search_url: {exc}") from None
    if sim.check_simulator and not service.healthy():
        service.close()
        raise SetupError(f"no simulator answers at {sim.search_url} (GET /readyz). Start one with "
                         "`zerosearch serve` (or `zerosearch serve --backend scripted` for canned documents), or "
                         "pass --search_url.")
    return service
