import pytest

from zerosearch_core.scoring import content_words, exact_match, f1_score, normalize_answer, sub_exact_match


def test_normalisation_squad_rules():
    assert normalize_answer("  The  Eiffel-Tower!! ") == "eiffeltower"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer(None) == ""


@pytest.mark.parametrize("pred,gold,em,sub,f1", [
    ("Paris", ["paris"], 1.0, 1.0, 1.0),
    ("the city of Paris", ["Paris"], 0.0, 1.0, 0.5),
    ("London", ["Paris", "London"], 1.0, 1.0, 1.0),
    ("Berlin", ["Paris"], 0.0, 0.0, 0.0),
    (None, ["Paris"], 0.0, 0.0, 0.0),
    ("", ["Paris"], 0.0, 0.0, 0.0),
    ("Paris", None, 0.0, 0.0, 0.0),
    ("Paris", [], 0.0, 0.0, 0.0),
    ("Paris", "Paris", 1.0, 1.0, 1.0),
    ("a", ["the"], 0.0, 0.0, 0.0),  # only articles: nothing left to match
])
def test_metrics(pred, gold, em, sub, f1):
    assert exact_match(pred, gold) == em
    assert sub_exact_match(pred, gold) == sub
    assert f1_score(pred, gold) == pytest.approx(f1)


def test_f1_takes_best_answer_and_ignores_non_strings():
    assert f1_score("barack obama", ["obama", None, 3, "barack obama"]) == 1.0
    assert f1_score("barack obama", ["obama"]) == pytest.approx(2 / 3)


def test_content_words_drop_function_words():
    assert content_words("What is the capital of Kenya?") == {"capital", "kenya"}
    assert content_words("capital Kenya") == content_words("Which is the CAPITAL of kenya")
    assert content_words("What I found.") == {"i", "found"}
    assert content_words("and") == set()
    assert content_words(None) == set()
