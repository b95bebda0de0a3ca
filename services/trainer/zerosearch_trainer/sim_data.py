"""The SFT data of `zerosearch tune-sim`: (query, documents) pairs from a real engine, labelled, as simulator prompts.

The paper's recipe, with a real engine in place of Google and containment in place of the LLM judge:

1. Queries. For each QA item: the question itself, a keyword rephrasing of it (the content words, as policies
   search), and for two-hop items the single-hop sub-questions with their own answers.
2. Real documents. Each query is sent to `--engine_url` (any endpoint of the native API; the corpus engine over
   the Factbook by default) and its results are kept as the engine ranked them.
3. Labels. A set is useful when a document contains a gold answer, noisy when none does (`Labeller`; the
   containment rule is the default, an LLM judge can implement the same interface).
4. Noisy sets. A good engine rarely returns an answer-free set for a question it can answer, so a noisy set is
   built from a near miss: the results of the same kind of question about another entity ("capital of Uganda"
   for "capital of Kenya"), with the original query's own answer-free results first. Every document of it is
   checked not to contain the gold answer, and the labeller must call the set noisy.
5. Targets. The `Doc 1: ... Doc k:` rendering of `zerosearch_core.protocol`, each document brought to 20-45
   words (`fit_words`): whole sentences of the passage (title first when the text is short), cut at 45 words;
   in a useful set the answer-bearing documents come first and keep the sentence that holds the answer.
6. Examples. The exact chat messages the simulator sends (`zerosearch_core.simulator_prompt`, mode `sft`), as a
   conversational prompt/completion pair; de-duplicated, balanced useful/noisy, split train/dev by item.

Released data (`import_sft_file`): alpaca `instruction/input/output`, sharegpt `conversations`, or
`prompt/completion` rows, JSON or JSONL, become the same conversational pairs.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from zerosearch_core.errors import ZeroSearchError
from zerosearch_core.protocol import render_paper
from zerosearch_core.scoring import STOPWORDS, contains_answer
from zerosearch_core.simulator_prompt import build_messages

__all__ = [
    "ContainmentLabeller",
    "Labeller",
    "QAItem",
    "SFTDataError",
    "SearchSet",
    "balance",
    "build_examples",
    "data_hash",
    "fit_words",
    "import_sft_file",
    "item_queries",
    "load_qa_items",
    "split_examples",
]

MIN_WORDS = 20
MAX_WORDS = 45
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


class SFTDataError(ZeroSearchError):
    """SFT data that cannot be built or read: a malformed file, an engine that does not answer, no balance."""


# ---- QA items and their queries -------------------------------------------------------------------------


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    answers: tuple[str, ...]
    kind: str = ""
    entities: tuple[str, ...] = ()
    hops: tuple[tuple[str, tuple[str, ...]], ...] = ()  # two-hop: (sub-question, its answers)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        loaded = json.loads(text)
        return list(loaded) if isinstance(loaded, list) else [loaded]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SFTDataError(f"{path}: row {number}: not JSON ({exc.msg}).") from None
    return rows


def load_qa_items(source: str, *, split: str = "train", max_items: int = 0) -> list[QAItem]:
    """QA items from a Search-R1-schema file (or a directory of `{split}.jsonl` / `{split}.parquet`)."""
    path = Path(source)
    if path.is_dir():
        candidates = [path / f"{split}{suffix}" for suffix in (".jsonl", ".parquet", ".json")]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise SFTDataError(f"{path}: no {split}.jsonl, {split}.parquet or {split}.json in this folder.")
        path = found[0]
    if not path.is_file():
        raise SFTDataError(f"{path}: no such QA file.")
    items = []
    for number, row in enumerate(_read_rows(path), start=1):
        question = row.get("question")
        answers = row.get("golden_answers")
        if answers is None:
            answers = ((row.get("reward_model") or {}).get("ground_truth") or {}).get("target")
        if not question or not answers:
            missing = "question" if not question else "golden_answers"
            raise SFTDataError(f"{path}: row {number}: missing field {missing!r}.")
        extra = row.get("extra_info") or {}
        hops = tuple((h["question"], tuple(h["answers"])) for h in extra.get("hops") or ()
                     if h.get("question") and h.get("answers"))
        items.append(QAItem(id=str(extra.get("id") or f"{path.stem}-{number}"), question=str(question),
                            answers=tuple(str(a) for a in answers), kind=str(extra.get("kind") or ""),
                            entities=tuple(extra.get("entities") or ()), hops=hops))
        if max_items and len(items) >= max_items:
            break
    return items


def rephrase(question: str) -> str:
    """A policy-like keyword query: the question's content words ("What is the capital of Kenya?" -> "capital
    Kenya"); quoted titles are kept whole."""
    words = re.findall(r"\"[^\"]+\"|[\w'-]+", question)
    kept = [w for w in words if w.startswith('"') or w.lower() not in STOPWORDS]
    return " ".join(kept) or question.strip()


