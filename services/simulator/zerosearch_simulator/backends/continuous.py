"""Continuous batching over a Hugging Face causal LM: the transformers backend's decode loop.

One thread runs the loop. Each step feeds one token per active row through the model, with one KV cache
shared by the batch. A row leaves the batch the moment it ends (end of sequence, a stop string, its token
budget), and requests that arrive meanwhile join at the next step: their prompts are prefilled, each from its
longest cached prefix (prefix_cache.py), and their caches are merged into the running one, left-padded to a
common length. A batch therefore costs what its rows generate, where `model.generate` costs rows x longest row
(finished rows ride along as padding until the last one ends), and a request that arrives mid-batch starts at
once instead of waiting for the batch to end.

Each row samples from its own `torch.Generator`, seeded with its request's seed, so its text does not depend
on which other requests shared its batch (up to float rounding in batched matrix products). A row whose request
sets `no_repeat_ngram` never samples a token that would repeat a span of that many tokens of its reply, and one
that sets `end_after` never samples an end-of-sequence token before its reply holds that text and then
`end_after_words` words. A row that sets `markers` and `marker_reserve` has the next marker written for it (the
tokens forced, not sampled) when the budget left comes down to what the documents still to come are reserved.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from zerosearch_core.errors import BackendError
from zerosearch_simulator.backends.base import Generation, GenerationRequest, cut_at_stop
from zerosearch_simulator.backends.prefix_cache import PrefixCache

logger = logging.getLogger(__name__)

# A stop string is searched for in the decoded tail of a row: at least this many tokens, and at least as many
# tokens as the stop string has characters (a token is never shorter than one character).
_STOP_TAIL_TOKENS = 12


@dataclass(eq=False)
class Row:
    """One request in the loop. `finish` is called once, from the loop's thread, with the result or the error."""

    request: GenerationRequest
    prompt_ids: list[int]
    finish: Callable[[Generation | BaseException], None]
    reply_start: int = -1  # where the assistant's text (a continuation) begins in prompt_ids; -1: after them
    cancelled: Callable[[], bool] = lambda: False
    generated: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None
    started: float = 0.0
    batch_size: int = 0  # rows decoding together when this one joined
    may_end: bool = True  # False until the reply holds request.end_after and the words after it
    forced: list[int] = field(default_factory=list)  # tokens to write next instead of sampling (a marker)

    @property
    def reply(self) -> list[int]:
        """The reply's tokens so far: its continuation, then what the row generated."""
        start = len(self.prompt_ids) if self.reply_start < 0 else self.reply_start
        return self.prompt_ids[start:] + self.generated


