"""bench/miniature.py refuses bad options in one line, before it starts a server or writes anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--references", "warmup,bogus", "unknown reference(s) ['bogus']"),
    ("--only", "zerosearch,nope", "unknown arm(s) ['nope']"),
])
def test_bad_choice_is_one_line_and_writes_nothing(tmp_path: Path, option: str, value: str, message: str):
    out = tmp_path / "mini"
    done = subprocess.run([sys.executable, "bench/miniature.py", "run", "--out", str(out), option, value],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_diagnostics_count_queries_off_the_question():
    from bench.miniature import diagnostics

    question = "What is the capital of Kenya?"
    rows = [{"question": question, "golden_answers": ["Nairobi"], "completion": completion} for completion in (
        "<search> capital of Kenya </search>\n\n<information>Doc 1: Nairobi</information>\n\n<answer>Nairobi</answer>",
        "<search> What I found. </search>\n\n<information>Doc 1: nothing</information>\n\n<answer>Kenya</answer>",
        "<answer>Mombasa</answer>",  # no search: not a query off the question
    )]
    found = diagnostics(rows)
    assert found["off_question_queries"] == pytest.approx(1 / 3)
    assert found["gold_in_documents"] == pytest.approx(1 / 3)
    assert found["answer_in_question"] == pytest.approx(1 / 3)
