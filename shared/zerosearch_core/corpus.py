"""Corpora and the BM25 index of the real engine.

A corpus is a list of `Passage`s (the one passage format, in `zerosearch_core.protocol`): the CIA World
Factbook (the default, `zerosearch_core.factbook`), or a JSONL file in Search-R1's format
(`{"id", "contents": "\"Title\"\ntext"}`, as wiki-18) or as `{"id", "title", "text", "url"}` (title and url
optional). `BM25Index` is bm25s over a corpus, built once and saved under `<cache_dir>/indexes/<content_hash>/`,
loaded memory-mapped afterwards.

bm25s is imported only when an index is opened: the base install does not have it (the simulator and the
trainer extras do).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zerosearch_core.errors import CorpusError
from zerosearch_core.protocol import Passage, split_contents

logger = logging.getLogger(__name__)

#: Tokenizer settings of every index; part of the saved index's metadata, so a change rebuilds.
#: No stemming: on the Factbook questions the English Snowball stemmer (PyStemmer) lowered recall@1 from
#: 0.889 to 0.868 and recall@5 from 0.970 to 0.967, so the install does not need PyStemmer.
STOPWORDS = "en"
#: Corpora at least this large show progress bars while their index builds (unless told otherwise).
PROGRESS_FROM = 200_000
INDEX_FORMAT = 1


@dataclass
class Corpus:
    """Passages with a name (for ids and logs) and a content hash (the index's cache key)."""

    name: str
    passages: list[Passage]
    content_hash: str

    @classmethod
    def from_passages(cls, name: str, passages: list[Passage]) -> Corpus:
        return cls(name=name, passages=passages, content_hash=content_hash(passages))


def content_hash(passages: list[Passage]) -> str:
    """sha256 over every passage's id, title, url and text, in order."""
    digest = hashlib.sha256()
    for p in passages:
        digest.update(json.dumps([p.id, p.title, p.url, p.text], ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _passage_from_record(record: Any, where: str, line: int) -> Passage:
    if not isinstance(record, dict):
        raise CorpusError(f"{where}:{line}: expected a JSON object, got {type(record).__name__}")
    url = record.get("url") or ""
    if isinstance(record.get("contents"), str):
        title, text = split_contents(record["contents"])
        title = record.get("title") if isinstance(record.get("title"), str) else title
    elif isinstance(record.get("text"), str):
        title, text = record.get("title") or "", record["text"].strip()
    else:
        raise CorpusError(f'{where}:{line}: no text: each line needs "contents" (Search-R1) or "text" (a string)')
    if not text:
        raise CorpusError(f"{where}:{line}: the passage's text is empty")
    pid = record.get("id", record.get("_id"))
    if pid is None or isinstance(pid, (dict, list)) or str(pid) == "":
        raise CorpusError(f'{where}:{line}: no "id" (a string or a number)')
    return Passage(id=str(pid), title=str(title), url=str(url), text=text)


def read_jsonl(path: str | Path) -> list[Passage]:
    """The passages of a JSONL corpus file; CorpusError naming the file and line for anything wrong."""
    where = str(path)
    passages: list[Passage] = []
    seen: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise CorpusError(f"{where}:{line_no}: not valid JSON ({exc})") from None
                passage = _passage_from_record(record, where, line_no)
                if passage.id in seen:
                    raise CorpusError(f"{where}:{line_no}: id {passage.id!r} already used on line {seen[passage.id]}")
                seen[passage.id] = line_no
                passages.append(passage)
    except FileNotFoundError:
        raise CorpusError(f"{where}: no such corpus file") from None
    except IsADirectoryError:
        raise CorpusError(f"{where}: is a directory, not a JSONL corpus file") from None
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise CorpusError(f"{where}: cannot read the corpus file ({exc.strerror or exc})") from None
    if not passages:
        raise CorpusError(f"{where}: the corpus file is empty (one JSON passage per line expected)")
    return passages


#: Corpora read in this process, by (path, size, mtime): `zerosearch serve` checks the corpus before uvicorn
#: starts, and a single-process server then serves that same object instead of reading the file again.
_LOADED: dict[tuple[str, int, int] | None, Corpus] = {}
_LOADED_LOCK = threading.Lock()


def _file_key(path: str | Path) -> tuple[str, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None  # read_jsonl says what is wrong
    return (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def load_corpus(path: str | Path | None = None) -> Corpus:
    """The corpus at `path` (JSONL), or the CIA World Factbook when None. Logs passage count and hash.
    Read once per process (again if the file changes)."""
    key = None if path is None else _file_key(path)
    with _LOADED_LOCK:
        if (path is None or key is not None) and key in _LOADED:
            return _LOADED[key]
        if path is None:
            from zerosearch_core.factbook import factbook_passages

            corpus = Corpus.from_passages("factbook", factbook_passages())
        else:
            corpus = Corpus.from_passages(Path(path).stem, read_jsonl(path))
        if path is None or key is not None:
            while len(_LOADED) >= 4:  # a server has one corpus; tests and benchmarks a few
                _LOADED.pop(next(iter(_LOADED)))
            _LOADED[key] = corpus
    logger.info("corpus %s: %d passages, content hash %s", corpus.name, len(corpus.passages),
                corpus.content_hash[:12])
    return corpus


def _bm25s() -> Any:
    try:
        with _jax_hidden():
            import bm25s
    except ImportError as exc:
        raise CorpusError("the corpus engine needs bm25s: pip install 'zerosearch[simulator]'") from exc
    return bm25s


@contextmanager
def _jax_hidden() -> Iterator[None]:
    """Import bm25s as if JAX were not installed. bm25s probes JAX at import with a `jax.lax.top_k` call, and on a
    GPU host with jax[cuda] that first call makes JAX take 75% of the GPU's memory (an H200: the corpus engine held
    108 GB, leaving the simulator or the policy beside it little). We never use bm25s's JAX path (scores come from
    `get_scores`, the top k from numpy), so its probe is skipped. A JAX the process imported itself stays as it is."""
    if "jax" in sys.modules or "bm25s.selection" in sys.modules:
        yield
        return
    sys.modules["jax"] = None  # type: ignore[assignment]  # `import jax...` raises ImportError inside the block
    try:
        yield
    finally:
        if sys.modules.get("jax", 0) is None:
            del sys.modules["jax"]


class BM25Index:
    """bm25s over one corpus. Open with `BM25Index.open(corpus)`; search with `search` / `search_batch`."""

    def __init__(self, corpus: Corpus, retriever: Any, path: Path | None = None) -> None:
        self.corpus = corpus
        self.path = path
        self._retriever = retriever
        self._vocab: dict[str, int] = retriever.vocab_dict

    # --- building and loading -------------------------------------------------------------------------
    @classmethod
    def open(cls, corpus: Corpus, cache_dir: Path | None = None, *, progress: bool | None = None) -> BM25Index:
        """The index of `corpus`: loaded (memory-mapped) from `<cache_dir>/indexes/<content_hash>/` when saved
        there, else built and saved there. `cache_dir` defaults to the project's cache directory. A saved
        index that does not load is rebuilt, with a warning. `progress` None: bars for large corpora."""
        from filelock import FileLock

        from zerosearch_core.models import cache_dir as default_cache_dir

        meta = {"format": INDEX_FORMAT, "num_docs": len(corpus.passages), "stopwords": STOPWORDS,
                "content_hash": corpus.content_hash}
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        target = root / "indexes" / corpus.content_hash
        show = len(corpus.passages) >= PROGRESS_FROM if progress is None else progress
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            logger.warning("cannot write the index cache %s (%s): building in memory", target.parent, exc)
            return cls(corpus, cls._build(corpus, show))
        # Replicas starting together build once: the others wait here, then load.
        with FileLock(str(target) + ".lock"):
            if target.exists():
                retriever = cls._load_saved(target, meta)
                if retriever is not None:
                    logger.info("index %s loaded (memory-mapped) from %s", corpus.content_hash[:12], target)
                    return cls(corpus, retriever, target)
                shutil.rmtree(target, ignore_errors=True)
            retriever = cls._build(corpus, show)
            cls._save(retriever, target, meta)
        # Serve from the memory-mapped copy, so that replicas share one index in the page cache.
        return cls(corpus, cls._load_saved(target, meta) or retriever, target)

    @classmethod
    def _build(cls, corpus: Corpus, show: bool) -> Any:
        bm25s = _bm25s()
        started = time.perf_counter()
        tokens = bm25s.tokenize([p.contents for p in corpus.passages], stopwords=STOPWORDS, show_progress=show)
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=show)
        logger.info("index %s built: %d passages in %.1f s", corpus.content_hash[:12], len(corpus.passages),
                    time.perf_counter() - started)
        return retriever

    @staticmethod
    def _save(retriever: Any, target: Path, meta: dict[str, Any]) -> None:
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        try:
            shutil.rmtree(partial, ignore_errors=True)
            retriever.save(str(partial))
            (partial / "zerosearch.json").write_text(json.dumps(meta))
            os.replace(partial, target)
        except OSError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            logger.warning("cannot save the index to %s (%s): serving it from memory", target, exc)

    @staticmethod
    def _load_saved(target: Path, meta: dict[str, Any]) -> Any:
        """The saved retriever, or None (with a warning) when it is missing, partial, stale or corrupt."""
        try:
            saved = json.loads((target / "zerosearch.json").read_text())
            if saved != meta:
                raise ValueError(f"saved for {saved}, wanted {meta}")
            retriever = _bm25s().BM25.load(str(target), mmap=True)
            if retriever.scores["num_docs"] != meta["num_docs"] or not retriever.vocab_dict:
                raise ValueError("its passage count or vocabulary does not match")
            for name in ("data", "indices", "indptr"):  # touch every array once, so a truncated one fails here
                array = retriever.scores[name]
                _ = array[-1] if len(array) else None
            return retriever
        except Exception as exc:  # noqa: BLE001 - any failure to load means: rebuild
            logger.warning("saved index %s is unusable (%s: %s): rebuilding it", target, type(exc).__name__, exc)
            return None

    # --- searching ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.corpus.passages)

    def search(self, query: str, k: int) -> list[tuple[Passage, float]]:
        """Up to k passages matching the query, best first, with their BM25 scores."""
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: list[str], k: int) -> list[list[tuple[Passage, float]]]:
        """`search` for many queries. Passages that share no term with a query are not returned, so a query of
        unknown words (or stopwords only) gets an empty list.

        Scores come from bm25s (`get_scores`); the top k is taken among the passages that match at all rather
        than over the whole corpus as `BM25.retrieve` does: on the Factbook that selection was nine tenths of
        retrieve's time (docs/benchmarks.md). Ties go to the passage that comes first in the corpus."""
        import numpy as np

        k = min(max(int(k), 0), len(self.corpus.passages))
        results: list[list[tuple[Passage, float]]] = [[] for _ in queries]
        if k == 0 or not queries:
            return results
        tokenized = _bm25s().tokenize(list(queries), stopwords=STOPWORDS, return_ids=False,
                                      show_progress=False)
        passages = self.corpus.passages
        for i, tokens in enumerate(tokenized):
            known = [t for t in tokens if t in self._vocab]
            if not known:
                continue
            scores = self._retriever.get_scores(known)
            matching = np.flatnonzero(scores > 0)
            if matching.size > k:
                matching = matching[np.argpartition(-scores[matching], k - 1)[:k]]
            best = matching[np.lexsort((matching, -scores[matching]))]
            results[i] = [(passages[int(d)], float(scores[d])) for d in best]
        return results
