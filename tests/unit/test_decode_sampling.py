"""The decode loop's rules: which next tokens would repeat a span of the reply, and when a reply may end."""

from __future__ import annotations

import pytest

from zerosearch_simulator.backends.continuous import may_end, repeating_tokens


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
