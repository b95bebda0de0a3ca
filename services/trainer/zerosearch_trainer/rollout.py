"""Multi-turn search rollouts: the policy writes, the simulator answers inside `<information>`.

One call of `SearchRollout.run` plays a batch of trajectories (TRL hands `num_generations` copies of each
prompt in a row) turn by turn:

1. every active trajectory generates until `</search>`, `</answer>`, end of sequence or its token budget;
2. `<answer>` ends a trajectory; `<search> q </search>` queues a search; neither appends the paper's
   invalid-action message;
3. the queued searches of the turn go to the simulator in ONE `POST /v1/search/batch` (question, golden
   answers, the curriculum step or noise level, a seed); each result is rendered as the paper did
   (`\\n\\n<information>Doc 1: ...</information>\\n\\n`), a failed search as an `<information>` block saying so;
4. after `max_turns` searches, one final turn must answer (a search written then is not run).

Token ids are never rebuilt from text: each turn's sampled ids are appended as sampled, and inserted text is
tokenised on its own (`add_special_tokens=False`) and appended, with `env_mask` 0 on it. The completion's
length (model and environment tokens together) never exceeds `max_completion_length`.

Generation is behind a small interface (`Generator`), so the loop runs with plain transformers generation
(CPU and GPU) and with TRL's vLLM engine (`VLLMGenerator`, GPU hosts).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from zerosearch_core.client import SearchClient
from zerosearch_core.errors import RequestError, SearchUnavailableError
from zerosearch_core.protocol import render_paper, render_searchr1
from zerosearch_core.schemas import MAX_BATCH_REQUESTS, ErrorBody

__all__ = [
    "INVALID_ACTION_MESSAGE",
    "GenerationResult",
    "Generator",
    "HFGenerator",
    "RolloutBatch",
    "RolloutSettings",
    "SearchRollout",
    "SearchService",
    "Trajectory",
    "VLLMGenerator",
    "parse_action",
]

logger = logging.getLogger(__name__)

INVALID_ACTION_MESSAGE = (
    "My previous action is invalid. If I want to search, I should put the query between <search> and </search>. "
    "If I want to give the final answer, I should put the answer between <answer> and </answer>. Let me try again."
)
SEARCH_FAILED_MESSAGE = "The search engine failed to answer this query ({reason}). No documents are available."
STOP_TAGS = ("</search>", "</answer>")

_SEARCH = re.compile(r"<search>(.*?)</search>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


# ---- actions ---------------------------------------------------------------------------------


def parse_action(text: str) -> tuple[str | None, str]:
    """('answer', content) | ('search', query) | (None, '') for one turn's generated text.

    The first closing tag decides (generation stops at the first one); text after it, which a token that
    completes the tag may carry, is ignored.
    """
    candidates = []
    for kind, pattern in (("search", _SEARCH), ("answer", _ANSWER)):
        if match := pattern.search(text):
            candidates.append((match.end(), kind, match.group(1).strip()))
    if not candidates:
        return None, ""
    _, kind, content = min(candidates)
    if kind == "search" and not content:
        return None, ""  # an empty query is not a valid action
    return kind, content


# ---- generation --------------------------------------------------------------------------------


@dataclass
class GenerationResult:
    ids: list[int]  # the sampled ids, as sampled (no padding)
    logprobs: list[float] | None  # per token, under the sampling distribution
    eos: bool  # the model ended the sequence (an EOS id is the last of `ids`)


class Generator(Protocol):
    def generate(self, contexts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[GenerationResult]:
        """Continue each context by at most its `max_new_tokens`, stopping after `</search>` or `</answer>`."""


class HFGenerator:
    """transformers `generate` on a left-padded batch, with a stop criterion that records where each row ended.

    pad == eos for SmolLM2 and Qwen base models, so rows are cut at the step at which they stopped (recorded by
    the criterion), never by looking for a pad id.
    """

    def __init__(self, model: Any, tokenizer: Any, generation_config: Any | None = None, *,
                 compute_logprobs: bool = True) -> None:
        import copy

        self.model = model
        self.tokenizer = tokenizer
        self.generation_config = copy.deepcopy(generation_config if generation_config is not None
                                               else model.generation_config)
        self.compute_logprobs = compute_logprobs
        eos = self.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids))
        self.pad_id = pad

    def generate(self, contexts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[GenerationResult]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        if not contexts:
            return []
        device = next(self.model.parameters()).device
        width = max(len(c) for c in contexts)
        input_ids = torch.full((len(contexts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(contexts), width), dtype=torch.long)
        for row, ctx in enumerate(contexts):
            input_ids[row, width - len(ctx):] = torch.tensor(list(ctx), dtype=torch.long)
            attention[row, width - len(ctx):] = 1
        limits = [max(1, int(m)) for m in max_new_tokens]
        tokenizer, eos_ids = self.tokenizer, self.eos_ids

        class _Stop(StoppingCriteria):
            """Per row: EOS, a stop tag in this turn's text, or the row's own token budget."""

            def __init__(self) -> None:
                self.ended_at: list[int | None] = [None] * len(contexts)

            def __call__(self, ids: Any, scores: Any, **kwargs: Any) -> Any:
                produced = ids.shape[1] - width
                done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
                for row in range(ids.shape[0]):
                    if self.ended_at[row] is not None:
                        done[row] = True
                        continue
                    last = int(ids[row, -1])
                    tail = tokenizer.decode(ids[row, max(width, ids.shape[1] - 12):].tolist())
                    if last in eos_ids or any(tag in tail for tag in STOP_TAGS) or produced >= limits[row]:
                        self.ended_at[row] = produced
                        done[row] = True
                return done

        stop = _Stop()
        config = self._config(max(limits))
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), generation_config=config,
                stopping_criteria=StoppingCriteriaList([stop]))
        sequences = out.sequences[:, width:].cpu()
        results = []
        for row in range(len(contexts)):
            length = stop.ended_at[row] if stop.ended_at[row] is not None else sequences.shape[1]
            length = min(length, limits[row], sequences.shape[1])
            ids = sequences[row, :length].tolist()
            logprobs = None
            if self.compute_logprobs and out.scores:
                logprobs = [float(torch.log_softmax(out.scores[t][row].float(), dim=-1)[tok])
                            for t, tok in enumerate(ids)]
            results.append(GenerationResult(ids, logprobs, bool(ids) and ids[-1] in self.eos_ids))
        return results

    def _config(self, max_new_tokens: int) -> Any:
        import copy

        config = copy.deepcopy(self.generation_config)
        config.max_new_tokens = max_new_tokens
        config.max_length = None
        config.pad_token_id = self.pad_id
        config.stop_strings = None  # handled by our own criterion (it needs no tokenizer= argument)
        config.return_dict_in_generate = True
        config.output_scores = self.compute_logprobs
        return config


class VLLMGenerator:
    """TRL's vLLM engine (`trainer.vllm_generation`, colocate or server mode), one call per turn.

    Written for GPU hosts; not exercised on the CPU machine this project was built on (see docs/trainer.md).
    TRL reads `max_completion_length` and `generation_kwargs` at call time, so both are set per turn.
    """

    def __init__(self, trainer: Any, tokenizer: Any) -> None:
        self.trainer = trainer
        self.tokenizer = tokenizer
        eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])

    def generate(self, contexts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[GenerationResult]:
        if not contexts:
            return []
        vg = self.trainer.vllm_generation
        saved = (vg.max_completion_length, dict(vg.generation_kwargs or {}))
        vg.max_completion_length = max(max_new_tokens)
        vg.generation_kwargs = {**saved[1], "stop": list(STOP_TAGS), "include_stop_str_in_output": True}
        try:
            out = vg.generate(prompts=[list(c) for c in contexts], images=None, num_generations=1)
        finally:
            vg.max_completion_length, vg.generation_kwargs = saved
        completion_ids, logprobs = out[1], out[2]
        results = []
        for row, ids in enumerate(completion_ids):
            ids = list(ids)[: max_new_tokens[row]]
            lp = None
            if logprobs is not None:
                lp = [float(x[0] if isinstance(x, list | tuple) else x) for x in logprobs[row]][: len(ids)]
            results.append(GenerationResult(ids, lp, bool(ids) and ids[-1] in self.eos_ids))
        return results


# ---- search ---------------------------------------------------------------------------------------


@dataclass
class SearchOutcome:
    text: str | None  # rendered documents, None when the search failed
    error: str | None = None
    noisy: bool | None = None
    server_latency_ms: float | None = None


class SearchService:
    """A synchronous face on the async `SearchClient`, with its own event loop (the trainer is synchronous)."""

    def __init__(self, urls: str | Sequence[str], *, timeout_s: float = 60.0, retries: int = 3,
                 backoff_s: float = 0.5, max_backoff_s: float = 8.0, rendering: str = "paper") -> None:
        if rendering not in ("paper", "searchr1"):
            raise ValueError(f"rendering must be 'paper' or 'searchr1', got {rendering!r}")
        self.rendering = rendering
        self._loop = asyncio.new_event_loop()
        self.client = SearchClient(urls, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s,
                                   max_backoff_s=max_backoff_s)
        self.batch_calls = 0

    def _run(self, coro: Any) -> Any:
        return self._loop.run_until_complete(coro)

    def healthy(self) -> bool:
        return bool(self._run(self.client.health()))

    def set_curriculum(self, **fields: Any) -> Any:
        return self._run(self.client.set_curriculum(**fields))

    def search_batch(self, requests: Sequence[Mapping[str, Any]]) -> list[SearchOutcome]:
        """One batch call; never raises for a search failure (each failed item becomes an outcome with error)."""
        if not requests:
            return []
        # The API takes at most MAX_BATCH_REQUESTS per call: larger turns go as concurrent chunks.
        chunks = [list(requests[i:i + MAX_BATCH_REQUESTS]) for i in range(0, len(requests), MAX_BATCH_REQUESTS)]
        self.batch_calls += len(chunks)
        results: list[Any] = []
        for chunk, answer in zip(chunks, self._run(self._gather(chunks)), strict=True):
            if isinstance(answer, (SearchUnavailableError, RequestError)):
                logger.warning("search batch of %d failed: %s", len(chunk), answer)
                reason = "the search service is unavailable" if isinstance(answer, SearchUnavailableError) \
                    else f"the request was refused: {answer}"
                results += [reason] * len(chunk)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                results += answer
        render = render_paper if self.rendering == "paper" else render_searchr1
        outcomes = []
        for item in results:
            if isinstance(item, str):
                outcomes.append(SearchOutcome(None, item))
                continue
            if isinstance(item, ErrorBody):
                outcomes.append(SearchOutcome(None, f"{item.error.code}: {item.error.message}"))
            else:
                outcomes.append(SearchOutcome(render(item.documents), None, item.noisy, item.latency_ms))
        return outcomes

    async def _gather(self, chunks: list[list[Mapping[str, Any]]]) -> list[Any]:
        return await asyncio.gather(*(self.client.search_batch(c) for c in chunks), return_exceptions=True)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self.client.aclose())
            self._loop.close()

    def __enter__(self) -> SearchService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- the loop -------------------------------------------------------------------------------------


@dataclass
class RolloutSettings:
    max_turns: int = 5
    max_completion_length: int = 500
    max_tokens_per_turn: int = 200
    max_information_tokens: int = 500
    top_k: int = 5
    mode: str = "sft"
    seed: int = 0
    append_eos_after_answer: bool = True
    mask_information: bool = True  # False: the <information> tokens get env_mask 1 (the masking ablation)


@dataclass
class Trajectory:
    prompt_ids: list[int]
    question: str
    golden_answers: list[str]
    uid: str
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    segments: list[tuple[str, str]] = field(default_factory=list)  # (kind, text): model / information / invalid
    searches: int = 0
    failed_searches: int = 0
    invalid_actions: int = 0
    turns: int = 0
    answered: bool = False
    done: bool = False
    truncated: bool = False

    def append(self, ids: Sequence[int], *, model: bool, logprobs: Sequence[float] | None = None,
               trained: bool | None = None) -> None:
        """`trained` (default: `model`) sets env_mask; environment tokens trained on get NaN sampling log-probs,
        which TRL's importance-sampling correction treats as ratio 1 (the policy did not sample them)."""
        trained = model if trained is None else trained
        self.completion_ids.extend(ids)
        self.env_mask.extend([1 if trained else 0] * len(ids))
        if model and logprobs is not None and len(logprobs) == len(ids):
            self.logprobs.extend(float(x) for x in logprobs)
        else:
            self.logprobs.extend([float("nan") if trained else 0.0] * len(ids))


