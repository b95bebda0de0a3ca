"""The kinds of Factbook field a question can ask: how to extract each answer, with its aliases, from an entity.

Extractors take `Entity.fields` (a mapping of key paths such as `("Government", "Capital", "name")` to cleaned
text) and return a `Fact`, or None when the entity has no single usable value (several co-princes, an unnamed
highest point, no independence). Aliases are what a policy could equally answer, de-duplicated by the scorer's
normalisation (`zerosearch_core.scoring.normalize_answer`), which keeps accents: folded spellings are added.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from zerosearch_core.scoring import normalize_answer

__all__ = ["BRIDGES", "KINDS", "Fact", "Kind", "aliases", "fold_accents", "proper_name"]


@dataclass(frozen=True)
class Fact:
    """One extracted value: the answer as written, its aliases, and the text a question may quote."""

    answer: str
    aliases: tuple[str, ...] = ()
    quoted: str = ""  # the form a bridge phrase uses ("Kimigayo"), when it differs from the answer


# ---- text helpers ----------------------------------------------------------------------------


def fold_accents(text: str) -> str:
    """`Brasília` -> `Brasilia`: the answer normaliser keeps accents, so folded spellings are added as aliases."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def aliases(*names: str) -> tuple[str, ...]:
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
    return Fact(proper, aliases(proper, *extra), quoted=proper)


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
    return Fact(names[0], aliases(*names, *variants), quoted=names[0])


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
    names = [v.strip() for v in re.split(r"/| or ", name) if v.strip()]  # `Aruban guilders/florins`, `X or Y`
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
    return Fact(names[0], aliases(*names, *extra), quoted=names[0])


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
    if not name[:1].isupper():  # `ocean-side dunes on Diego Garcia`
        return None
    extra = [v.strip() for part in inner for v in part.split(",") if v.strip()[:1].isupper()]
    if " on " in name:  # `Margherita Peak on Mount Stanley`: the peak alone
        extra.append(name.split(" on ")[0])
    for value in [name, *extra]:  # `Mount Kenya` / `Mt. Kenya`
        if value.startswith("Mount "):
            extra.append("Mt. " + value[len("Mount "):])
        elif value.startswith("Mt. "):
            extra.append("Mount " + value[len("Mt. "):])
    return Fact(name, aliases(name, *extra), quoted=name)


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
    return Fact(title, aliases(title, *extra), quoted=f'"{title}"')


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
    return Fact(name, aliases(name, *extra), quoted=name)


def extract_independence_date(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    """`12 December 1963 (from the UK)` -> `12 December 1963` (alias: `1963`)."""
    text = fields.get(("Government", "Independence"))
    if not text:
        return None
    match = re.match(r"\s*(\d{1,2} [A-Z][a-z]+ (\d{3,4}))\s*\(from ", _first_segment(text))
    if not match:
        return None
    return Fact(match.group(1), aliases(match.group(1), match.group(2)), quoted=match.group(1))


def extract_internet_code(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    """`.ke` (alias `ke`; the scorer drops the dot anyway)."""
    text = fields.get(("Communications", "Internet country code"))
    if not text:
        return None
    match = re.match(r"\s*(\.[a-z]{2,3})\b", text)
    if not match:
        return None
    code = match.group(1)
    return Fact(code, aliases(code, code[1:]), quoted=code)


def extract_government_type(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    """`presidential republic`; only the first clause of long descriptions."""
    text = fields.get(("Government", "Government type"))
    if not text:
        return None
    value = _drop_parens(_first_segment(text)).strip(" .,")
    if not value or len(value.split()) > 6:
        return None
    return Fact(value, aliases(value), quoted=value)


def extract_national_holiday(fields: Mapping[tuple[str, ...], str]) -> Fact | None:
    """`Jamhuri Day (Independence Day), 12 December (1963)` -> `Jamhuri Day` (alias `Independence Day`)."""
    text = fields.get(("Government", "National holiday"))
    if not text:
        return None
    head = _first_segment(text).split(",")[0].strip()
    inner = re.findall(r"\(([^)]*)\)", head)
    name = proper_name(_drop_parens(head).strip())  # `Official birthday of King TUPOU VI`
    if not name or any(ch.isdigit() for ch in name) or len(name.split()) > 6 or ":" in name \
            or name.lower().startswith("none"):
        return None
    extra = [re.sub(r"^or ", "", v.strip()) for v in inner]
    extra = [v for v in extra if v[:1].isupper() and len(v.split()) <= 5 and not any(c.isdigit() for c in v)]
    return Fact(name, aliases(name, *extra), quoted=name)


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
