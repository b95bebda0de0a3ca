"""The transformers backend: the embedded default (CPU or one GPU), with continuous batching.

Concurrent `generate` calls feed one decode loop (backends/continuous.py) on a dedicated thread. An idle loop
waits up to `max_wait_ms` after the first request for others to start with it (`max_batch` at most); while it
runs, new requests join at the next token step and finished ones leave at once, so no request waits for a
batch to end and no finished row is computed as padding.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from zerosearch_core.errors import BackendError
from zerosearch_core.models import ModelUnavailableError, resolve_model
from zerosearch_simulator.backends.base import Backend, Generation, GenerationRequest, chat_prompt
from zerosearch_simulator.backends.continuous import DecodeLoop, Row
from zerosearch_simulator.tuned import simulator_model

if TYPE_CHECKING:
    from zerosearch_simulator.settings import Settings

logger = logging.getLogger(__name__)


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        # Half precision on CPU is slower than float32 and not always supported by kernels.
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ModelUnavailableError(f"ZS_DTYPE={name!r} is not a torch dtype (try auto, float32, bfloat16)")
    return dtype


class TransformersBackend(Backend):
    """Continuous batching over a transformers model. Each request samples with its own seed, so its text does
    not depend on the requests it was batched with."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._model: Any = None
        self._tokenizer: Any = None
        self._loop: DecodeLoop | None = None
        self._closing = False

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._model, self._tokenizer, self.model_id = await asyncio.to_thread(self._load)
        self._loop = DecodeLoop(self._model, self._tokenizer, max_batch=self.settings.max_batch,
                                max_wait_s=self.settings.max_wait_ms / 1000.0,
                                prefix_cache_tokens=self.settings.prefix_cache_tokens, on_batch=self._observe_batch)
        self._loop.start()

    def _load(self) -> tuple[Any, Any, str]:
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        resolved = resolve_model(simulator_model(self.settings.model))
        device = _pick_device(self.settings.device)
        dtype = _pick_dtype(self.settings.dtype, device)
        logger.info("Loading %s from %s on %s (%s)", resolved.model_id, resolved.path, device, dtype)
        started = time.monotonic()
        tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        if not tokenizer.chat_template:
            raise ModelUnavailableError(f"{resolved.model_id} has no chat template; the simulator needs one")
        model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype).to(device)
        model.eval()
        logger.info("Loaded %s in %.1f s", resolved.model_id, time.monotonic() - started)
        return model, tokenizer, resolved.model_id

    async def check_health(self) -> bool:
        return self._loop is not None and self._loop.alive and not self._closing

    async def shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._loop is not None:
            await asyncio.to_thread(self._loop.stop)
        self._model = self._tokenizer = None

    @property
    def queue_depth(self) -> int:
        return 0 if self._loop is None else self._loop.waiting

    def _observe_batch(self, size: int) -> None:
        if self.on_batch is not None:
            try:
                self.on_batch(size)
            except Exception:
                logger.exception("on_batch callback failed")

    # requests ----------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> Generation:
        if self._closing:
            raise BackendError("shutting down", recoverable=True)
        if self._loop is None:
            raise BackendError("the transformers backend is not started", recoverable=True)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Generation] = loop.create_future()

        def finish(result: Generation | BaseException) -> None:  # called from the decode thread
            loop.call_soon_threadsafe(_settle, future, result)

        # The chat template is rendered here, once, so the decode thread spends its time on the model.
        # A continuation's prompt starts with its first reply's, so the prefix cache serves most of it.
        text = chat_prompt(self._tokenizer, request)
        prompt_ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]  # the template wrote them
        reply_start = len(prompt_ids)
        if request.continuation and request.no_repeat_ngram:  # where the reply's own tokens begin
            header = text[:len(text) - len(request.continuation)]
            reply_start = min(reply_start, len(self._tokenizer(header, add_special_tokens=False)["input_ids"]))
        self._loop.submit(Row(request=request, prompt_ids=prompt_ids, reply_start=reply_start, finish=finish,
                              cancelled=future.cancelled))
        # A caller that gives up (the engine's timeout) cancels the future; the loop then drops its row.
        return await future


def _settle(future: asyncio.Future[Generation], result: Generation | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
