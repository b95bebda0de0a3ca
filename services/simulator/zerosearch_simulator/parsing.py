"""Model text -> documents.

The simulators write `Doc 1: ... Doc 2: ...`; small or untuned models stray from that, so
parsing falls back to lines, then to sentences, and drops fragments too short to be a
result. Titles and URLs are derived, not generated: the title is the snippet's first words
and the URL a stable fake address on the reserved `.example` domain (RFC 2606), so nobody
mistakes a simulated result for a real page.
"""

from __future__ import annotations

import hashlib
import re

from zerosearch_core.schemas import Document, Label

MIN_WORDS = 4
MAX_SNIPPET_CHARS = 600
TITLE_WORDS = 8

_DOC_MARKER = re.compile(r"(?:^|\s|\*\*|#+\s*)Doc(?:ument)?\s*(\d+)\s*\**\s*[:.)\-]\s*\**", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")
_MARKUP = re.compile(r"[*_`#>]+")
_SLUG = re.compile(r"[^a-z0-9]+")


def _clean(fragment: str) -> str:
    text = _MARKUP.sub("", fragment)
    text = " ".join(text.split())
    if len(text) > MAX_SNIPPET_CHARS:
        text = text[:MAX_SNIPPET_CHARS].rsplit(" ", 1)[0] + " ..."
    return text


def _usable(text: str) -> bool:
    return len(text.split()) >= MIN_WORDS


def marker(i: int) -> str:
    """The marker the simulators start document i with (and the stop string after document k)."""
    return f"Doc {i}:"


def merge_snippets(old: list[str], new: list[str], k: int) -> list[str]:
    """The snippets written so far followed by the new ones that repeat none of them, up to k."""
    merged = list(old)
    seen = {s.lower() for s in old}
    for snippet in new:
        if len(merged) == k:
            break
        if snippet.lower() not in seen:
            seen.add(snippet.lower())
            merged.append(snippet)
    return merged


def written_documents(text: str, k: int) -> list[str]:
    """Every usable document in model text, in order, repeats included, tolerating missing or broken markers."""
    markers = list(_DOC_MARKER.finditer(text))
    if markers:
        # Stop where the model started a document beyond k (the paper's client cut at `Doc {k+1}`).
        bounds = [m.end() for m in markers] + [len(text)]
        pieces = [text[bounds[i]:markers[i + 1].start() if i + 1 < len(markers) else len(text)]
                  for i in range(len(markers))]
    else:
        pieces = [line for line in text.splitlines() if line.strip()]
        if len([p for p in pieces if _usable(_clean(p))]) < k:
            pieces = _SENTENCE_END.split(" ".join(text.split()))
    return [snippet for snippet in map(_clean, pieces) if _usable(snippet)]


def split_snippets(text: str, k: int) -> list[str]:
    """Up to k snippets from model text: its documents, each written once (a repeat is kept once)."""
    snippets: list[str] = []
    seen: set[str] = set()
    for snippet in written_documents(text, k):
        if snippet.lower() not in seen:
            seen.add(snippet.lower())
            snippets.append(snippet)
        if len(snippets) == k:
            break
    return snippets


def make_title(snippet: str) -> str:
    words = snippet.split()
    title = " ".join(words[:TITLE_WORDS]).rstrip(",;:.-")
    return title + (" ..." if len(words) > TITLE_WORDS else "")


def make_url(snippet: str, digest: str) -> str:
    words = _SLUG.sub("-", snippet.lower()).strip("-").split("-")
    host = "-".join(w for w in words[:2] if w) or "result"
    path = "-".join(w for w in words[2:7] if w) or "page"
    return f"https://{host}.example/{path}-{digest[:8]}"


def to_documents(snippets: list[str], *, query: str, label: Label) -> list[Document]:
    documents = []
    for snippet in snippets:
        digest = hashlib.sha256(f"{query}\x00{snippet}".encode()).hexdigest()
        documents.append(Document(id=f"zs-{digest[:16]}", title=make_title(snippet), url=make_url(snippet, digest),
                                  snippet=snippet, label=label))
    return documents
