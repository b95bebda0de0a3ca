"""Factbook QA: single-hop and two-hop questions built from the CIA World Factbook, checked against the real engine.

`zerosearch data factbook --out DIR` writes `train`, `dev` and `test` splits (`{split}.parquet` and
`{split}.jsonl`) in the Search-R1 / ZeroSearch record schema of `data/`'s samples, plus `stats.json`.

- Single-hop: one question per entity and kind of field (`KINDS`), e.g. "What is the capital of Kenya?" ->
  `Nairobi`. Answers carry aliases where a policy could say the same thing differently: accents folded
  (`Brasília` / `Brasilia`), singular and ISO code of currencies (`Kenyan shillings` / `Kenyan shilling` / `KES`),
  the Factbook's upper-case surnames in proper case (`William RUTO` -> `William Ruto`, with `Ruto`).
- Two-hop: a target kind asked of a bridge phrase that names exactly one entity, e.g. "What is the capital of the
  country whose national anthem is "Kimigayo"?". A bridge value (an anthem title, a capital, ...) is used only
  when no other entity shares it. Each two-hop record carries its two sub-questions with their answers.
- Splits are by entity: every question is about one entity (for two-hop, the bridge entity: the country the
  bridge phrase names and the target is asked of; the bridge value is a fact of that same entity), and each
  entity's questions all go to one split, so no test entity appears in train or dev.
- Answerable: a question is kept only when a gold answer (normalised with `zerosearch_core.scoring`) occurs in
  the title or text of a top-5 passage that BM25 over the Factbook corpus returns for it -- for two-hop, for
  each sub-question. This is the engine `zerosearch serve --backend corpus` serves. `stats.json` records the
  answerable rate per kind; `keep_unanswerable` keeps the rest, flagged `extra_info.answerable = false`.

The output is deterministic given the seed.
"""

from __future__ import annotations

import functools
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zerosearch_core.errors import ZeroSearchError
from zerosearch_core.scoring import normalize_answer
from zerosearch_trainer.factbook_fields import BRIDGES, KINDS, Fact, aliases, fold_accents

__all__ = [
    "BRIDGES",
    "KINDS",
    "SPLITS",
    "BuildOptions",
    "FactbookQAError",
    "Question",
    "build",
    "candidate_questions",
    "is_answerable",
]

SPLITS = ("train", "dev", "test")
DATA_SOURCE = "factbook"
TOP_K = 5
# Entities that are not places with their own facts: the World aggregate and the European Union (several capitals).
_SKIPPED_CODES = frozenset({"xx", "ee"})


class FactbookQAError(ZeroSearchError):
    """A bad builder option: an unknown kind, an impossible split, an output path that is not a folder."""


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    question: str
    answers: tuple[str, ...]
    entities: tuple[str, ...]
    hops: tuple[dict[str, Any], ...] = ()  # two-hop: [{question, answers, kind}] for the bridge, then the target

    def sub_questions(self) -> list[tuple[str, tuple[str, ...]]]:
        """What the answerable check searches: the question itself, or each hop's sub-question."""
        if self.hops:
            return [(h["question"], tuple(h["answers"])) for h in self.hops]
        return [(self.question, self.answers)]


TWO_HOP = "two_hop"


# ---- questions ---------------------------------------------------------------------------------


def _subject(entity: Any) -> str:
    """How a question names the entity: the Factbook's short name (`Kenya`), `the Gambia`-style articles kept."""
    return entity.name


def _entity_answers(entity: Any) -> tuple[str, ...]:
    long_form = entity.fields.get(("Government", "Country name", "conventional long form"), "")
    extra = [long_form] if long_form and long_form.lower() != "none" else []
    return aliases(entity.name, *extra)


def _names_entity(text: str, entity: Any) -> bool:
    padded = f" {normalize_answer(fold_accents(text))} "
    return any(f" {normalize_answer(fold_accents(name))} " in padded for name in _entity_answers(entity))


