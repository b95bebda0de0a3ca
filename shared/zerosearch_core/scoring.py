"""Answer normalisation and the QA metrics: EM, sub-EM and F1 (the only copy in the project), and the content
words of a text (what a query, a question or a document is about).

Normalisation follows SQuAD: lower-case, drop punctuation, drop the articles a/an/the,
collapse whitespace. Every function accepts a missing prediction (None) and scores it 0.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)
# function words that say nothing about what a query is about (question words included: "capital Kenya" and
# "What is the capital of Kenya?" ask the same)
STOPWORDS = frozenset("""
a an the of in on at to for from by with and or is are was were be been did does do which what who whom whose
when where how why that this these those its it as into than then gain has have had s
""".split())


def normalize_answer(text: str | None) -> str:
    if not text:
        return ""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _answers(golden: str | Iterable[str] | None) -> list[str]:
    if golden is None:
        return []
    if isinstance(golden, str):
        return [golden]
    return [g for g in golden if isinstance(g, str)]


def exact_match(prediction: str | None, golden: str | Iterable[str] | None) -> float:
    """1.0 if the normalised prediction equals any normalised golden answer."""
    pred = normalize_answer(prediction)
    if not pred:
        return 0.0
    return float(any(pred == normalize_answer(g) for g in _answers(golden)))


def sub_exact_match(prediction: str | None, golden: str | Iterable[str] | None) -> float:
    """1.0 if any normalised golden answer is contained in the normalised prediction."""
    pred = normalize_answer(prediction)
    if not pred:
        return 0.0
    return float(any((g := normalize_answer(a)) and g in pred for a in _answers(golden)))


def f1_score(prediction: str | None, golden: str | Iterable[str] | None) -> float:
    """Token-level F1 between prediction and golden answer, max over the golden answers."""
    pred_tokens = normalize_answer(prediction).split()
    if not pred_tokens:
        return 0.0
    best = 0.0
    for answer in _answers(golden):
        gold_tokens = normalize_answer(answer).split()
        common = Counter(pred_tokens) & Counter(gold_tokens)
        overlap = sum(common.values())
        if overlap == 0:
            continue
        precision = overlap / len(pred_tokens)
        recall = overlap / len(gold_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def contains_answer(text: str | None, golden: str | Iterable[str] | None) -> bool:
    """True if any normalised golden answer occurs in the normalised text as whole words (so "7" is not found
    in "1970"): the useful/noisy rule of label verification and of the fidelity measures."""
    haystack = f" {normalize_answer(text)} "
    return any((g := normalize_answer(a)) and f" {g} " in haystack for a in _answers(golden))


def content_words(text: str | None) -> set[str]:
    """The normalised words of `text` that are not function words ("What is the capital of Kenya?" ->
    {"capital", "kenya"})."""
    return {w for w in normalize_answer(text).split() if w not in STOPWORDS}