@dataclass
class RolloutBatch:
    trajectories: list[Trajectory]
    noise: float | None
    step: int
    search_calls: int
    search_seconds: float
    generation_seconds: float
    search_server_ms: list[float]

    @property
    def prompt_ids(self) -> list[list[int]]:
        return [t.prompt_ids for t in self.trajectories]

    @property
    def completion_ids(self) -> list[list[int]]:
        return [t.completion_ids for t in self.trajectories]

    @property
    def env_mask(self) -> list[list[int]]:
        return [t.env_mask for t in self.trajectories]

    @property
    def logprobs(self) -> list[list[float]]:
        return [t.logprobs for t in self.trajectories]

    def metrics(self) -> dict[str, float]:
        n = max(1, len(self.trajectories))
        searches = sum(t.searches for t in self.trajectories)
        failed = sum(t.failed_searches for t in self.trajectories)
        metrics = {
            "search/searches_per_trajectory": searches / n,
            "search/failed_searches": float(failed),
            "search/failure_rate": failed / searches if searches else 0.0,
            "search/batch_calls": float(self.search_calls),
            "search/latency_s": self.search_seconds / self.search_calls if self.search_calls else 0.0,
            "rollout/turns": sum(t.turns for t in self.trajectories) / n,
            "rollout/invalid_actions": sum(t.invalid_actions for t in self.trajectories) / n,
            "rollout/answered": sum(t.answered for t in self.trajectories) / n,
            "rollout/truncated": sum(t.truncated for t in self.trajectories) / n,
            "rollout/generation_s": self.generation_seconds,
        }
        if self.search_server_ms:
            metrics["search/server_latency_ms"] = sum(self.search_server_ms) / len(self.search_server_ms)
        if self.noise is not None:
            metrics["curriculum/noise"] = self.noise
        return metrics


