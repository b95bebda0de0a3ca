"""The noise curriculum: the probability that a search returns noisy documents.

ZeroSearch's schedule (arXiv 2505.04588, eq. 3): at step t of T,

    p(t) = p_start + (b^(t/T) - 1) / (b - 1) * (p_end - p_start),   b = 4 by default,

rising slowly at first and faster near the end; p_end once t >= T. This is the only
copy of the formula in the project.
"""

from __future__ import annotations

import hashlib

DEFAULT_BASE = 4.0


def noise_probability(step: int, total_steps: int, start: float = 0.0, end: float = 0.5,
                      base: float = DEFAULT_BASE) -> float:
    """Probability that a search at `step` (of `total_steps`) returns noisy documents."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if base <= 0 or base == 1:
        raise ValueError(f"base must be > 0 and != 1, got {base}")
    fraction = min(step / total_steps, 1.0)
    return start + (base**fraction - 1.0) / (base - 1.0) * (end - start)


def seeded_uniform(*parts: object) -> float:
    """A uniform draw in [0, 1) fixed by its inputs (stable across processes and machines).

    Python's hash() is salted per process, so replicas would disagree; blake2b does not.
    """
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_noisy(noise: float, *, seed: int, query: str, step: int | None) -> bool:
    """The per-search decision: draw u ~ U(0,1) seeded by (seed, query, step, noise); noisy if u < noise."""
    return seeded_uniform(seed, query, step, round(noise, 12)) < noise
