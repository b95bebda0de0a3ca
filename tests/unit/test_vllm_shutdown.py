"""The vllm backend's shutdown order, on a stand-in for vLLM's `AsyncLLM` (vLLM itself is not in this venv;
tests/integration/test_vllm_backend.py checks a real engine's log for a clean stop)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from zerosearch_simulator.backends.vllm import VLLMBackend


class FakeEngine:
    """Records whether the output handler was still running when the engine core was told to stop."""

    def __init__(self) -> None:
        self.output_handler = asyncio.get_running_loop().create_task(asyncio.Event().wait())
        self.handler_running_at_shutdown: bool | None = None

    def shutdown(self) -> None:
        self.handler_running_at_shutdown = not self.output_handler.done()
        self.output_handler.cancel()


def backend_with(engine: FakeEngine, in_flight: int) -> VLLMBackend:
    backend = VLLMBackend(SimpleNamespace())
    backend._engine, backend._in_flight = engine, in_flight
    return backend


async def test_idle_shutdown_stops_the_output_handler_before_the_engine_core():
    # otherwise the handler sees the core die first and logs an EngineDeadError traceback on a clean stop
    engine = FakeEngine()
    await backend_with(engine, in_flight=0).shutdown()
    assert engine.handler_running_at_shutdown is False


async def test_shutdown_with_requests_in_flight_leaves_the_handler_to_fail_them():
    engine = FakeEngine()
    backend = backend_with(engine, in_flight=2)
    await backend.shutdown()
    assert engine.handler_running_at_shutdown is True
    await backend.shutdown()  # a second call is a no-op, not a second engine shutdown
    assert backend._engine is None
