"""The decode loop's rules: which next tokens would repeat a span of the reply, when a reply may end, and when
the next document marker is written for the model."""

from __future__ import annotations

import pytest

from zerosearch_simulator.backends.continuous import marker_due, may_end, repeating_tokens


@pytest.mark.parametrize(("ids", "n", "banned"), [
    ([1, 2, 3, 1, 2], 3, [3]),  # 1 2 3 is written: after 1 2, 3 would repeat it
    ([1, 2, 3, 1, 2, 4, 1, 2], 3, [3, 4]),  # every token that followed the tail before
    ([1, 2, 3, 4], 3, []),  # the tail 3 4 has not been seen before
    ([1, 2], 3, []),  # too short to hold a span
    ([5, 6, 5], 1, [5, 6]),  # n = 1: no token twice
    ([1, 2, 1], 2, [2]),
    ([1, 2, 3, 1, 2], 0, []),  # off
])
def test_repeating_tokens(ids, n, banned):
    assert repeating_tokens(ids, n) == banned


@pytest.mark.parametrize(("reply", "allowed"), [
    ("Doc 1: a b c d e\nDoc 2: f g h i", False),  # the last marker not written yet
    ("Doc 1: a b c d e\nDoc 2: f g h i\nDoc 3:", False),  # written, but nothing after it
    ("Doc 1: a b c d e\nDoc 2: f g h i\nDoc 3: one two three", False),  # too few words to be a document
    ("Doc 1: a b c d e\nDoc 2: f g h i\nDoc 3: one two three four", True),
    ("Doc 3: one two three four\nDoc 3:", False),  # the words after the last occurrence count
])
def test_may_end_after_the_last_marker_and_its_words(reply, allowed):
    assert may_end(reply, "Doc 3:", 4) is allowed


MARKERS = ("Doc 1:", "Doc 2:", "Doc 3:")


@pytest.mark.parametrize(("reply", "left", "due"), [
    ("Doc 1: a b c d e f g h", 20, "Doc 2:"),  # 20 tokens left, 2 documents to come at 10 each: time to move on
    ("Doc 1: a b c d e f g h", 21, None),  # the budget still holds more than their reserve
    ("Doc 1: a b c d\nDoc 2: e f g h i", 10, "Doc 3:"),  # the second document, one to come
    ("Doc 1: a b c d\nDoc 2: e f g h i", 11, None),
    ("Doc 1: a b c d\nDoc 2: e f g", 1, None),  # the document being written is too short to end yet
    ("Doc 1: a b c d\nDoc 2: e f g h\nDoc 3: i j k l", 1, None),  # the last document: no marker after it
    ("An answer without markers", 1, None),  # the model has not started the form: nothing to continue
])
def test_marker_due_when_the_budget_left_is_the_reserve_of_the_documents_to_come(reply, left, due):
    assert marker_due(reply, MARKERS, left, 10, 4) == due
