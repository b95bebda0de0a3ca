"""Wire models of the simulator's native API (`/v1/search`, `/v1/search/batch`, `/v1/curriculum`).

The limits below are part of the API: a request outside them is answered with a 4xx
that names the field. They are documented in docs/api.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_QUERY_CHARS = 512
MAX_QUESTION_CHARS = 2048
MAX_ANSWERS = 32
MAX_ANSWER_CHARS = 512
MAX_K = 20
MAX_STEP = 10**9
MAX_SEED = 2**63 - 1
MAX_BATCH_REQUESTS = 512

Mode = Literal["sft", "prompt"]
Label = Literal["useful", "noisy"]
#: Where a document comes from: written by the simulator's model, or found by a real engine (corpus, upstream API).
Source = Literal["simulated", "real"]
#: The label check of a set when gold answers were sent (see `SearchResponse.verification`).
Verification = Literal["passed", "repaired", "anchored", "failed", "skipped"]


def _clean_text(value: str, *, what: str, allow_empty: bool = False) -> str:
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL bytes")
    value = value.strip()
    if not value and not allow_empty:
        raise ValueError(f"{what} must not be empty or only whitespace")
    return value


class _Strict(BaseModel):
    # Unknown fields are refused in the native API so that a typo ("nosie") is not silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True)


class SearchRequest(_Strict):
    """One search. The useful/noisy decision uses `noise` if given, else `step` with the server's
    curriculum, else the server's current curriculum state."""

    query: Annotated[str, Field(max_length=MAX_QUERY_CHARS, description="The search query.")]
    k: Annotated[int, Field(ge=1, le=MAX_K, description="Number of documents to return.")] = 5
    noise: Annotated[float | None, Field(
        ge=0.0, le=1.0, allow_inf_nan=False,
        description="Probability that this result set is noisy; overrides step and the server curriculum.")] = None
    step: Annotated[int | None, Field(
        ge=0, le=MAX_STEP, description="Training step; the server's curriculum turns it into a noise level.")] = None
    question: Annotated[str | None, Field(
        max_length=MAX_QUESTION_CHARS, description="The question the agent is answering (sft prompt).")] = None
    answers: Annotated[list[Annotated[str, Field(max_length=MAX_ANSWER_CHARS)]] | None, Field(
        max_length=MAX_ANSWERS, description="Golden answers; the first one enters the sft prompt.")] = None
    mode: Annotated[Mode, Field(
        description="'sft': the prompt the released fine-tuned simulators expect; 'prompt': few-shot.")] = "sft"
    seed: Annotated[int | None, Field(
        ge=0, le=MAX_SEED, description="Fixes the useful/noisy draw and selects the cache entry.")] = None
    cache: Annotated[bool, Field(description="False bypasses the cache (neither read nor written).")] = True

    @field_validator("noise", mode="before")
    @classmethod
    def _noise_is_a_number(cls, value: object) -> object:
        # strict mode refuses ints for floats; 0 and 1 are natural noise levels, bools are not.
        if isinstance(value, bool):
            raise ValueError("noise must be a number between 0 and 1, not a boolean")
        if isinstance(value, int):
            return float(value)
        return value

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        return _clean_text(value, what="query")

    @field_validator("question")
    @classmethod
    def _question(cls, value: str | None) -> str | None:
        return None if value is None else (_clean_text(value, what="question", allow_empty=True) or None)

    @field_validator("answers")
    @classmethod
    def _answers(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [_clean_text(a, what="each answer", allow_empty=True) for a in value]
        return [a for a in cleaned if a] or None


class Document(BaseModel):
    id: str
    title: str
    url: str
    snippet: str
    label: Label = Field(description="The kind of set it belongs to. A real engine's results are 'useful': it "
                                     "returns what it found for the query, and does not take the noise curriculum.")
    source: Source = Field("simulated", description="'simulated' (written by the model) or 'real' (found by a "
                                                    "real engine: the corpus or an upstream search API).")
    has_answer: bool | None = Field(None, description=(
        "Whether the snippet contains a normalised gold answer (whole words); null when no answers were sent "
        "or the set came from a real engine."))


class SearchResponse(BaseModel):
    query: str
    documents: list[Document]
    noisy: bool
    noise: float = Field(description="The noise probability the decision was drawn with.")
    cached: bool
    partial: bool = Field(False, description="True when the model wrote fewer than k usable documents.")
    model: str
    latency_ms: float
    text: str = Field(description="The documents rendered as the paper's `Doc i: ...` lines.")
    verification: Verification | None = Field(None, description=(
        "The label check when gold answers were sent: 'passed' (a useful set contains an answer, a noisy set "
        "none), 'repaired' (after regenerating violating documents), 'anchored' (repaired by a regeneration that "
        "started from the gold answer, ZS_ANCHOR_ANSWERS), 'failed' (still violated after "
        "ZS_LABEL_RETRIES), 'skipped' (ZS_VERIFY_LABELS off, or a real engine's set); null without answers."))
    continued: int = Field(0, ge=0, description=(
        "Generations that continued the model's reply after it stopped before k documents."))
    regenerated: int = Field(0, ge=0, description="One-document generations the label check spent.")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class BatchSearchRequest(_Strict):
    # Items are validated one by one by the server, so one bad item fails only itself.
    requests: Annotated[list[dict], Field(min_length=1, max_length=MAX_BATCH_REQUESTS)]


class BatchSearchResponse(BaseModel):
    results: list[SearchResponse | ErrorBody]


class CurriculumState(_Strict):
    """The server-side noise schedule, shared by every replica through Redis."""

    step: Annotated[int, Field(ge=0, le=MAX_STEP)] = 0
    total_steps: Annotated[int, Field(ge=1, le=MAX_STEP)] = 200
    start: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.0
    end: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.5
    base: Annotated[float, Field(gt=0.0, le=1000.0, allow_inf_nan=False)] = 4.0

    @field_validator("start", "end", "base", mode="before")
    @classmethod
    def _ints_are_floats(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    @model_validator(mode="after")
    def _base_not_one(self) -> CurriculumState:
        if self.base == 1.0:
            raise ValueError("base must not be 1 (the formula divides by base - 1)")
        return self


class CurriculumResponse(CurriculumState):
    noise: float = Field(description="p(step) under this schedule.")
