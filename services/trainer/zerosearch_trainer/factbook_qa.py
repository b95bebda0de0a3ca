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

import json
import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zerosearch_core.errors import ZeroSearchError
from zerosearch_core.scoring import normalize_answer

__all__ = [
    "BRIDGES",
    "KINDS",
    "SPLITS",
    "BuildOptions",
    "FactbookQAError",
    "Question",
    "build",
    "candidate_questions",
    "fold_accents",
    "is_answerable",
    "proper_name",
]

SPLITS = ("train", "dev", "test")
DATA_SOURCE = "factbook"
TOP_K = 5
# Entities that are not places with their own facts: the World aggregate and the European Union (several capitals).
_SKIPPED_CODES = frozenset({"xx", "ee"})


class FactbookQAError(ZeroSearchError):
    """A bad builder option: an unknown kind, an impossible split, an output path that is not a folder."""


@dataclass(frozen=True)
class Fact:
    """One extracted value: the answer as written, its aliases, and the text a question may quote."""

    answer: str
    aliases: tuple[str, ...] = ()
    quoted: str = ""  # the form a bridge phrase uses ("Kimigayo"), when it differs from the answer


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


# ---- text helpers ----------------------------------------------------------------------------


def fold_accents(text: str) -> str:
    """`Brasília` -> `Brasilia`: the answer normaliser keeps accents, so folded spellings are added as aliases."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _aliases(*names: str) -> tuple[str, ...]:
    """The names plus their accent-folded forms, de-duplicated by the scorer's normalisation, order kept."""
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        for variant in (name, fold_accents(name)):
            variant = " ".join(variant.split()).strip(" ,;")
            key = normalize_answer(variant)
            if key and key not in seen:
                seen.add(key)
                out.append(variant)
    return tuple(out)


