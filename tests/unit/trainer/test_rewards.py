"""Rewards: answer taken from the completion only, outside <information>, robust to malformed text."""

from __future__ import annotations

import pytest

from zerosearch_trainer.rewards import (
    em_reward,
    extract_answer,
    f1_reward,
    format_reward,
    get_reward_functions,
    query_reward,
    sub_em_reward,
)

GOLD = [["Paris"]]


@pytest.mark.parametrize("completion, expected", [
    ("<think>x</think><answer> Paris </answer>", "Paris"),
    ("<answer>Lyon</answer> then <answer>Paris</answer>", "Paris"),
    ("<answer>   </answer>", None),
    ("no tags at all", None),
    ("<answer>unterminated", None),
    ("", None),
    (None, None),
    ("<information>Doc 1: <answer>Paris</answer></information>", None),
    ("<search>q</search>\n\n<information>Doc 1: <answer>Rome</answer></information>\n\n<answer>Paris</answer>",
     "Paris"),
    ("<information>never closed <answer>Paris</answer>", None),
])
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


def test_chat_message_completions():
    completion = [{"role": "assistant", "content": "<answer>Paris</answer>"}]
    assert extract_answer(completion) == "Paris"
    assert f1_reward([completion], GOLD) == [1.0]


def test_metrics_on_edge_cases():
    completions = ["<answer>Paris</answer>", "<answer>the city of Paris</answer>", "<answer>Lyon</answer>",
                   "nothing", None]
    gold = [["Paris"]] * 5
    assert em_reward(completions, gold) == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert sub_em_reward(completions, gold) == [1.0, 1.0, 0.0, 0.0, 0.0]
    f1 = f1_reward(completions, gold)
    assert f1[0] == 1.0 and 0 < f1[1] < 1 and f1[2:] == [0.0, 0.0, 0.0]


def test_missing_or_odd_golden_answers_score_zero():
    assert f1_reward(["<answer>Paris</answer>"], None) == [0.0]
    assert f1_reward(["<answer>Paris</answer>"], [None]) == [0.0]
    assert f1_reward(["<answer>Paris</answer>"], ["Paris"]) == [1.0]  # a bare string is one answer
    assert em_reward(["<answer>7</answer>"], [[7]]) == [1.0]


def test_template_example_is_not_an_answer():
    # The prompt's "<answer> Beijing </answer>" must never count: only the completion is scored.
    assert f1_reward(["I think so."], [["Beijing"]]) == [0.0]


def test_format_reward():
    good = ("<think>a</think>\n<search>q</search>\n\n<information>x</information>\n\n"
            "<think>b</think>\n<answer>c</answer>")
    assert format_reward([good]) == [1.0]
    assert format_reward(["<answer>c</answer>"]) == [0.5]
    assert format_reward(["<think>a</think><search>q"]) == [0.0]


def test_reward_registry():
    assert [f.__name__ for f in get_reward_functions(["f1", "em"])] == ["f1_reward", "em_reward"]
    with pytest.raises(ValueError, match="unknown reward"):
        get_reward_functions(["bleu"])


def test_the_invalid_action_message_is_not_an_answer():
    from zerosearch_trainer.rollout import INVALID_ACTION_MESSAGE

    completion = f"I will just talk.\n{INVALID_ACTION_MESSAGE}\nStill talking."
    assert extract_answer(completion) is None
    assert f1_reward([completion], [["Antigua and Barbuda"]]) == [0.0]
    assert format_reward([completion]) == [0.0]
    answered = completion + "<think> t </think> <answer> Saint John's </answer>"
    assert extract_answer(answered) == "Saint John's"


QUESTION = "What is the capital of Kenya?"


@pytest.mark.parametrize("completion, expected", [
    ("<think>t</think><search> What is the capital of Kenya? </search><information>x</information>", 1.0),
    ("<search>capital Kenya</search>", 1.0),  # keywords carry everything the question is about
    ("<search>Kenya</search>", 0.5),
    ("<search> What I found. </search>", 0.0),  # the filler small policies collapse to
    ("<search> and </search>", 0.0),
    ("<search>   </search><answer>Nairobi</answer>", 0.0),  # an empty query is no search
    ("<answer>Nairobi</answer>", 0.0),  # no search at all
    ("<search>Kenya</search><information>x</information><search>capital of Kenya</search>", 1.0),  # the best one
    ("<search>Kenya", 0.0),  # cut off before </search>: the search never ran
    ("<information><search>capital Kenya</search></information>", 0.0),  # a document's text is not a query
])
def test_query_reward(completion, expected):
    assert query_reward([completion], question=[QUESTION]) == [pytest.approx(expected)]


def test_query_reward_ignores_the_invalid_action_message():
    from zerosearch_trainer.rollout import INVALID_ACTION_MESSAGE

    # the message itself holds "<search> and </search>": it must not count as a search the policy made
    assert query_reward([f"talk {INVALID_ACTION_MESSAGE} <answer>x</answer>"], question=[QUESTION]) == [0.0]


def test_query_reward_without_a_usable_question():
    assert query_reward(["<search>anything</search>", "no search"], question=["What is it?", None]) == [1.0, 0.0]
    assert query_reward(["<search>Kenya</search>"]) == [1.0]  # no question column: any query is about it
    assert get_reward_functions(["query"]) == [query_reward]