def item_queries(item: QAItem) -> list[tuple[str, str, tuple[str, ...]]]:
    """(query, question, answers) to search: the question, its rephrasing, and the sub-questions of two hops
    (each with its own answers, as a policy would ask it on the way)."""
    out = [(item.question, item.question, item.answers)]
    if (short := rephrase(item.question)) != item.question:
        out.append((short, item.question, item.answers))
    for sub_question, sub_answers in item.hops:
        out.append((rephrase(sub_question), sub_question, sub_answers))
    return out


# ---- documents ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Doc:
    """A target document: what the simulator learns to write (the title is not rendered by the paper form)."""

    title: str
    snippet: str


def fit_words(title: str, text: str, *, answers: Sequence[str] = (), lo: int = MIN_WORDS,
              hi: int = MAX_WORDS) -> str | None:
    """Bring a real passage to lo-hi words: whole sentences from the start (from the sentence with the answer when
    `answers` are given and it lies later), the title in front when the text is short, cut at `hi` words.
    None when even that is shorter than lo, or when the answer does not survive."""
    text = " ".join(text.split())
    sentences = [s for s in _SENTENCE_END.split(text) if s]
    if answers:
        for i, sentence in enumerate(sentences):
            if contains_answer(sentence, answers):
                # Start near the answer's sentence when the words before it would push it past the cut: from
                # it, or from as few sentences before it as bring the window to `lo` words.
                if len(" ".join(sentences[:i + 1]).split()) > hi:
                    start = i
                    while start > 0 and len(" ".join(sentences[start:i + 1]).split()) < lo:
                        start -= 1
                    sentences = sentences[start:]
                break
    words: list[str] = []
    for sentence in sentences:
        if len(words) >= lo and (not answers or contains_answer(" ".join(words), answers)):
            break
        words += sentence.split()
    if len(words) < lo and title:
        words = title.split() + [":"] + words if title.split() else words
        words = " ".join(words).replace(" :", ":").split()
    if len(words) < lo:
        return None
    out = " ".join(words[:hi])
    if len(words) > hi:
        out = out.rstrip(",;:") + " ..."
    if answers and not contains_answer(out, answers):
        return None
    return out


@dataclass(frozen=True)
class SearchSet:
    """One collected search: the query, the prompt's question and answers, and the engine's results."""

    query: str
    question: str
    answers: tuple[str, ...]
    hits: tuple[tuple[str, str], ...]  # (title, text) as the engine ranked them
    item_id: str = ""
    kind: str = ""