def candidate_questions(entities: Iterable[Any], kinds: Sequence[str], *, two_hop_per_entity: int = 2,
                        seed: int = 0) -> list[Question]:
    """Every single-hop question of the chosen kinds, then up to `two_hop_per_entity` two-hop ones per entity.

    A two-hop question goes through a bridge kind whose value belongs to this entity alone among all entities
    (an anthem title two dependencies share is never a bridge) and does not contain the entity's name (the
    capital `Kuwait City`), to a different target kind.
    """
    entities = [e for e in entities if e.code not in _SKIPPED_CODES and e.name and e.name.lower() != "none"]
    entities.sort(key=lambda e: e.code)
    facts: dict[str, dict[str, Fact]] = {e.code: {} for e in entities}
    for e in entities:
        for name in KINDS:
            fact = KINDS[name].extract(e.fields)
            if fact is not None:
                facts[e.code][name] = fact
    owners: dict[tuple[str, str], set[str]] = defaultdict(set)  # (kind, normalised value) -> entity codes
    for code, by_kind in facts.items():
        for name, fact in by_kind.items():
            owners[(name, normalize_answer(fold_accents(fact.answer)))].add(code)

    rng = random.Random(seed)
    questions: list[Question] = []
    for e in entities:
        for name in kinds:
            fact = facts[e.code].get(name)
            if fact is None:
                continue
            questions.append(Question(f"{DATA_SOURCE}-{name}-{e.code}", name,
                                      KINDS[name].ask.format(subject=_subject(e)), fact.aliases, (e.code,)))
    if two_hop_per_entity <= 0:
        return questions
    for e in entities:
        by_kind = facts[e.code]
        pairs = []
        for bridge in BRIDGES:
            fact = by_kind.get(bridge)
            if fact is None or owners[(bridge, normalize_answer(fold_accents(fact.answer)))] != {e.code}:
                continue
            if _names_entity(fact.quoted, e):  # "Burundi Bwacu", "Kuwait City": the bridge would give itself away
                continue
            pairs += [(bridge, target) for target in kinds if target != bridge and target in by_kind]
        for bridge, target in rng.sample(pairs, min(two_hop_per_entity, len(pairs))):
            value = by_kind[bridge].quoted
            phrase = KINDS[bridge].bridge.format(value=value)
            target_fact = by_kind[target]
            hops = (
                {"kind": bridge, "question": KINDS[bridge].ask_bridge.format(value=value),
                 "answers": list(_entity_answers(e))},
                {"kind": target, "question": KINDS[target].ask.format(subject=_subject(e)),
                 "answers": list(target_fact.aliases)},
            )
            questions.append(Question(f"{DATA_SOURCE}-{TWO_HOP}-{bridge}-{target}-{e.code}", TWO_HOP,
                                      KINDS[target].ask.format(subject=phrase), target_fact.aliases, (e.code,),
                                      hops))
    return questions


# ---- the answerable check -----------------------------------------------------------------------


def is_answerable(answers: Sequence[str], passages: Iterable[Any]) -> bool:
    """A gold answer, normalised as the scorer does, occurs as whole words in a passage's title or text."""
    keys = {normalize_answer(fold_accents(a)) for a in answers} - {""}
    for passage in passages:
        text = f" {normalize_answer(fold_accents(f'{passage.title} {passage.text}'))} "
        if any(f" {key} " in text for key in keys):
            return True
    return False


SearchBatch = Callable[[list[str], int], list[list[Any]]]  # queries, k -> passages per query


def check_answerable(questions: Sequence[Question], search_batch: SearchBatch, *, k: int = TOP_K,
                     progress: bool = True, chunk: int = 256) -> list[bool]:
    """Search every (sub-)question once, top k, and mark each question answerable or not."""
    queries = sorted({q for question in questions for q, _ in question.sub_questions()})
    results: dict[str, list[Any]] = {}
    chunks = [queries[i:i + chunk] for i in range(0, len(queries), chunk)]
    iterator: Iterable[list[str]] = chunks
    if progress:
        from rich.progress import track

        iterator = track(chunks, description=f"Searching {len(queries)} questions (top {k})", transient=True)
    for batch in iterator:
        for query, hits in zip(batch, search_batch(batch, k), strict=True):
            results[query] = hits
    return [all(is_answerable(answers, results[q]) for q, answers in question.sub_questions())
            for question in questions]


def corpus_search_batch(cache_dir: str | None = None) -> SearchBatch:
    """BM25 over the Factbook passages, in process: the engine behind `zerosearch serve --backend corpus`."""
    index = _factbook_index(cache_dir)

    def search(queries: list[str], k: int) -> list[list[Any]]:
        return [[passage for passage, _score in hits] for hits in index.search_batch(queries, k)]

    return search


@functools.lru_cache(maxsize=2)
def _factbook_index(cache_dir: str | None) -> Any:
    """Cutting the Factbook into passages takes seconds: once per process and cache folder."""
    from zerosearch_core.corpus import BM25Index, load_corpus

    return BM25Index.open(load_corpus(None), cache_dir=Path(cache_dir) if cache_dir else None)


# ---- splits and records -----------------------------------------------------------------------


def split_entities(codes: Iterable[str], *, seed: int, fractions: tuple[float, float, float]) -> dict[str, str]:
    """Entity code -> split: the codes sorted, shuffled with the seed, cut by the fractions."""
    ordered = sorted(set(codes))
    random.Random(seed).shuffle(ordered)
    n = len(ordered)
    n_train = round(n * fractions[0])
    n_dev = round(n * fractions[1])
    out = {}
    for i, code in enumerate(ordered):
        out[code] = "train" if i < n_train else "dev" if i < n_train + n_dev else "test"
    return out


def to_record(question: Question, *, split: str, index: int, answerable: bool) -> dict[str, Any]:
    """The Search-R1 / ZeroSearch record of `data/`'s samples; Factbook details go into `extra_info`."""
    from zerosearch_trainer.data import paper_prompt

    data_source = f"{DATA_SOURCE}_{question.kind}"
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": paper_prompt(question.question)}],
        "ability": "fact-reasoning",
        "reward_model": {"style": "rule", "ground_truth": {"target": list(question.answers)}},
        "extra_info": {
            "split": split, "index": index, "id": question.id, "kind": question.kind,
            "entities": list(question.entities), "answerable": answerable,
            "hops": [dict(h) for h in question.hops],
        },
        "question": question.question,
        "golden_answers": list(question.answers),
    }


