"""Reward functions for GRPO, on top of `zerosearch_core.scoring` (the only copy of EM / sub-EM / F1).

The answer is the last `<answer>...</answer>` of the completion only (never the prompt: the template's example
`<answer> Beijing </answer>` would score), after removing every `<information>` block (documents may contain
answer tags). A completion without an answer scores 0; nothing here raises on malformed text.

Each function has TRL's reward signature `f(completions, golden_answers, **kwargs) -> list[float]`;
TRL logs each one as `rewards/<name>/mean`. `query` is a shaping term, not a QA metric: it pays for searching
with what the question is about, so that GRPO cannot trade the query away for filler (small search policies
learn `<search> and </search>` when a group answers from the question's own wording either way).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from zerosearch_core.scoring import content_words, exact_match, f1_score, sub_exact_match
from zerosearch_trainer.rollout import INVALID_ACTION_MESSAGE

__all__ = [
    "REWARD_FUNCTIONS",
    "completion_text",
    "em_reward",
    "extract_answer",
    "f1_reward",
    "format_reward",
    "get_reward_functions",
    "query_reward",
    "query_score",
    "search_queries",
    "strip_information",
    "sub_em_reward",
]

_INFORMATION = re.compile(r"<information>.*?(</information>|$)", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_SEARCH_OPEN = re.compile(r"<search>")
_SEARCH_CLOSED = re.compile(r"<search>.*?</search>", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_QUERY = re.compile(r"<search>(.*?)</search>", re.DOTALL)


def completion_text(completion: Any) -> str:
    """The text of a completion as TRL passes it: a string, or a list of chat messages."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        content = completion.get("content")
        return content if isinstance(content, str) else ""
    if isinstance(completion, Sequence):
        return "".join(completion_text(m) for m in completion)
    return ""


def strip_information(text: str) -> str:
    """Remove what the environment inserted: `<information>` blocks (an unterminated one runs to the end of the
    text) and the invalid-action message, which itself names the tags (`... between <answer> and </answer>`)
    and would otherwise read as the answer "and" (F1 0.5 against "Antigua and Barbuda", format 0.5)."""
    return _INFORMATION.sub("", text).replace(INVALID_ACTION_MESSAGE, "")


def extract_answer(completion: Any) -> str | None:
    """The content of the last `<answer>...</answer>` outside `<information>` blocks, or None."""
    text = strip_information(completion_text(completion))
    matches = _ANSWER.findall(text)
    if not matches:
        return None
    answer = matches[-1].strip()
    return answer or None


def _answers(golden: Any) -> list[str]:
    if golden is None:
        return []
    if isinstance(golden, str):
        return [golden]
    try:
        return [str(g) for g in golden if g is not None]
    except TypeError:
        return []


def _score(metric: Callable[[str | None, list[str]], float], completions: Sequence[Any],
           golden_answers: Sequence[Any] | None) -> list[float]:
    golden_answers = golden_answers if golden_answers is not None else [None] * len(completions)
    return [float(metric(extract_answer(c), _answers(g))) for c, g in zip(completions, golden_answers, strict=False)]


def f1_reward(completions: Sequence[Any], golden_answers: Sequence[Any] | None = None, **_: Any) -> list[float]:
    """Token F1 of the final answer against the golden answers (max over answers): the paper's reward."""
    return _score(f1_score, completions, golden_answers)


def em_reward(completions: Sequence[Any], golden_answers: Sequence[Any] | None = None, **_: Any) -> list[float]:
    """Exact match after SQuAD normalisation (the paper's reported metric)."""
    return _score(exact_match, completions, golden_answers)


def sub_em_reward(completions: Sequence[Any], golden_answers: Sequence[Any] | None = None, **_: Any) -> list[float]:
    """1 when a golden answer is contained in the normalised prediction."""
    return _score(sub_exact_match, completions, golden_answers)


def format_score(completion: Any) -> float:
    """1.0 for a well-formed trajectory: reasoning in `<think>`, every `<search>` closed, and a final `<answer>`
    that is the last thing written; 0.5 with an answer but some other defect; 0 without an answer."""
    text = strip_information(completion_text(completion))
    if extract_answer(text) is None:
        return 0.0
    ends_with_answer = text.rstrip().endswith("</answer>")
    searches_closed = len(_SEARCH_OPEN.findall(text)) == len(_SEARCH_CLOSED.findall(text))
    has_think = bool(_THINK.search(text))
    return 1.0 if ends_with_answer and searches_closed and has_think else 0.5


def format_reward(completions: Sequence[Any], **_: Any) -> list[float]:
    """Optional shaping: see `format_score`."""
    return [format_score(c) for c in completions]


def search_queries(completion: Any) -> list[str]:
    """The non-empty queries of the completion's closed `<search>` tags, outside `<information>` blocks and the
    invalid-action message (which names the tags itself)."""
    return [q for q in _QUERY.findall(strip_information(completion_text(completion))) if q.strip()]


def query_score(completion: Any, question: str | None) -> float:
    """The share of the question's content words that the best of the trajectory's searches carries: 1.0 for
    the question itself or its keywords ("capital Kenya"), 0 for filler ("What I found.") or no search at all.
    The best search, not the mean, so that the sub-question of a second hop costs nothing. A question without
    content words makes any non-empty query score 1.0."""
    queries = search_queries(completion)
    if not queries:
        return 0.0
    wanted = content_words(question)
    if not wanted:
        return 1.0
    return max(len(wanted & content_words(q)) / len(wanted) for q in queries)


def query_reward(completions: Sequence[Any], question: Sequence[Any] | None = None, **_: Any) -> list[float]:
    """Optional shaping: see `query_score`. `question` is the dataset's column, which TRL passes by name."""
    questions = question if question is not None else [None] * len(completions)
    return [query_score(c, q if isinstance(q, str) else None)
            for c, q in zip(completions, questions, strict=False)]


REWARD_FUNCTIONS: dict[str, Callable[..., list[float]]] = {
    "f1": f1_reward,
    "em": em_reward,
    "sub_em": sub_em_reward,
    "format": format_reward,
    "query": query_reward,
}


def get_reward_functions(names: Sequence[str]) -> list[Callable[..., list[float]]]:
    unknown = [n for n in names if n not in REWARD_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown reward function(s) {unknown}; choose from {sorted(REWARD_FUNCTIONS)}")
    return [REWARD_FUNCTIONS[n] for n in names]