def _is_upper_word(word: str) -> bool:
    letters = [c for c in word if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def proper_name(text: str) -> str:
    """The Factbook writes surnames in capitals (`William RUTO`, `WILLEM-ALEXANDER`): proper case for answers.

    Regnal numbers (`CHARLES III`) stay upper-case (not a first word: `XI Jinping` is `Xi Jinping`); `BIN` becomes
    `bin`; `O'NEILL` becomes `O'Neill` but `MULI'AKA'AKA` `Muli'aka'aka`.
    """
    words = []
    for position, word in enumerate(text.split()):
        if _is_upper_word(word) and not (position > 0 and re.fullmatch(r"[IVXLC]+\.?", word)):
            word = "-".join(_title_case(part) for part in word.split("-"))
            if word in ("Bin", "Bint", "Ibn"):
                word = word.lower()
        words.append(word)
    return " ".join(words)


def _title_case(part: str) -> str:
    head, apostrophe, rest = part.partition("'")
    if apostrophe and len(head) == 1:
        return head.upper() + "'" + rest[:1].upper() + rest[1:].lower()
    return part[:1].upper() + part[1:].lower()


def _first_segment(text: str) -> str:
    return text.split(";")[0].strip()


def _drop_parens(text: str) -> str:
    return re.sub(r"\s*\([^)]*\)", "", text).strip()


# ---- extractors: Entity.fields -> Fact (None when the entity has no usable value) --------------------

_TITLE_WORDS = frozenset("""
President Prime Minister King Queen Emperor Empress Sultan Supreme Leader Grand Duke Duchess Prince Princess Amir
Emir Governor General Governor-General Lieutenant-Governor Chairman Chairwoman Chair Co-prince Co-Prince Pope
Sheikh Interim Acting Transitional Chancellor Federal Captain Captains Regent Chief Executive Head State Council
Presidential Vice Sovereign Crown Lieutenant Commander Administrator Mayor Premier High Commissioner Secretary
Colonel Lt. Gen. Col. Capt. Maj. Dr. Sir Dame Brig. Adm. Field Marshal Senior Deputy First Provisional Military
Junta Holy See Principal Co-Captains Co-Captain Military-led Confederation Republic Kingdom Federation Union
Commission Governorate Government Affairs Assembly Taoiseach
""".split())
_PARTICLES = frozenset({"bin", "bint", "ibn", "al", "de", "da", "del", "della", "der", "van", "von", "dos", "das",
                        "do", "du", "la", "le", "y", "e"})


def _person(text: str | None, place: str = "") -> Fact | None:
    """`President William RUTO (since 13 September 2022)` -> `William Ruto` (aliases: `Ruto`).

    `place` is the entity's own name, whose words never belong to a person's name (`President of French
    Polynesia Moetai BROTHERSON`).
    """
    if not text:
        return None
    head = _drop_parens(_first_segment(text.split("(since")[0]))
    place_words = set(place.split())
    if " and " in head or "," in head or "vacant" in head.lower() or re.search(r"\bco-", text, re.IGNORECASE):
        return None  # co-princes, captains regent, a council: no single answer
    words = head.split()
    # the surname: the first upper-case word that is not an acronym in front of a title (`GNU Interim Prime ...`)
    upper = next((i for i, w in enumerate(words) if _is_upper_word(w) and w not in _TITLE_WORDS
                  and not (i + 1 < len(words) and words[i + 1] in _TITLE_WORDS)), None)
    if upper is None:
        return None
    start = upper
    while start > 0:  # given names back to the title; `President of China XI Jinping` stops at the place
        prev = words[start - 1]
        if prev in _TITLE_WORDS or prev in place_words or (prev.endswith(".") and len(prev) > 2) or not (
                prev[:1].isupper() or prev in _PARTICLES) or (start > 1 and words[start - 2] in ("of", "the")):
            break
        start -= 1
    end = upper + 1
    while end < len(words) and (words[end][:1].isupper() or _is_upper_word(words[end])) \
            and words[end] not in _TITLE_WORDS:
        end += 1
    name = " ".join(words[start:end]).strip(" ,;")
    if not name:
        return None
    proper = proper_name(name)
    surname = " ".join(proper_name(w) for w in words[upper:end] if _is_upper_word(w))
    extra = (surname,) if start < upper and len(surname) >= 4 and surname != proper else ()
    return Fact(proper, _aliases(proper, *extra), quoted=proper)


def extract_capital(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    """`Nairobi`; `Pretoria (administrative capital); Cape Town (...)` -> all three; `Pristina (Prishtine, ...)`."""
    text = fields.get(("Government", "Capital", "name"))
    if not text or text.lower().startswith(("none", "no official")):
        return None
    names: list[str] = []
    variants: list[str] = []
    for segment in text.split(";"):
        segment = segment.strip()
        if not segment or segment.lower().startswith("note"):
            continue
        main = _drop_parens(segment).strip(" ,.")
        if not main or "," in main:  # a list of seats (the European Union) is not one capital
            return None
        names.append(main)
        for inner in re.findall(r"\(([^)]*)\)", segment):
            if "capital" in inner or inner in ("city",) or any(ch.isdigit() for ch in inner):
                continue
            variants += [v.strip() for v in inner.split(",") if v.strip() and v.strip()[:1].isupper()]
    if not names:
        return None
    return Fact(names[0], _aliases(*names, *variants), quoted=names[0])


_CURRENCY_UNIONS = {
    "communaute financiere africaine": ("CFA franc", "CFA francs", "West African CFA franc"),
    "cooperation financiere en afrique centrale": ("CFA franc", "CFA francs", "Central African CFA franc"),
    "comptoirs francais du pacifique": ("CFP franc", "CFP francs"),
}


def _singular(name: str) -> str:
    head, _, last = name.rpartition(" ")
    if last.endswith("ies"):
        last = last[:-3] + "y"
    elif last.endswith("s") and not last.endswith(("ss", "us")):
        last = last[:-1]
    return f"{head} {last}".strip()


def extract_currency(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    """`Kenyan shillings (KES) per US dollar -` -> `Kenyan shillings` (aliases: `Kenyan shilling`, `KES`)."""
    text = fields.get(("Economy", "Exchange rates", "Currency"))
    if not text:
        return None
    match = re.match(r"\s*(.+?)\s*(?:\(([^)]*)\))?\s*per\s+US\s+dollar", text)
    if not match:
        return None
    name, codes = match.group(1).strip(), match.group(2) or ""
    if not name or name.lower().startswith(("none", "the ")):
        return None
    names = [v.strip() for v in name.split("/") if v.strip()]  # `Aruban guilders/florins`
    if len(names) > 1 and " " in names[0] and " " not in names[1]:
        names[1] = names[0].rsplit(" ", 1)[0] + " " + names[1]
    extra: list[str] = []
    for value in names:
        extra.append(_singular(value))
    extra += [c.strip() for c in codes.split("/") if re.fullmatch(r"[A-Z]{2,4}", c.strip())]
    folded = normalize_answer(fold_accents(name))
    for union, union_names in _CURRENCY_UNIONS.items():
        if folded.startswith(union):
            extra += list(union_names)
    return Fact(names[0], _aliases(*names, *extra), quoted=names[0])


def extract_highest_point(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    """`Mount Kenya 5,199 m` -> `Mount Kenya` (alias `Mt. Kenya`); `K2 (Mt. Godwin-Austen) 8,611 m` -> `K2`."""
    text = fields.get(("Geography", "Elevation", "highest point"))
    if not text:
        return None
    text = _first_segment(text)
    name = re.sub(r"\s+-?[\d,.]+\s*m\b.*$", "", text).strip()
    inner = re.findall(r"\(([^)]*)\)", name)
    name = _drop_parens(name).strip(" ,")
    if not name or name.lower().startswith(("unnamed", "point", "a point", "location", "several", "ridge")) \
            or any(ch.isdigit() for ch in name) or len(name.split()) > 6:
        return None
    extra = [v.strip() for part in inner for v in part.split(",") if v.strip()[:1].isupper()]
    for value in [name, *extra]:  # `Mount Kenya` / `Mt. Kenya`
        if value.startswith("Mount "):
            extra.append("Mt. " + value[len("Mount "):])
        elif value.startswith("Mt. "):
            extra.append("Mount " + value[len("Mt. "):])
    return Fact(name, _aliases(name, *extra), quoted=name)


def extract_anthem(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    """`"Ee Mungu Nguvu Yetu" (O God of All Creation)` -> `Ee Mungu Nguvu Yetu` (alias: the translation)."""
    text = fields.get(("Government", "National anthem(s)", "title"))
    if not text:
        return None
    match = re.search(r'"([^"]+)"', text)
    if not match:
        return None
    title = match.group(1).strip(" ,")
    translation = re.match(r"\s*\(([^)]+)\)", text[match.end():])
    extra = []
    if translation:
        value = translation.group(1).strip()
        generic = normalize_answer(value).startswith(("national anthem", "anthem", "hymn"))
        if not generic and len(value.split()) <= 8:
            extra.append(value)
    return Fact(title, _aliases(title, *extra), quoted=f'"{title}"')


def extract_chief_of_state(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    return _person(fields.get(("Government", "Executive branch", "chief of state")), _own_name(fields))


def extract_head_of_government(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    return _person(fields.get(("Government", "Executive branch", "head of government")), _own_name(fields))


def _own_name(fields: Mapping[tuple[str, ...], str]) -> str:
    return " ".join(fields.get(("Government", "Country name", key), "")
                    for key in ("conventional short form", "conventional long form"))


_COUNTRY_ALIASES = {
    "uk": ("United Kingdom", "Britain", "Great Britain"),
    "united kingdom": ("UK", "Britain", "Great Britain"),
    "us": ("United States", "USA"),
    "united states": ("US", "USA"),
    "soviet union": ("USSR",),
    "ussr": ("Soviet Union",),
}


def extract_independence_from(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    """`12 December 1963 (from the UK)` -> `UK` (aliases: `United Kingdom`, `Britain`, ...)."""
    text = fields.get(("Government", "Independence"))
    if not text or text.lower().startswith("none"):
        return None
    match = re.search(r"\bfrom (?:the )?([^);,]+)", _first_segment(text))
    if not match:
        return None
    name = match.group(1).strip()
    words = name.split()
    if " and " in name or len(words) > 5 or not all(w[:1].isupper() or w in ("of", "the") for w in words):
        return None
    extra = _COUNTRY_ALIASES.get(normalize_answer(name), ())
    return Fact(name, _aliases(name, *extra), quoted=name)


def extract_independence_date(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    """`12 December 1963 (from the UK)` -> `12 December 1963` (alias: `1963`)."""
    text = fields.get(("Government", "Independence"))
    if not text:
        return None
    match = re.match(r"\s*(\d{1,2} [A-Z][a-z]+ (\d{3,4}))\s*\(from ", _first_segment(text))
    if not match:
        return None
    return Fact(match.group(1), _aliases(match.group(1), match.group(2)), quoted=match.group(1))


def extract_internet_code(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    """`.ke` (alias `ke`; the scorer drops the dot anyway)."""
    text = fields.get(("Communications", "Internet country code"))
    if not text:
        return None
    match = re.match(r"\s*(\.[a-z]{2,3})\b", text)
    if not match:
        return None
    code = match.group(1)
    return Fact(code, _aliases(code, code[1:]), quoted=code)


def extract_government_type(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    """`presidential republic`; only the first clause of long descriptions."""
    text = fields.get(("Government", "Government type"))
    if not text:
        return None
    value = _drop_parens(_first_segment(text)).strip(" .,")
    if not value or len(value.split()) > 6:
        return None
    return Fact(value, _aliases(value), quoted=value)


def extract_national_holiday(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    """`Jamhuri Day (Independence Day), 12 December (1963)` -> `Jamhuri Day` (alias `Independence Day`)."""
    text = fields.get(("Government", "National holiday"))
    if not text:
        return None
    head = _first_segment(text).split(",")[0].strip()
    inner = re.findall(r"\(([^)]*)\)", head)
    name = _drop_parens(head).strip()
    if not name or any(ch.isdigit() for ch in name) or len(name.split()) > 6 or name.lower().startswith("none"):
        return None
    extra = [re.sub(r"^or ", "", v.strip()) for v in inner]
    extra = [v for v in extra if v[:1].isupper() and len(v.split()) <= 5 and not any(c.isdigit() for c in v)]
    return Fact(name, _aliases(name, *extra), quoted=name)


@dataclass(frozen=True)
class Kind:
    """A kind of field: how to extract it, how to ask it of a subject, and how to name an entity by it."""

    name: str
    extract: Callable[[Mapping[tuple[str, ...], str]], Fact | None]
    ask: str  # a question about `{subject}`: a country name, or a bridge phrase in two-hop questions
    bridge: str = ""  # `the country whose ... {value}` (only kinds whose values can name one entity)
    ask_bridge: str = ""  # the bridge's own sub-question: `Which country's ... {value}?`


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("capital", extract_capital, "What is the capital of {subject}?",
         "the country whose capital is {value}", "Which country has {value} as its capital?"),
    Kind("currency", extract_currency, "What is the currency of {subject}?"),
    Kind("highest_point", extract_highest_point, "What is the highest point of {subject}?",
         "the country whose highest point is {value}", "Which country's highest point is {value}?"),
    Kind("national_anthem", extract_anthem, "What is the title of the national anthem of {subject}?",
         "the country whose national anthem is {value}", "Which country's national anthem is {value}?"),
    Kind("chief_of_state", extract_chief_of_state, "Who is the chief of state of {subject}?",
         "the country whose chief of state is {value}", "Which country's chief of state is {value}?"),
    Kind("head_of_government", extract_head_of_government, "Who is the head of government of {subject}?",
         "the country whose head of government is {value}", "Which country's head of government is {value}?"),
    Kind("independence_from", extract_independence_from, "From which country did {subject} gain independence?"),
    Kind("independence_date", extract_independence_date, "On what date did {subject} gain independence?"),
    Kind("internet_code", extract_internet_code, "What is the internet country code of {subject}?",
         "the country whose internet country code is {value}", "Which country has the internet country code {value}?"),
    Kind("government_type", extract_government_type, "What type of government does {subject} have?"),
    Kind("national_holiday", extract_national_holiday, "What is the national holiday of {subject}?"),
)}
BRIDGES = tuple(name for name, kind in KINDS.items() if kind.bridge)
TWO_HOP = "two_hop"


# ---- questions ---------------------------------------------------------------------------------


def _subject(entity: Any) -> str:
    """How a question names the entity: the Factbook's short name (`Kenya`), `the Gambia`-style articles kept."""
    return entity.name


def _entity_answers(entity: Any) -> tuple[str, ...]:
    long_form = entity.fields.get(("Government", "Country name", "conventional long form"), "")
    extra = [long_form] if long_form and long_form.lower() != "none" else []
    return _aliases(entity.name, *extra)


def candidate_questions(entities: Iterable[Any], kinds: Sequence[str], *, two_hop_per_entity: int = 2,
                        seed: int = 0) -> list[Question]:
    """Every single-hop question of the chosen kinds, then up to `two_hop_per_entity` two-hop ones per entity.

    A two-hop question goes through a bridge kind whose value belongs to this entity alone among all entities
    (an anthem title two dependencies share is never a bridge), to a different target kind.
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
    from zerosearch_core.corpus import BM25Index, load_corpus

    index = BM25Index.open(load_corpus(None), cache_dir=cache_dir)

    def search(queries: list[str], k: int) -> list[list[Any]]:
        return [[passage for passage, _score in hits] for hits in index.search_batch(queries, k)]

    return search


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
    _write(out, by_split, stats)
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