def request_seed(*parts: object) -> int:
    """A stable per-search seed (same inputs, same seed on every machine)."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # < 2**63, the API's limit


class SearchRollout:
    """Plays batches of trajectories; owns the text <-> ids bookkeeping and the environment's replies."""

    def __init__(self, tokenizer: Any, search: SearchService, settings: RolloutSettings | None = None) -> None:
        self.tokenizer = tokenizer
        self.search = search
        self.settings = settings or RolloutSettings()
        eos = tokenizer.eos_token_id
        self.eos_id = eos[0] if isinstance(eos, list) else eos

    # -- text helpers
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def prompt_ids(self, prompt: Any) -> list[int]:
        """Chat-template a message list (instruct models) or tokenise plain text (base models)."""
        if isinstance(prompt, str):
            return self.encode(prompt)
        text = self.tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
        return self.encode(text)

    def information_ids(self, documents: str) -> tuple[list[int], str]:
        """`\\n\\n<information>{documents}</information>\\n\\n` as ids, the documents capped in tokens."""
        doc_ids = self.encode(documents)
        if len(doc_ids) > self.settings.max_information_tokens:
            doc_ids = doc_ids[: self.settings.max_information_tokens]
        head, tail = self.encode("\n\n<information>"), self.encode("</information>\n\n")
        ids = head + doc_ids + tail
        return ids, self.decode(ids)

    # -- the loop
    def run(self, generator: Generator, prompts: Sequence[Any], records: Sequence[Mapping[str, Any]], *,
            step: int = 0, noise: float | None = None, send_step: bool = False) -> RolloutBatch:
        """Play one trajectory per prompt. `records[i]` holds `question`, `golden_answers`, `uid`.

        The curriculum reaches the simulator as `noise` (a level the trainer computed) when given, else as `step`
        when `send_step` (the server's schedule decides), else not at all (the server's current state)."""
        if len(prompts) != len(records):
            raise ValueError(f"{len(prompts)} prompts but {len(records)} records")
        s = self.settings
        trajectories = [
            Trajectory(self.prompt_ids(p), str(r.get("question", "")), [str(a) for a in r.get("golden_answers", [])],
                       str(r.get("uid", i)))
            for i, (p, r) in enumerate(zip(prompts, records, strict=True))
        ]
        search_calls, search_seconds, gen_seconds, server_ms = 0, 0.0, 0.0, []
        for turn in range(s.max_turns + 1):
            active = [t for t in trajectories if not t.done]
            if not active:
                break
            final_turn = turn == s.max_turns
            budgets = [s.max_completion_length - len(t.completion_ids) for t in active]
            for t, b in zip(active, budgets, strict=True):
                if b <= 0:
                    t.done = t.truncated = True
            live = [(t, b) for t, b in zip(active, budgets, strict=True) if b > 0]
            if not live:
                break
            started = time.perf_counter()
            outputs = generator.generate([t.prompt_ids + t.completion_ids for t, _ in live],
                                         [min(s.max_tokens_per_turn, b) for _, b in live])
            gen_seconds += time.perf_counter() - started
            pending: list[tuple[Trajectory, str]] = []
            for (t, budget), out in zip(live, outputs, strict=True):
                t.turns += 1
                ids = list(out.ids)
                text = self.decode([i for i in ids if i != self.eos_id])
                kind, content = parse_action(text)
                lp = out.logprobs
                if kind is not None and out.eos:
                    # an EOS after a complete tag (a generator without our stop criterion): drop it
                    ids, lp = ids[:-1], (lp[:-1] if lp else lp)
                if kind is None and out.eos and not final_turn:
                    # invalid action; the conversation goes on, so the EOS is not part of the sequence
                    ids, lp = ids[:-1], (lp[:-1] if lp else lp)
                t.append(ids, model=True, logprobs=lp)
                t.segments.append(("model", self.decode(ids)))
                if kind == "answer":
                    t.answered = t.done = True
                    if s.append_eos_after_answer and len(t.completion_ids) < s.max_completion_length:
                        t.append([self.eos_id], model=False)
                elif kind == "search" and not final_turn:
                    pending.append((t, content))
                elif final_turn:
                    t.done = True
                elif len(ids) >= budget:
                    t.done = t.truncated = True
                else:
                    t.invalid_actions += 1
                    self._insert(t, self.encode(f"\n{INVALID_ACTION_MESSAGE}\n"), "invalid")
            if pending:
                requests = []
                for t, query in pending:
                    request: dict[str, Any] = {
                        "query": query[:512], "k": s.top_k, "mode": s.mode,
                        "question": t.question[:2048] or None, "answers": t.golden_answers[:32] or None,
                        "seed": request_seed(s.seed, step, t.uid, turn),
                    }
                    if noise is not None:
                        request["noise"] = float(noise)
                    elif send_step:
                        request["step"] = int(step)
                    requests.append(request)
                started = time.perf_counter()
                outcomes = self.search.search_batch(requests)
                search_seconds += time.perf_counter() - started
                search_calls += 1
                for (t, _query), outcome in zip(pending, outcomes, strict=True):
                    t.searches += 1
                    if outcome.text is None:
                        t.failed_searches += 1
                        documents = SEARCH_FAILED_MESSAGE.format(reason=outcome.error or "unknown error")
                    else:
                        documents = outcome.text
                        if outcome.server_latency_ms is not None:
                            server_ms.append(outcome.server_latency_ms)
                    ids, _ = self.information_ids(documents)
                    self._insert(t, ids, "information")
        for t in trajectories:
            t.done = True
        return RolloutBatch(trajectories, noise, step, search_calls, search_seconds, gen_seconds, server_ms)

    def _insert(self, t: Trajectory, ids: list[int], kind: str) -> None:
        room = self.settings.max_completion_length - len(t.completion_ids)
        if len(ids) >= room:
            ids = ids[: max(0, room)]
            t.done = t.truncated = True
        t.append(ids, model=False, trained=kind == "information" and not self.settings.mask_information)
        t.segments.append((kind, self.decode(ids)))
