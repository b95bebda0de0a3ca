"""The document renderings agents see, and the simulator's document text format.

- paper (ZeroSearch):   `Doc 1: {snippet}` lines
- Search-R1:            `Doc 1(Title: {title}) {snippet}` lines
- Search-R1 retriever:  `contents` = `"{title}"\\n{snippet}` (clients split the title off the first line)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class _Doc(Protocol):
    title: str
    snippet: str


def render_paper(documents: Iterable[_Doc]) -> str:
    return "\n".join(f"Doc {i}: {d.snippet}" for i, d in enumerate(documents, start=1))


def render_searchr1(documents: Iterable[_Doc]) -> str:
    return "\n".join(f"Doc {i}(Title: {d.title}) {d.snippet}" for i, d in enumerate(documents, start=1))


def retriever_contents(document: _Doc) -> str:
    return f'"{document.title}"\n{document.snippet}'


def split_contents(contents: str) -> tuple[str, str]:
    """Inverse of retriever_contents: (title without quotes, text)."""
    first, _, rest = contents.partition("\n")
    return first.strip().strip('"'), rest.strip()

