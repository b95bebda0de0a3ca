"""The transformers backend: the embedded default (CPU or one GPU), with dynamic batching.

Concurrent `generate` calls wait in a queue. One worker task takes the oldest waiting request plus
every other waiting request with the same sampling settings (up to `max_batch`), as soon as
`max_batch` of them wait or `max_wait_ms` after the oldest arrived, and runs them through one
batched `model.generate` on a dedicated thread. On this CPU batch 8 gives ~3.5x the tokens/s of
batch 1, which is the whole point of the wait.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
    StopStringCriteria,
)

from zerosearch_core.errors import BackendError
from zerosearch_core.models import ModelUnavailableError, resolve_model
from zerosearch_simulator.backends.base import Backend, Generation, GenerationRequest

if TYPE_CHECKING:
    from zerosearch_simulator.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Waiting:
    request: GenerationRequest
    future: asyncio.Future[Generation]
    arrived: float  # event-loop time, for the max_wait_ms deadline


class _Abort(StoppingCriteria):
    """Ends a running batch at the next token once shutdown begins, so shutdown never waits minutes."""

    def __init__(self, flag: threading.Event) -> None:
        self.flag = flag

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device)


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


def _completion_length(ids: list[int], eos_ids: set[int], pad: int | None) -> int:
    """Tokens a row generated: rows that finished early are padded after their eos or stop string."""
    for i, token in enumerate(ids):
        if token in eos_ids:
            return i + 1
        if token == pad:
            return i
    return len(ids)


def _cut(text: str, stops: tuple[str, ...]) -> str:
    positions = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return text[: min(positions)] if positions else text


class TransformersBackend(Backend):
    """Dynamic batching over `model.generate`.

    Seeds: one batch samples from one random stream, so per-request seeds cannot all be honoured;
    when the batch's requests carry seeds, torch is seeded with the first one. The text is therefore
    not bit-reproducible across batch compositions; reproducibility comes from the result cache.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.max_batch = settings.max_batch
        self.max_wait_s = settings.max_wait_ms / 1000.0
        self._model: Any = None
        self._tokenizer: Any = None
        self._waiting: list[_Waiting] = []
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        # One thread: batches run one after another, and torch's own threads parallelise each one.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zs-generate")
        self._closing = False
        self._abort = threading.Event()
        # Building a StopStringCriteria scans the vocabulary (~0.7 s on CPU): once per stop set, not per batch.
        self._stop_criteria: dict[tuple[str, ...], StopStringCriteria] = {}

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._model, self._tokenizer, self.model_id = await asyncio.to_thread(self._load)
        self._worker = asyncio.create_task(self._run(), name="transformers-batcher")

    def _load(self) -> tuple[Any, Any, str]:
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        resolved = resolve_model(self.settings.model)
        device = _pick_device(self.settings.device)
        dtype = _pick_dtype(self.settings.dtype, device)
        logger.info("Loading %s from %s on %s (%s)", resolved.model_id, resolved.path, device, dtype)
        started = time.monotonic()
        tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        if not tokenizer.chat_template:
            raise ModelUnavailableError(f"{resolved.model_id} has no chat template; the simulator needs one")
        tokenizer.padding_side = "left"  # decoder-only: new tokens must follow every prompt directly
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype).to(device)
        model.eval()
        logger.info("Loaded %s in %.1f s", resolved.model_id, time.monotonic() - started)
        return model, tokenizer, resolved.model_id

    async def check_health(self) -> bool:
        return (self._model is not None and not self._closing
                and self._worker is not None and not self._worker.done())

    async def shutdown(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._abort.set()
        self._wakeup.set()
        for waiting in self._waiting:
            self._fail(waiting, "shutting down")
        self._waiting.clear()
        if self._worker is not None:
            try:
                await asyncio.wait_for(self._worker, timeout=30)
            except asyncio.TimeoutError:
                logger.warning("The batch worker did not stop in time")
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._model = self._tokenizer = None

    @property
    def queue_depth(self) -> int:
        return sum(not w.future.done() for w in self._waiting)

    # requests ----------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> Generation:
        if self._closing:
            raise BackendError("shutting down", recoverable=True)
        if self._worker is None:
            raise BackendError("the transformers backend is not started", recoverable=True)
        loop = asyncio.get_running_loop()
        waiting = _Waiting(request, loop.create_future(), loop.time())
        self._waiting.append(waiting)
        self._wakeup.set()
        # A caller that gives up (the engine's timeout) cancels the future; the worker then skips it.
        return await waiting.future

    @staticmethod
    def _fail(waiting: _Waiting, message: str) -> None:
        if not waiting.future.done():
            waiting.future.set_exception(BackendError(message, recoverable=True))

    # the worker --------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            batch = await self._next_batch()
            if batch:
                await self._execute(batch)

    async def _next_batch(self) -> list[_Waiting]:
        loop = asyncio.get_running_loop()
        while not self._closing:
            self._waiting = [w for w in self._waiting if not w.future.done()]
            self._wakeup.clear()
            if not self._waiting:
                await self._wakeup.wait()
                continue
            # The oldest request picks the sampling settings, so no request waits behind others forever.
            key = self._waiting[0].request.sampling_key
            same = [w for w in self._waiting if w.request.sampling_key == key]
            delay = self._waiting[0].arrived + self.max_wait_s - loop.time()
            if len(same) >= self.max_batch or delay <= 0:
                batch = same[: self.max_batch]
                self._waiting = [w for w in self._waiting if w not in batch]
                return batch
            try:
                await asyncio.wait_for(self._wakeup.wait(), delay)
            except asyncio.TimeoutError:
                pass
        return []

    async def _execute(self, batch: list[_Waiting]) -> None:
        loop = asyncio.get_running_loop()
        try:
            generations = await loop.run_in_executor(
                self._executor, self._generate_batch, [w.request for w in batch])
        except Exception as exc:
            if self._abort.is_set():
                message = "shutting down"
            else:
                logger.exception("Generation failed for a batch of %d", len(batch))
                message = f"generation failed: {type(exc).__name__}: {exc}"
            for waiting in batch:
                self._fail(waiting, message)
            return
        if self.on_batch is not None:
            try:
                self.on_batch(len(batch), sum(g.completion_tokens for g in generations))
            except Exception:
                logger.exception("on_batch callback failed")
        for waiting, generation in zip(batch, generations, strict=True):
            if not waiting.future.done():  # cancelled while its batch ran
                waiting.future.set_result(generation)

    def _generate_batch(self, requests: list[GenerationRequest]) -> list[Generation]:
        tokenizer, model = self._tokenizer, self._model
        first = requests[0]
        prompts = [tokenizer.apply_chat_template(list(r.messages), add_generation_prompt=True, tokenize=False)
                   for r in requests]
        # The chat template already wrote the special tokens.
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        criteria = StoppingCriteriaList([_Abort(self._abort)])
        if first.stop and all(r.stop == first.stop for r in requests):
            # Shared stop strings also end each row early; otherwise the text is only cut afterwards.
            if first.stop not in self._stop_criteria:
                self._stop_criteria[first.stop] = StopStringCriteria(tokenizer, list(first.stop))
            criteria.append(self._stop_criteria[first.stop])
        options: dict[str, Any] = {"max_new_tokens": first.max_new_tokens, "do_sample": first.temperature > 0,
                                   "pad_token_id": tokenizer.pad_token_id, "stopping_criteria": criteria}
        if first.temperature > 0:
            options.update(temperature=first.temperature, top_p=first.top_p)
        seed = next((r.seed for r in requests if r.seed is not None), None)
        if seed is not None:
            torch.manual_seed(seed)
        started = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(**inputs, **options)
        seconds = time.perf_counter() - started
        if self._abort.is_set():
            raise BackendError("shutting down", recoverable=True)

        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        eos_ids.add(tokenizer.eos_token_id)
        pad = tokenizer.pad_token_id
        new_tokens = output[:, inputs["input_ids"].shape[1]:].tolist()
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        generations = []
        for request, ids, prompt_length in zip(requests, new_tokens, prompt_lengths, strict=True):
            count = _completion_length(ids, eos_ids, pad)
            text = tokenizer.decode(ids[:count], skip_special_tokens=True)
            generations.append(Generation(
                text=_cut(text, request.stop), prompt_tokens=int(prompt_length), completion_tokens=count,
                backend_seconds=seconds, batch_size=len(requests)))
        return generations
