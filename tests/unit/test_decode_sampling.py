"""The decode loop's repeat ban: which next tokens would repeat a span of the reply."""

from __future__ import annotations

import pytest

from zerosearch_simulator.backends.continuous import repeating_tokens


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
