"""Reading the answers of the real search APIs: empty answers are empty, not malformed; wrong shapes are."""

from __future__ import annotations

import pytest

from zerosearch_simulator.backends.upstream_apis import APIS, MalformedAnswer, clean_text

# What each API answers when it found nothing (their documented shapes).
EMPTY = {
    "serpapi": {"search_metadata": {"status": "Success"},
                "error": "Google hasn't returned any results for this query."},
    "tavily": {"query": "q", "results": [], "response_time": 0.5},
    "brave": {"type": "search", "query": {"original": "q"}},  # no `web` section at all
    "serper": {"searchParameters": {"q": "q"}, "credits": 1},
    "searxng": {"query": "q", "number_of_results": 0, "results": []},
    "google_cse": {"kind": "customsearch#search", "searchInformation": {"totalResults": "0"}},  # no `items`
    "exa": {"requestId": "r", "results": []},
    "retrieve": {"result": [[]]},
}


@pytest.mark.parametrize("name", sorted(EMPTY))
def test_an_empty_answer_is_no_hits(name: str) -> None:
    assert APIS[name].read(EMPTY[name], 5) == []


@pytest.mark.parametrize("name", sorted(EMPTY))
@pytest.mark.parametrize("body", [[], "text", {"unexpected": True}])
def test_another_shape_is_malformed(name: str, body: object) -> None:
    with pytest.raises(MalformedAnswer):
        APIS[name].read(body, 5)


def test_results_of_the_wrong_type_are_malformed() -> None:
    with pytest.raises(MalformedAnswer, match=r"organic_results\[0\]\.title"):
        APIS["serpapi"].read({"search_metadata": {}, "organic_results": [{"title": 3}]}, 5)
    with pytest.raises(MalformedAnswer, match="results"):
        APIS["tavily"].read({"results": "none"}, 5)


def test_brave_highlighting_is_plain_text_and_k_is_a_cap() -> None:
    body = {"type": "search", "web": {"results": [
        {"title": "The <strong>Nile</strong>", "url": f"https://e.org/{i}", "description": "Longest &amp; oldest"}
        for i in range(4)]}}
    hits = APIS["brave"].read(body, 3)
    assert len(hits) == 3 and hits[0].title == "The Nile" and hits[0].text == "Longest & oldest"
    assert hits[0].id != hits[1].id and hits[0].score > hits[1].score
    assert clean_text("a <b>b</b>\n c") == "a b c"


def test_retrieve_reads_scored_and_plain_passages() -> None:
    scored = {"result": [[{"document": {"id": "42", "contents": '"Nile"\nThe Nile is long.'}, "score": 0.8}]]}
    plain = {"result": [[{"id": 7, "title": "Nile", "text": "The Nile is long."}]]}
    for body in (scored, plain):
        (hit,) = APIS["retrieve"].read(body, 3)
        assert (hit.title, hit.text) == ("Nile", "The Nile is long.")
    with pytest.raises(MalformedAnswer, match="1 query"):
        APIS["retrieve"].read({"result": [[], []]}, 3)
