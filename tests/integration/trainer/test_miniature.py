"""bench/miniature.py end to end: one GRPO step per arm on a few questions, every arm and reference evaluated
against the real corpus engine over HTTP, the report written; a rerun skips what is finished."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(2400),  # a dozen subprocesses, each loading torch: many minutes on a busy 2-core machine
    pytest.mark.skipif(importlib.util.find_spec("zerosearch_simulator.backends.corpus") is None,
                       reason="the corpus engine (zerosearch serve --backend corpus) is not installed"),
]


def _run(out: Path, data: Path, doc: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, "bench/miniature.py", "run", "--out", str(out), "--data", str(data), "--doc", str(doc),
            "--steps", "1", "--seeds", "0", "--ablation-seeds", "0", "--train-questions", "4",
            "--test-questions", "3", "--warmup-examples", "4", "--batch", "2", "--group", "2", "--eval-batch", "3",
            "--max-turns", "1", "--max-tokens-per-turn", "16", "--max-completion-length", "96", "--top-k", "1",
            "--save-steps", "1", "--sim-backend", "scripted", "--redis-url", "", "--parallel", "3"]
    env = os.environ | {"ZS_REDIS_URL": ""}
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False)


def test_miniature_one_step_per_arm_then_resume(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(REPO / "data/sample_train.jsonl", data / "train.jsonl")
    shutil.copy(REPO / "data/sample_test.jsonl", data / "test.jsonl")
    out, doc = tmp_path / "mini", tmp_path / "results.md"
    doc.write_text("# Results\n\n<!-- miniature:table:begin -->\nSTALE TABLE\n<!-- miniature:table:end -->\n\nprose\n")

    done = _run(out, data, doc)
    assert done.returncode == 0, done.stderr[-4000:]

    runs = {p.parent.name: json.loads(p.read_text()) for p in (out / "runs").glob("*/arm.json")}
    trained = {"zerosearch-seed0", "real-search-seed0", "fixed-noise-seed0", "no-masking-seed0"}
    assert set(runs) == trained | {"warmup", "direct"}
    for name, record in runs.items():
        assert record["eval"]["n"] == 3, name
        assert record["models"]["engine"] != "scripted"  # the real engine answered the evaluation
        assert record["models"]["simulator"] == "scripted"
        assert record["models"]["simulator_verification"] == "off in GRPO, on in the warm-up"  # the default
        assert "zerosearch eval" in record["eval_command"]
    for name in trained:
        (point,) = runs[name]["curve"]
        assert point["step"] == 1 and "reward" in point
        assert "zerosearch train" in runs[name]["train_command"]
    # the curriculum starts at 0, the ablation holds its fixed level; masking is switched off only in (d)
    assert runs["zerosearch-seed0"]["curve"][0]["curriculum/noise"] == 0.0
    assert runs["fixed-noise-seed0"]["curve"][0]["curriculum/noise"] == 0.5
    assert "--mask_information false" in runs["no-masking-seed0"]["train_command"]
    assert "--mask_information" not in runs["zerosearch-seed0"]["train_command"]
    assert runs["real-search-seed0"]["trained_against"] == "corpus"
    assert {runs[n]["trained_against"] for n in trained - {"real-search-seed0"}} == {"simulator"}
    assert runs["direct"]["eval_command"].count("--max_turns 0") == 1

    summary = json.loads((out / "summary.json").read_text())
    assert [r["arm"] for r in summary["rows"]] == ["zerosearch", "real-search", "fixed-noise", "no-masking",
                                                   "warmup", "direct"]
    for row in summary["rows"]:  # each trained arm is paired with the warm-up policy on the same questions
        if row["arm"] in ("warmup", "direct"):
            continue
        (pair,) = row["paired_vs_warmup"]
        assert pair["better"] + pair["worse"] <= 3 and 0.0 <= pair["p"] <= 1.0
        # split by whether the arm searched the question: the two parts add up to the whole
        parts = [row["paired_vs_warmup_searched"][0], row["paired_vs_warmup_not_searched"][0]]
        for side in ("better", "worse"):
            assert sum(part[side] for part in parts if part) == pair[side]
        assert row["training"][0]["steps"] == 1
    assert "McNemar p" in doc.read_text()
    assert (out / "reward_curves.png").stat().st_size > 5000
    text = doc.read_text()
    assert "STALE TABLE" not in text and "| (a) simulator, curriculum" in text and text.endswith("prose\n")

    # a rerun finds everything finished: no training or evaluation runs again
    logs = {p: p.read_text() for p in (out / "runs").glob("*/*.log")}
    again = _run(out, data, doc)
    assert again.returncode == 0, again.stderr[-4000:]
    assert {p: p.read_text() for p in logs} == logs