class DecodeLoop:
    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int, max_wait_s: float, prefix_cache_tokens: int = 0,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        # Rows can join a running batch, and reuse cached prefixes, only where the cache holds plain per-token
        # keys and values (not sliding windows, ...); other models batch the requests that arrive together.
        self.can_merge = all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)
        self.prefixes = PrefixCache(max_tokens=prefix_cache_tokens if self.can_merge else 0)
        eos = model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self.eos_ids.add(tokenizer.eos_token_id)
        self._eos_list = sorted(self.eos_ids)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._inbox: collections.deque[Row] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zs-decode", daemon=True)
        # The batch: its rows, the KV cache of every token fed so far, that cache's attention mask, and the
        # token each row sampled last (not yet fed).
        self._rows: list[Row] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None
        self._pending: torch.Tensor | None = None

    # the other threads' side -----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, row: Row) -> None:
        with self._wake:
            self._inbox.append(row)
            self._wake.notify()

    @property
    def waiting(self) -> int:
        return len(self._inbox)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping.is_set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ends the current step, then fails every row and waiting request with 'shutting down'."""
        self._stopping.set()
        with self._wake:
            self._wake.notify()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning("the decode loop did not stop within %.0f s", timeout_s)

    # the loop ----------------------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while not self._stopping.is_set():
                joining = self._take_joining()
                try:
                    if joining:
                        self._join(joining)
                    if self._rows:
                        self._step()
                except Exception as exc:  # a failed forward pass fails its rows, not the loop
                    logger.exception("generation failed for a batch of %d", len(self._rows) + len(joining))
                    error = BackendError(f"generation failed: {type(exc).__name__}: {exc}", recoverable=True)
                    for row in [*self._rows, *[r for r in joining if r not in self._rows]]:
                        row.finish(error)
                    self._reset()
        shutting_down = BackendError("shutting down", recoverable=True)
        with self._wake:
            left, self._inbox = [*self._rows, *self._inbox], collections.deque()
        for row in left:
            row.finish(shutting_down)
        self._reset()

    def _take_joining(self) -> list[Row]:
        """Requests to add to the batch now. An idle loop waits for a first request, then up to max_wait for
        others to batch with it; a running one takes whatever waits, without waiting."""
        with self._wake:
            if not self._rows:
                while not self._inbox and not self._stopping.is_set():
                    self._wake.wait()
                deadline = time.monotonic() + self.max_wait_s
                while len(self._inbox) < self.max_batch and not self._stopping.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
            joining: list[Row] = []
            if self._stopping.is_set() or (self._rows and not self.can_merge):
                return joining
            while self._inbox and len(self._rows) + len(joining) < self.max_batch:
                row = self._inbox.popleft()
                if not row.cancelled():
                    joining.append(row)
            return joining

    def _join(self, rows: list[Row]) -> None:
        """Prefill the new rows' prompts and add them to the batch."""
        now = time.perf_counter()
        for row in rows:
            row.started = now
            request = row.request
            row.may_end = not request.end_after or may_end(request.continuation, request.end_after,
                                                           request.end_after_words)
            if row.request.seed is not None:
                row.generator = torch.Generator(device=self.model.device).manual_seed(row.request.seed)
        if self.can_merge:
            # One prompt at a time, each from its longest cached prefix: batching a prefill saves little (it is
            # already a matrix product), while a cached prefix saves most of it.
            pieces = [self._prefill(row.prompt_ids) for row in rows]
        else:
            pieces = [self._prefill_together([row.prompt_ids for row in rows])]
        tokens = self._sample(torch.cat([logits for _, _, logits in pieces]), rows)
        self._append([(cache, mask) for cache, mask, _ in pieces], tokens)
        self._rows.extend(rows)
        for row in rows:
            row.batch_size = len(self._rows)
        if self.on_batch is not None:
            self.on_batch(len(self._rows))
        self._advance(tokens.tolist(), first=len(self._rows) - len(rows))

    def _prefill(self, ids: list[int]) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        cached, layers = self.prefixes.lookup(ids)
        cache = DynamicCache(config=self.model.config)
        for index, (keys, values) in enumerate(layers):
            cache.update(keys, values, index)
        mask = torch.ones((1, len(ids)), dtype=torch.long, device=self.model.device)
        logits = self._forward(torch.tensor([ids[cached:]], device=self.model.device), mask, cache)
        self.prefixes.store(ids, [(layer.keys, layer.values) for layer in cache.layers], start=cached)
        return cache, mask, logits

    def _prefill_together(self, prompts: list[list[int]]) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        width = max(len(ids) for ids in prompts)
        device = self.model.device
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        cache = DynamicCache(config=self.model.config)
        return cache, mask, self._forward(ids, mask, cache)

    def _step(self) -> None:
        assert self._mask is not None and self._pending is not None
        mask = torch.cat([self._mask, self._mask.new_ones((self._mask.shape[0], 1))], dim=1)
        logits = self._forward(self._pending.unsqueeze(1), mask, self._cache)
        self._mask = mask
        self._pending = self._sample(logits, self._rows)
        self._advance(self._pending.tolist(), first=0)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, cache: DynamicCache | None) -> torch.Tensor:
        """Logits of each row's last position. Positions count each row's real tokens (left padding skipped)."""
        positions = (mask.cumsum(dim=1) - 1)[:, -ids.shape[1]:].clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                         use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :].float()

    def _sample(self, logits: torch.Tensor, rows: list[Row]) -> torch.Tensor:
        for i, row in enumerate(rows):
            if row.request.no_repeat_ngram and (banned := repeating_tokens(row.reply, row.request.no_repeat_ngram)):
                logits[i, banned] = float("-inf")
            if not row.may_end:
                logits[i, self._eos_list] = float("-inf")
        tokens = logits.argmax(dim=-1)
        sampled = [i for i, r in enumerate(rows) if r.request.temperature > 0]
        if sampled:
            index = torch.tensor(sampled, device=logits.device)
            temperature = torch.tensor([rows[i].request.temperature for i in sampled], device=logits.device)
            top_p = torch.tensor([rows[i].request.top_p for i in sampled], device=logits.device)
            probs = _top_p(torch.softmax(logits[index] / temperature.unsqueeze(1), dim=-1), top_p)
            for slot, i in enumerate(sampled):
                tokens[i] = torch.multinomial(probs[slot], 1, generator=rows[i].generator)[0]
        for i, row in enumerate(rows):
            if row.forced:
                tokens[i] = row.forced.pop(0)
        return tokens

    def _advance(self, tokens: list[int], *, first: int) -> None:
        """Append each row's new token, finish the rows that are done and drop them from the batch."""
        keep: list[int] = []
        for i, row in enumerate(self._rows):
            if i >= first:
                row.generated.append(tokens[i - first])
                reply = None  # decoded whole, once, when a rule needs it: a document's words can span many tokens
                if not row.may_end:
                    request = row.request
                    reply = self._reply(row)
                    row.may_end = may_end(reply, request.end_after, request.end_after_words)
                self._force_marker(row, reply)
            if self._stopping.is_set():
                keep.append(i)  # the loop fails them as it exits
            elif row.cancelled():
                continue
            elif self._ended(row):
                row.finish(self._generation(row))
            else:
                keep.append(i)
        if len(keep) < len(self._rows):
            self._select(keep)

    def _reply(self, row: Row) -> str:
        return row.request.continuation + self.tokenizer.decode(row.generated, skip_special_tokens=True)

    def _force_marker(self, row: Row, reply: str | None) -> None:
        """Queue the next marker when the budget left is down to the reserve of the documents still to come."""
        request = row.request
        left = request.max_new_tokens - len(row.generated)
        # Cheap test first: the reply is decoded only in the last (k - 1) reserves of its budget.
        if row.forced or not request.marker_reserve or left > (len(request.markers) - 1) * request.marker_reserve:
            return
        reply = self._reply(row) if reply is None else reply
        due = marker_due(reply, request.markers, left, request.marker_reserve, request.end_after_words)
        if due is not None:
            row.forced = self.tokenizer.encode("\n" + due, add_special_tokens=False)

    def _ended(self, row: Row) -> bool:
        request = row.request
        if row.generated[-1] in self.eos_ids or len(row.generated) >= request.max_new_tokens:
            return True
        if request.stop:
            tail_tokens = max(_STOP_TAIL_TOKENS, *(len(stop) for stop in request.stop))
            tail = self.tokenizer.decode(row.generated[-tail_tokens:], skip_special_tokens=True)
            return any(stop in tail for stop in request.stop if stop)
        return False

    def _generation(self, row: Row) -> Generation:
        count = len(row.generated)  # an end-of-sequence token counts as generated, as in model.generate
        text = self.tokenizer.decode(row.generated, skip_special_tokens=True)
        return Generation(text=cut_at_stop(text, row.request.stop), prompt_tokens=len(row.prompt_ids),
                          completion_tokens=count, backend_seconds=time.perf_counter() - row.started,
                          batch_size=row.batch_size)

    # the batch's tensors -----------------------------------------------------------------------

    def _select(self, keep: list[int]) -> None:
        """Drop rows from the batch, then the columns of the cache that only the dropped rows used."""
        self._rows = [self._rows[i] for i in keep]
        if not keep:
            self._reset()
            return
        assert self._cache is not None and self._mask is not None and self._pending is not None
        index = torch.tensor(keep, device=self._mask.device)
        self._cache.batch_select_indices(index)
        self._mask, self._pending = self._mask[index], self._pending[index]
        if self.can_merge:
            used = self._mask.any(dim=0).nonzero()
            start = int(used[0]) if len(used) else 0
            if start > 0:
                for layer in self._cache.layers:
                    layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]
                self._mask = self._mask[:, start:]

    def _append(self, pieces: list[tuple[DynamicCache, torch.Tensor]], tokens: torch.Tensor) -> None:
        """Add freshly prefilled rows (caches and masks) after the batch's rows, left-padding all to one width."""
        if self._cache is not None:
            assert self._mask is not None and self._pending is not None
            pieces = [(self._cache, self._mask), *pieces]
            tokens = torch.cat([self._pending, tokens])
        if len(pieces) > 1:
            width = max(mask.shape[1] for _, mask in pieces)
            caches = [cache for cache, _ in pieces]
            for layers in zip(*(cache.layers for cache in caches), strict=True):
                layers[0].keys = torch.cat([_pad_left(layer.keys, width, dim=2) for layer in layers])
                layers[0].values = torch.cat([_pad_left(layer.values, width, dim=2) for layer in layers])
            mask = torch.cat([_pad_left(mask, width, dim=1) for _, mask in pieces])
            pieces = [(caches[0], mask)]
        (self._cache, self._mask), self._pending = pieces[0], tokens

    def _reset(self) -> None:
        self._rows, self._cache, self._mask, self._pending = [], None, None, None