def group_hits(hits: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Passages of one field put back together, in engine order: a corpus that indexes each sub-field alone
    (`Kenya - Capital - name: Nairobi`, `Kenya - Capital - time difference: UTC+3`) gives documents too short
    to be a search result, so the hits of one `entity - field` become one document
    (`Kenya - Capital`, `name: Nairobi; time difference: UTC+3`), as a results page shows a page's snippet."""
    groups: dict[str, list[str]] = {}
    for title, text in hits:
        parts = [p.strip() for p in title.split(" - ")]
        key = " - ".join(parts[:2])
        label = " - ".join(parts[2:])
        groups.setdefault(key, []).append(f"{label}: {text}" if label else text)
    merged = [(key, "; ".join(texts)) for key, texts in groups.items()]
    # A field still too short for a result (`Isle of Man - Airports: 4 (2025)`) takes the next fields of the same
    # entity the engine returned, as a snippet runs on over a page.
    out: list[tuple[str, str]] = []
    used: set[int] = set()
    for i, (key, text) in enumerate(merged):
        if i in used:
            continue
        entity = key.split(" - ")[0]
        for j in range(i + 1, len(merged)):
            if len(f"{key} {text}".split()) >= MIN_WORDS:
                break
            other_key, other_text = merged[j]
            if j not in used and other_key.split(" - ")[0] == entity and other_key != key:
                field = " - ".join(other_key.split(" - ")[1:]) or other_key
                text = f"{text.rstrip(';')}; {field}: {other_text}"
                used.add(j)
        out.append((key, text))
    return out


class Labeller(Protocol):
    """Decides whether a set of documents is useful for a question (the paper used an LLM judge)."""

    def label(self, question: str, answers: Sequence[str], query: str, documents: Sequence[str]) -> str: ...


class ContainmentLabeller:
    """Useful when a document contains a normalised gold answer (as whole words), noisy when none does."""

    def label(self, question: str, answers: Sequence[str], query: str, documents: Sequence[str]) -> str:
        return "useful" if any(contains_answer(d, answers) for d in documents) else "noisy"


def useful_docs(found: SearchSet, k: int) -> list[Doc] | None:
    """k documents for a useful target: the answer-bearing results first (engine order within each group)."""
    with_answer, without = [], []
    for title, text in group_hits(found.hits):
        if contains_answer(f"{title} {text}", found.answers):
            fitted = fit_words(title, text, answers=found.answers)
            if fitted is not None:
                with_answer.append(Doc(title, fitted))
        else:
            fitted = fit_words(title, text)
            if fitted is not None and not contains_answer(fitted, found.answers):
                without.append(Doc(title, fitted))
    docs = (with_answer + without)[:k]
    return docs if with_answer and len(docs) == k else None


def noisy_docs(found: SearchSet, near_misses: Sequence[SearchSet], k: int) -> list[Doc] | None:
    """k answer-free documents: the query's own answer-free results, then a near miss's, none with the answer."""
    docs: list[Doc] = []
    seen: set[str] = set()
    own = [h for h in group_hits(found.hits) if not contains_answer(f"{h[0]} {h[1]}", found.answers)][:2]
    for title, text in own + [h for miss in near_misses for h in group_hits(miss.hits)]:
        fitted = fit_words(title, text)
        if fitted is None or contains_answer(fitted, found.answers) or fitted in seen:
            continue
        seen.add(fitted)
        docs.append(Doc(title, fitted))
        if len(docs) == k:
            return docs
    return None


# ---- examples ----------------------------------------------------------------------------------------------


def sft_example(*, label: str, query: str, question: str, answers: Sequence[str], docs: Sequence[Doc],
                source: str, item_id: str = "") -> dict[str, Any]:
    """The simulator's exact chat messages for this search, and the documents as the assistant's reply."""
    messages = build_messages("sft", label=label, query=query, question=question, answers=list(answers),
                              k=len(docs))
    return {"prompt": [dict(m) for m in messages], "completion": [{"role": "assistant", "content": render_paper(docs)}],
            "label": label, "source": source, "item_id": item_id}


def build_examples(sets: Sequence[SearchSet], *, k: int = 5, labeller: Labeller | None = None,
                   seed: int = 0) -> list[dict[str, Any]]:
    """Useful and noisy examples from the collected sets (unbalanced; see `balance`)."""
    labeller = labeller or ContainmentLabeller()
    rng = random.Random(seed)
    by_kind: dict[str, list[SearchSet]] = {}
    for found in sets:
        by_kind.setdefault(found.kind, []).append(found)
    examples = []
    for found in sets:
        texts = [f"{t} {x}" for t, x in found.hits[:k]]
        if labeller.label(found.question, found.answers, found.query, texts) == "useful":
            docs = useful_docs(found, k)
            if docs is not None and labeller.label(found.question, found.answers, found.query,
                                                   [d.snippet for d in docs]) == "useful":
                examples.append(sft_example(label="useful", query=found.query, question=found.question,
                                            answers=found.answers, docs=docs, source="engine",
                                            item_id=found.item_id))
        pool = [s for s in by_kind.get(found.kind, sets) if s.item_id != found.item_id] or \
            [s for s in sets if s.item_id != found.item_id]
        if not pool:
            continue
        misses = rng.sample(pool, min(2, len(pool)))
        docs = noisy_docs(found, misses, k)
        if docs is not None and labeller.label(found.question, found.answers, found.query,
                                               [d.snippet for d in docs]) == "noisy":
            examples.append(sft_example(label="noisy", query=found.query, question=found.question,
                                        answers=found.answers, docs=docs, source="engine", item_id=found.item_id))
    return dedupe(examples)


def _key(example: Mapping[str, Any]) -> str:
    return json.dumps([example["prompt"], example["completion"]], sort_keys=True, ensure_ascii=False)


def dedupe(examples: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeated prompts (the same search twice) and repeated targets."""
    seen_prompts: set[str] = set()
    seen_targets: set[str] = set()
    out = []
    for example in examples:
        prompt = json.dumps(example["prompt"], sort_keys=True, ensure_ascii=False)
        target = example["completion"][-1]["content"]
        if prompt in seen_prompts or target in seen_targets:
            continue
        seen_prompts.add(prompt)
        seen_targets.add(target)
        out.append(example)
    return out


def balance(examples: Sequence[dict[str, Any]], *, seed: int = 0, limit: int = 0) -> list[dict[str, Any]]:
    """As many useful as noisy examples (the larger side sampled down), at most `limit` in all (0: no cap)."""
    useful = [e for e in examples if e["label"] == "useful"]
    noisy = [e for e in examples if e["label"] == "noisy"]
    if not useful or not noisy:
        missing = "useful" if not useful else "noisy"
        raise SFTDataError(
            f"the useful/noisy balance cannot be built: {len(useful)} useful and {len(noisy)} noisy examples, "
            f"none {missing}. " + ("Use QA items the engine can answer (a gold answer must appear in its results), "
                                   "or add released data with --sft_data." if missing == "useful" else
                                   "Use more QA items of each kind (noisy sets come from near-miss queries of the "
                                   "same kind about other entities), or add released data with --sft_data."))
    n = min(len(useful), len(noisy))
    if limit:
        n = min(n, max(1, limit // 2))
    rng = random.Random(seed)
    chosen = rng.sample(useful, n) + rng.sample(noisy, n)
    rng.shuffle(chosen)
    return chosen


def split_examples(examples: Sequence[dict[str, Any]], *, dev_fraction: float,
                   seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and dev by QA item (all searches of one item on one side), deterministic given the seed."""
    groups = sorted({e.get("item_id") or _key(e) for e in examples})
    random.Random(seed).shuffle(groups)
    dev_groups = set(groups[:round(len(groups) * dev_fraction)])
    train = [e for e in examples if (e.get("item_id") or _key(e)) not in dev_groups]
    dev = [e for e in examples if (e.get("item_id") or _key(e)) in dev_groups]
    return train, dev


def data_hash(examples: Iterable[Mapping[str, Any]]) -> str:
    """sha256 of the examples' prompts and targets, in order: the identity of an SFT set."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(_key(example).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


# ---- released data --------------------------------------------------------------------------------------------

_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _from_alpaca(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    for name in ("instruction", "output"):
        if not isinstance(row.get(name), str):
            raise SFTDataError(f"{where}: missing field {name!r} (alpaca rows need instruction and output).")
    user = row["instruction"] + (f"\n{row['input']}" if row.get("input") else "")
    return {"prompt": [{"role": "system", "content": row.get("system") or ""}, {"role": "user", "content": user}],
            "completion": [{"role": "assistant", "content": row["output"]}]}


def _from_sharegpt(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    turns = row["conversations"]
    if not isinstance(turns, list) or not turns:
        raise SFTDataError(f"{where}: field 'conversations' must be a non-empty list of turns.")
    messages = []
    for i, turn in enumerate(turns):
        role = _ROLES.get(str(turn.get("from", turn.get("role", ""))).lower()) if isinstance(turn, dict) else None
        content = turn.get("value", turn.get("content")) if isinstance(turn, dict) else None
        if role is None or not isinstance(content, str):
            raise SFTDataError(f"{where}: conversations[{i}]: missing field 'from'/'value' (or 'role'/'content').")
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "assistant":
        raise SFTDataError(f"{where}: the last turn of 'conversations' must be the assistant's (gpt) reply.")
    prompt = messages[:-1]
    if prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": ""}, *prompt]
    return {"prompt": prompt, "completion": messages[-1:]}


def _from_prompt_completion(row: Mapping[str, Any], where: str) -> dict[str, Any]:
    prompt, completion = row["prompt"], row.get("completion")
    if completion is None:
        raise SFTDataError(f"{where}: missing field 'completion'.")
    if isinstance(prompt, str):
        prompt = [{"role": "system", "content": ""}, {"role": "user", "content": prompt}]
    if isinstance(completion, str):
        completion = [{"role": "assistant", "content": completion}]
    if not isinstance(prompt, list) or not isinstance(completion, list):
        raise SFTDataError(f"{where}: 'prompt' and 'completion' must be strings or lists of messages.")
    return {"prompt": prompt, "completion": completion}


def import_sft_file(path: str | Path) -> list[dict[str, Any]]:
    """Released simulator-tuning data as conversational prompt/completion pairs (labels read from the prompt)."""
    path = Path(path)
    if not path.is_file():
        raise SFTDataError(f"{path}: no such SFT data file.")
    if path.suffix not in (".json", ".jsonl"):
        raise SFTDataError(f"{path}: SFT data must be .json or .jsonl (alpaca, sharegpt or prompt/completion rows).")
    try:
        rows = _read_rows(path)
    except json.JSONDecodeError as exc:
        raise SFTDataError(f"{path}: not JSON ({exc.msg}, line {exc.lineno}).") from None
    out = []
    for number, row in enumerate(rows, start=1):
        where = f"{path}: row {number}"
        if not isinstance(row, dict):
            raise SFTDataError(f"{where}: not an object.")
        if "conversations" in row:
            example = _from_sharegpt(row, where)
        elif "prompt" in row:
            example = _from_prompt_completion(row, where)
        elif "instruction" in row or "output" in row:
            example = _from_alpaca(row, where)
        else:
            raise SFTDataError(f"{where}: missing field 'instruction'/'output', 'conversations' or "
                               "'prompt'/'completion'.")
        user = " ".join(m.get("content", "") for m in example["prompt"] if m.get("role") == "user")
        label = "noisy" if re.search(r"\bnoisy\b", user, re.IGNORECASE) else "useful"
        out.append({**example, "label": label, "source": f"imported:{path.name}", "item_id": f"{path.name}:{number}"})
    return out


@dataclass
class Collection:
    """What collection produced: the sets and how many queries failed."""

    sets: list[SearchSet] = field(default_factory=list)
    queries: int = 0
    failed: int = 0
    first_error: str = ""  # the engine's own message for the first failed query


def collect(items: Sequence[QAItem], engine_url: str, *, k: int, fetch_k: int = 20, seed: int = 0,
            batch_size: int = 64, progress: bool = True, timeout_s: float = 60.0) -> Collection:
    """Search every item's queries once on the engine (noise 0, no cache) and keep its results in order.

    An engine URL that does not answer fails at once, with the URL in the message."""
    import asyncio

    from zerosearch_core.client import SearchClient
    from zerosearch_core.schemas import ErrorBody

    jobs = [(item, query, question, answers) for item in items for query, question, answers in item_queries(item)]
    result = Collection(queries=len(jobs))

    async def run() -> None:
        async with SearchClient(engine_url, timeout_s=timeout_s, retries=1, backoff_s=0.2) as client:
            if not await client.health():
                raise SFTDataError(f"the engine at {engine_url} does not answer (GET /readyz); start it, e.g. "
                                   "`zerosearch serve --backend corpus`, or pass --engine_url.")
            chunks = [jobs[i:i + batch_size] for i in range(0, len(jobs), batch_size)]
            iterator: Iterable[Any] = chunks
            if progress:
                from rich.progress import track

                iterator = track(chunks, description=f"Collecting {len(jobs)} searches from {engine_url}")
            for chunk in iterator:
                requests = [{"query": q[:500], "k": max(k, fetch_k), "noise": 0.0, "question": question,
                             "answers": list(answers), "seed": seed, "cache": False}
                            for _item, q, question, answers in chunk]
                responses = await client.search_batch(requests)
                for (item, query, question, answers), response in zip(chunk, responses, strict=True):
                    if isinstance(response, ErrorBody) or not response.documents:
                        result.failed += 1
                        result.first_error = result.first_error or (
                            f"{response.error.code}: {response.error.message}" if isinstance(response, ErrorBody)
                            else f"no results for {query!r}")
                        continue
                    hits = tuple((d.title, d.snippet) for d in response.documents)
                    result.sets.append(SearchSet(query=query, question=question, answers=tuple(answers),
                                                 hits=hits, item_id=item.id, kind=item.kind))

    try:
        asyncio.run(run())
    except SFTDataError:
        raise
    except ZeroSearchError as exc:
        raise SFTDataError(f"the engine at {engine_url} failed: {exc}") from None
    if jobs and not result.sets:
        raise SFTDataError(f"every one of the {len(jobs)} searches on {engine_url} failed; the first said "
                           f"{result.first_error}")
    return result
