"""Corpora (JSONL in Search-R1's and the plain format, every bad input) and the BM25 index (real bm25s)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zerosearch_core.corpus import BM25Index, Corpus, CorpusError, Passage, load_corpus, read_jsonl
from zerosearch_simulator.backends.corpus import CorpusRetriever

ROWS = [
    {"id": "0", "contents": '"Paris"\nParis is the capital and largest city of France.'},
    {"id": "1", "contents": '"Rome"\nRome is the capital city of Italy.'},
    {"id": "2", "contents": '"Nairobi"\nNairobi is the capital of Kenya.'},
    {"id": "3", "contents": "A passage with no title line about the Danube river."},
]


def write_jsonl(path: Path, rows: list, raw: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + raw, encoding="utf-8")
    return path


@pytest.fixture
def small(tmp_path: Path) -> Corpus:
    return load_corpus(write_jsonl(tmp_path / "small.jsonl", ROWS))


@pytest.fixture(scope="module")
def factbook_index(tmp_path_factory: pytest.TempPathFactory) -> BM25Index:
    return BM25Index.open(load_corpus(None), tmp_path_factory.mktemp("cache"))


def test_search_r1_contents_format(small: Corpus) -> None:
    assert small.name == "small" and len(small.passages) == 4 and len(small.content_hash) == 64
    assert small.passages[0] == Passage(id="0", title="Paris", url="",
                                        text="Paris is the capital and largest city of France.")
    assert small.passages[3].title == "" and small.passages[3].text.startswith("A passage")
    assert small.passages[0].contents == '"Paris"\nParis is the capital and largest city of France.'


def test_title_text_format_with_optional_fields(tmp_path: Path) -> None:
    rows = [{"id": 7, "title": "Kenya", "text": "Nairobi.", "url": "https://example.org/ke"},
            {"id": "b", "text": "untitled"}, {"_id": "c", "text": "BEIR style id", "extra": [1]}]
    corpus = load_corpus(write_jsonl(tmp_path / "plain.jsonl", rows, raw="\n  \n"))
    assert [(p.id, p.title, p.url, p.text) for p in corpus.passages] == [
        ("7", "Kenya", "https://example.org/ke", "Nairobi."), ("b", "", "", "untitled"), ("c", "", "", "BEIR style id")]


def test_content_hash_follows_the_content(tmp_path: Path) -> None:
    a = load_corpus(write_jsonl(tmp_path / "a.jsonl", ROWS)).content_hash
    b = load_corpus(write_jsonl(tmp_path / "b.jsonl", ROWS)).content_hash
    c = load_corpus(write_jsonl(tmp_path / "c.jsonl", ROWS[:3])).content_hash
    assert a == b != c


@pytest.mark.parametrize(("content", "message"), [
    ("", "bad.jsonl: the corpus file is empty"),
    ("\n\n", "bad.jsonl: the corpus file is empty"),
    ('{"id": 1, "text": "ok"}\n{not json\n', "bad.jsonl:2: not valid JSON"),
    ('{"id": 1, "text": "ok"}\n\n[1, 2]\n', "bad.jsonl:3: expected a JSON object, got list"),
    ('{"id": 1, "title": "no text"}\n', 'bad.jsonl:1: no text: each line needs "contents" (Search-R1) or "text"'),
    ('{"id": 1, "text": 5}\n', "bad.jsonl:1: no text"),
    ('{"id": 1, "text": "  "}\n', "bad.jsonl:1: the passage's text is empty"),
    ('{"text": "no id"}\n', 'bad.jsonl:1: no "id"'),
    ('{"id": 1, "text": "a"}\n{"id": "1", "text": "b"}\n', "bad.jsonl:2: id '1' already used on line 1"),
])
def test_bad_lines_name_the_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        read_jsonl(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


def test_missing_unreadable_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no such corpus file"):
        load_corpus(tmp_path / "missing.jsonl")
    with pytest.raises(CorpusError, match="is a directory"):
        load_corpus(tmp_path)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CorpusError, match="not UTF-8"):
        load_corpus(binary)
    if os.geteuid() != 0:  # root reads a mode-0 file anyway
        unreadable = write_jsonl(tmp_path / "locked.jsonl", ROWS)
        unreadable.chmod(0)
        with pytest.raises(CorpusError, match="cannot read the corpus file"):
            load_corpus(unreadable)


def test_index_is_saved_and_loaded_memory_mapped(small: Corpus, tmp_path: Path) -> None:
    built = BM25Index.open(small, tmp_path)
    assert built.path == tmp_path / "indexes" / small.content_hash and (built.path / "zerosearch.json").is_file()
    loaded = BM25Index.open(small, tmp_path)
    assert type(loaded._retriever.scores["data"]).__name__ == "memmap"
    assert [p.id for p, _ in loaded.search("capital of Kenya", 1)] == ["2"]
    assert loaded.search("capital", 3) == built.search("capital", 3)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "meta"])
def test_a_corrupt_saved_index_is_rebuilt_with_a_warning(small: Corpus, tmp_path: Path, damage: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    path = BM25Index.open(small, tmp_path).path
    assert path is not None
    if damage == "truncate":
        data = next(path.glob("data*.npy"))
        data.write_bytes(data.read_bytes()[:40])
    elif damage == "garbage":
        (path / "vocab.index.json").write_text("{oops")
    else:
        (path / "zerosearch.json").write_text(json.dumps({"format": 0}))
    with caplog.at_level(logging.WARNING, logger="zerosearch_core.corpus"):
        index = BM25Index.open(small, tmp_path)
    assert any("unusable" in r.message and "rebuilding" in r.message for r in caplog.records)
    assert [p.id for p, _ in index.search("Nairobi Kenya", 1)] == ["2"]
    assert BM25Index.open(small, tmp_path).search("Rome", 1)[0][0].id == "1"  # the rebuilt copy loads


def test_k_is_clamped_and_unknown_terms_return_nothing(small: Corpus, tmp_path: Path) -> None:
    index = BM25Index.open(small, tmp_path)
    assert len(index.search("the capital city", 100)) == 3  # k > corpus size: no error, only matches
    assert index.search("capital", 0) == []
    assert index.search("xylophone quagga", 5) == []  # no known term
    assert index.search("the of and", 5) == []  # stopwords only
    assert index.search("", 5) == []
    batch = index.search_batch(["Rome", "zzzz", "capital Paris France"], 2)
    assert [[p.id for p, _ in hits][:1] for hits in batch] == [["1"], [], ["0"]] and len(batch[2]) == 2
    assert all(a >= b for hits in batch for (_, a), (_, b) in zip(hits, hits[1:], strict=False))


def test_factbook_answers_capital_of_kenya(factbook_index: BM25Index) -> None:
    (top, score), *_ = factbook_index.search("capital of Kenya", 5)
    assert "Nairobi" in top.text and top.title == "Kenya - Capital - name" and score > 0
    assert len(factbook_index.search("Kenya", 10**9)) > 100  # clamped to the corpus, not an error


def test_retriever_batches_concurrent_searches(factbook_index: BM25Index) -> None:
    retriever = CorpusRetriever(index=factbook_index)
    assert retriever.model_id == f"bm25:factbook@{factbook_index.corpus.content_hash[:12]}"
    calls: list[int] = []
    search = retriever._search
    retriever._search = lambda queries, k: calls.append(len(queries)) or search(queries, k)  # type: ignore[method-assign]

    async def run() -> list:
        await retriever.start()
        assert await retriever.check_health()
        return await asyncio.gather(*(retriever.retrieve(q, k) for q, k in
                                      [("capital of Kenya", 1), ("highest point of Nepal", 3), ("qqqzzz", 5)] * 20))

    results = asyncio.run(run())
    assert len(calls) <= 2 and sum(calls) == 60  # one bm25s call for the whole burst (two at most)
    assert "Nairobi" in results[0][0].text and len(results[0]) == 1
    assert len(results[1]) == 3 and "Everest" in results[1][0].text
    assert results[2] == []


def test_retriever_before_start_is_a_recoverable_error() -> None:
    from zerosearch_core.errors import BackendError

    retriever = CorpusRetriever(corpus="unused.jsonl")
    assert not asyncio.run(retriever.check_health())
    with pytest.raises(BackendError) as info:
        asyncio.run(retriever.retrieve("a", 1))
    assert info.value.recoverable


def test_bm25s_does_not_wake_jax(tmp_path: Path):
    """bm25s calls `jax.lax.top_k` at import when JAX is installed; on a GPU host that call makes JAX take 75% of the
    GPU. A stand-in `jax` records any call; the index must build and search without one, and the process can still
    import JAX itself afterwards. (A subprocess: bm25s may already be imported in this one.)"""
    fake = tmp_path / "site" / "jax"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("from . import lax\n")
    (fake / "lax.py").write_text(
        "import os\n"
        "def top_k(scores, k):\n"
        "    open(os.environ['JAX_CALLS'], 'a').write('top_k\\n')\n"
        "    raise RuntimeError('JAX woken')\n")
    calls = tmp_path / "calls.txt"
    script = (
        "from zerosearch_core.corpus import BM25Index, Corpus, Passage\n"
        "passage = Passage(id='0', title='Nairobi', url='', text='Nairobi is the capital of Kenya.')\n"
        "corpus = Corpus.from_passages('test', [passage])\n"
        "index = BM25Index(corpus, BM25Index._build(corpus, False))\n"
        "assert index.search('capital Kenya', 1)[0][0].id == '0'\n"
        "import jax\n"
        "print('jax importable:', jax.__name__)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]),
           "JAX_CALLS": str(calls)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "jax importable: jax" in done.stdout
    assert not calls.exists(), "bm25s called into JAX at import"
