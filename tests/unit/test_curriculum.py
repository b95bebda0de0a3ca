import math

import pytest

from zerosearch_core.curriculum import is_noisy, noise_probability, seeded_uniform


def test_endpoints_and_monotonic():
    assert noise_probability(0, 200) == 0.0
    assert noise_probability(200, 200) == pytest.approx(0.5)
    values = [noise_probability(t, 200, 0.1, 0.7) for t in range(0, 201, 10)]
    assert values == sorted(values)
    assert values[0] == pytest.approx(0.1) and values[-1] == pytest.approx(0.7)


def test_paper_formula_midpoint_base_4():
    # p(T/2) = (4^0.5 - 1) / (4 - 1) * 0.5 = 1/6: the curve is convex (slow start).
    assert noise_probability(100, 200, 0.0, 0.5) == pytest.approx(1 / 6)
    assert noise_probability(50, 200, 0.0, 0.5, base=2.0) == pytest.approx((2**0.25 - 1) * 0.5)


def test_clamps_after_total_steps():
    assert noise_probability(10_000, 200, 0.0, 0.5) == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs", [dict(step=-1, total_steps=10), dict(step=1, total_steps=0),
                                    dict(step=1, total_steps=10, base=1.0)])
def test_rejects_impossible_schedules(kwargs):
    with pytest.raises(ValueError):
        noise_probability(**kwargs)


def test_seeded_draw_is_stable_and_uniform():
    assert seeded_uniform(1, "q", 3) == seeded_uniform(1, "q", 3)
    assert seeded_uniform(1, "q", 3) != seeded_uniform(2, "q", 3)
    draws = [seeded_uniform(0, f"query {i}", None) for i in range(4000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert math.isclose(sum(draws) / len(draws), 0.5, abs_tol=0.03)


def test_noise_decision_extremes_and_rate():
    assert not any(is_noisy(0.0, seed=s, query="q", step=1) for s in range(200))
    assert all(is_noisy(1.0, seed=s, query="q", step=1) for s in range(200))
    rate = sum(is_noisy(0.3, seed=s, query="q", step=5) for s in range(4000)) / 4000
    assert abs(rate - 0.3) < 0.03
