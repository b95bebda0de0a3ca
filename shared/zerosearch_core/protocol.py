"""The document renderings agents see, the simulator's document text format, and the passage format.

- paper (ZeroSearch):   `Doc 1: {snippet}` lines
- Search-R1:            `Doc 1(Title: {title}) {snippet}` lines
- Search-R1 retriever:  `contents` = `"{title}"\\n{snippet}` (clients split the title off the first line)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
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
    """Inverse of retriever_contents: (title without quotes, text); contents with no quoted title line:
    ("", contents)."""
    first, sep, rest = contents.partition("\n")
    first = first.strip()
    if sep and len(first) >= 2 and first.startswith('"') and first.endswith('"'):
        return first[1:-1], rest.strip()
    return "", contents.strip()


@dataclass(frozen=True)
class Passage:
    """One retrievable passage of a corpus: a stable id, a title, the address it came from ('' if none), its text."""

    id: str
    title: str
    url: str
    text: str

    @property
    def contents(self) -> str:
        """Search-R1's rendering (`"Title"\\ntext`), also what the index reads."""
        return f'"{self.title}"\n{self.text}' if self.title else self.text