def may_end(reply: str, end_after: str, words: int) -> bool:
    """Whether a reply may end: it holds `end_after`, followed by at least `words` words."""
    at = reply.rfind(end_after)
    return at >= 0 and len(reply[at + len(end_after):].split()) >= words


def marker_due(reply: str, markers: tuple[str, ...], left: int, reserve: int, words: int) -> str | None:
    """The marker to write now, if any: the next one, when the `left` tokens of the budget are no more than
    `reserve` for each document after the one being written, and that one holds `words` words (a document cut
    shorter would be dropped by the parser, and the set be one short all the same)."""
    current = max((i + 1 for i, m in enumerate(markers) if m in reply), default=0)
    if current == 0 or current == len(markers) or left > (len(markers) - current) * reserve:
        return None
    return markers[current] if may_end(reply, markers[current - 1], words) else None


def repeating_tokens(ids: list[int], n: int) -> list[int]:
    """The tokens that would end a span of n tokens already in ids, if sampled next (HF's no_repeat_ngram_size,
    over the reply only: the prompt may be copied, the question or a long gold answer, without limit)."""
    if n < 1 or len(ids) < n - 1:
        return []
    if n == 1:
        return sorted(set(ids))
    tail = ids[len(ids) - n + 1:]
    return sorted({ids[i + n - 1] for i in range(len(ids) - n + 1) if ids[i:i + n - 1] == tail})


def _pad_left(tensor: torch.Tensor, width: int, *, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _top_p(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Nucleus filtering, one threshold per row: keep the most likely tokens whose mass reaches top_p."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # A token stays if the mass before it is below top_p (so the most likely token always stays).
    drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p.unsqueeze(1)
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    return torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