@dataclass
class BuildOptions:
    out: Path
    kinds: tuple[str, ...] = tuple(KINDS)
    seed: int = 0
    two_hop_per_entity: int = 2
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    keep_unanswerable: bool = False
    cache_dir: str | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """`capital,currency` -> the kinds; an unknown one is an error that lists the kinds that exist."""
    if not text:
        return tuple(KINDS)
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise FactbookQAError(f"unknown kind(s) {', '.join(unknown)}; kinds: {', '.join(KINDS)}.")
    if not kinds:
        raise FactbookQAError(f"no kinds given; kinds: {', '.join(KINDS)}.")
    return kinds


def build(options: BuildOptions, *, entities: Sequence[Any] | None = None,
          search_batch: SearchBatch | None = None) -> dict[str, Any]:
    """Write the splits and `stats.json` under `options.out` (created when missing); return the stats."""
    unknown = [k for k in options.kinds if k not in KINDS]
    if unknown:
        raise FactbookQAError(f"unknown kind(s) {', '.join(unknown)}; kinds: {', '.join(KINDS)}.")
    if len(options.fractions) != 3 or any(f < 0 for f in options.fractions) or \
            abs(sum(options.fractions) - 1) > 1e-6:
        raise FactbookQAError(f"split fractions {options.fractions} must be three non-negative numbers summing to 1.")
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise FactbookQAError(f"{out}: exists and is not a folder.")
    try:  # before the work, so that a folder that cannot be made fails at once
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FactbookQAError(f"{out}: cannot create the output folder ({exc.strerror or exc}).") from None
    if entities is None:
        from zerosearch_core.factbook import load_entities

        entities = load_entities()
    if search_batch is None:
        search_batch = corpus_search_batch(options.cache_dir)

    questions = candidate_questions(entities, options.kinds, two_hop_per_entity=options.two_hop_per_entity,
                                    seed=options.seed)
    answerable = check_answerable(questions, search_batch, progress=options.progress)
    assignment = split_entities((c for q in questions for c in q.entities), seed=options.seed,
                                fractions=options.fractions)

    by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    index = 0  # one counter over all splits: `index` (and so the trainer's uid) is globally unique
    kept = [(q, ok) for q, ok in zip(questions, answerable, strict=True) if ok or options.keep_unanswerable]
    rng = random.Random(options.seed)
    shuffled = {s: [(q, ok) for q, ok in kept if assignment[q.entities[0]] == s] for s in SPLITS}
    for split in SPLITS:
        rng.shuffle(shuffled[split])
        for q, ok in shuffled[split]:
            by_split[split].append(to_record(q, split=split, index=index, answerable=ok))
            index += 1

    stats = _stats(questions, answerable, by_split, options)
    try:
        _write(out, by_split, stats)
    except OSError as exc:
        raise FactbookQAError(f"{out}: cannot write the splits ({exc.strerror or exc}).") from None
    return stats


def _stats(questions: Sequence[Question], answerable: Sequence[bool], by_split: Mapping[str, list[dict[str, Any]]],
           options: BuildOptions) -> dict[str, Any]:
    total: Counter[str] = Counter(q.kind for q in questions)
    ok: Counter[str] = Counter(q.kind for q, a in zip(questions, answerable, strict=True) if a)
    per_kind = {kind: {"candidates": total[kind], "answerable": ok[kind],
                       "answerable_rate": round(ok[kind] / total[kind], 4) if total[kind] else 0.0,
                       **{s: sum(1 for r in by_split[s] if r["extra_info"]["kind"] == kind) for s in SPLITS}}
                for kind in [*options.kinds, TWO_HOP] if total[kind]}
    entities = {s: len({c for r in rows for c in r["extra_info"]["entities"]}) for s, rows in by_split.items()}
    return {
        "seed": options.seed,
        "kinds": list(options.kinds),
        "two_hop_per_entity": options.two_hop_per_entity,
        "fractions": list(options.fractions),
        "top_k": TOP_K,
        "engine": "bm25s over the Factbook passages (zerosearch serve --backend corpus)",
        "unanswerable": "kept, flagged" if options.keep_unanswerable else "dropped",
        "candidates": len(questions),
        "answerable": sum(answerable),
        "answerable_rate": round(sum(answerable) / len(questions), 4) if questions else 0.0,
        "questions": {s: len(rows) for s, rows in by_split.items()},
        "entities": entities,
        "per_kind": per_kind,
        **options.extra,
    }


def _write(out: Path, by_split: Mapping[str, list[dict[str, Any]]], stats: Mapping[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    for split, rows in by_split.items():
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        if rows:
            pq.write_table(pa.Table.from_pylist(rows), out / f"{split}.parquet")
    (out / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
