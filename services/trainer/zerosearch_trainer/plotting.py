"""A PNG of the training curves, from the trainer's `log_history` (what `trainer_state.json` holds)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CURVES", "plot_training_curves"]

# (panel title, metric keys drawn in it)
CURVES: list[tuple[str, list[str]]] = [
    ("reward", ["reward", "rewards/f1_reward/mean", "rewards/format_reward/mean"]),
    ("EM / sub-EM", ["rewards/em_reward/mean", "rewards/sub_em_reward/mean"]),
    ("searches per trajectory", ["search/searches_per_trajectory"]),
    ("turns / invalid actions", ["rollout/turns", "rollout/invalid_actions"]),
    ("curriculum noise", ["curriculum/noise"]),
    ("search latency (s per batch call)", ["search/latency_s"]),
    ("failed searches", ["search/failed_searches"]),
    ("loss / KL", ["loss", "kl"]),
]


def plot_training_curves(log_history: Sequence[Mapping[str, Any]], path: str | Path, *,
                         curves: Sequence[tuple[str, list[str]]] | None = None) -> Path:
    """One panel per (title, metric keys) of `curves` (default: the RL run's `CURVES`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    curves = CURVES if curves is None else list(curves)
    cols = min(4, len(curves))
    rows = math.ceil(len(curves) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (title, keys) in zip(axes.flat, curves, strict=False):
        drawn = False
        for key in keys:
            points = [(e["step"], e[key]) for e in log_history
                      if key in e and "step" in e and isinstance(e[key], int | float)]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, label=key.split("/")[-2] if key.count("/") > 1 else key)
                drawn = True
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, fontsize=8)
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
