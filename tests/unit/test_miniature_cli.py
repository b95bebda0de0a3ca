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
    from zerosearch_trainer.rollout import INVALID_ACTION_MESSAGE

    question = "What is the capital of Kenya?"
    rows = [{"question": question, "golden_answers": ["Nairobi"], "completion": completion} for completion in (
        "<search> capital of Kenya </search>\n\n<information>Doc 1: Nairobi</information>\n\n<answer>Nairobi</answer>",
        "<search> What I found. </search>\n\n<information>Doc 1: nothing</information>\n\n<answer>Kenya</answer>",
        "<answer>Mombasa</answer>",  # no search: not a query off the question
        # the invalid-action message names "<search> and </search>"; that is no search the policy made
        f"I will talk. {INVALID_ACTION_MESSAGE} <answer>Mombasa</answer>",
    )]
    found = diagnostics(rows)
    assert found["off_question_queries"] == pytest.approx(1 / 4)
    assert found["gold_in_documents"] == pytest.approx(1 / 4)
    assert found["answer_in_question"] == pytest.approx(1 / 4)


def test_paired_counts_and_exact_mcnemar():
    from bench.miniature import paired

    reference = {f"q{i}": 0.0 for i in range(100)}
    arm = dict(reference)
    for i in range(9):  # right where the reference was wrong
        arm[f"q{i}"] = 1.0
    for i in range(9, 9 + 14):  # the reverse
        reference[f"q{i}"] = 1.0
    result = paired(arm, reference)
    assert result == {"better": 9, "worse": 14, "em_change_points": -5.0, "p": 0.405}
    assert paired(reference, reference)["p"] == 1.0
    assert paired({"x": 1.0}, {"y": 0.0}) is None  # no question in common: nothing to pair


def test_training_figures_from_a_curve():
    from bench.miniature import training_figures

    points = [{"step": 1, "reward": 0.2, "frac_reward_zero_std": 1.0, "entropy": 0.1},
              {"step": 2, "reward": 0.4, "frac_reward_zero_std": 0.5, "entropy": 0.3},
              {"step": 3, "reward": 0.6, "frac_reward_zero_std": 0.0, "entropy": 0.2},
              {"step": 4, "reward": 0.8, "frac_reward_zero_std": 0.5, "entropy": 0.2}]
    figures = training_figures(points)
    assert figures["groups_with_variance"] == pytest.approx(0.5)
    assert figures["steps_with_gradient"] == 3 and figures["steps"] == 4
    assert figures["reward_halves"] == pytest.approx([0.3, 0.7])
    assert figures["entropy_range"] == [0.1, 0.3]


def test_rewards_are_the_f1_part_when_a_run_weights_shaping_terms():
    from bench.miniature import _reward_ratio, training_figures

    # a run with a query reward of weight 0.2: `reward` is F1 + 0.2 x query, so its ratio is not the task's
    points = [{"step": s, "reward": f1 + 0.2, "rewards/f1_reward/mean": f1, "rewards/query_reward/mean": 1.0}
              for s, f1 in enumerate([0.1, 0.1, 0.3, 0.3], start=1)]
    assert _reward_ratio(points) == pytest.approx(3.0)
    assert training_figures(points)["reward_halves"] == pytest.approx([0.1, 0.3])
    # runs logged before the parts were: the total reward stands in
    assert _reward_ratio([{"step": 1, "reward": 0.2}, {"step": 2, "reward": 0.4}]) == pytest.approx(2.0)


def test_plot_puts_several_runs_in_one_figure_and_refuses_other_files(tmp_path: Path):
    import json

    from typer.testing import CliRunner

    from bench.miniature import app

    committed = ROOT / "docs" / "data" / "miniature_run6_summary.json"
    guarded = json.loads(committed.read_text())
    for points in guarded["curves"].values():
        for p in points:
            p["rewards/query_reward/mean"] = 1.0
    second = tmp_path / "summary.json"
    second.write_text(json.dumps(guarded))
    figure = tmp_path / "all.png"
    runner = CliRunner()
    done = runner.invoke(app, ["plot", str(committed), str(second), "--label", "sixth run", "--label", "guard",
                               "--out", str(figure)])
    assert done.exit_code == 0, done.output
    assert figure.read_bytes().startswith(b"\x89PNG")

    (tmp_path / "eval.json").write_text(json.dumps({"results": []}))
    def error(args: list[str]) -> str:  # the message, unwrapped from its box
        done = runner.invoke(app, args)
        assert done.exit_code == 2
        return " ".join(done.output.replace("│", " ").split())

    assert "has no 'curves'" in error(["plot", str(tmp_path / "eval.json"), "--out", str(tmp_path / "x.png")])
    assert "2 labels for 1 summaries" in error(["plot", str(committed), "--label", "a", "--label", "b"])
    assert not (tmp_path / "x.png").exists()


def test_searched_the_question_tells_a_real_search_from_filler_and_an_unclosed_tag():
    from bench.miniature import searched_the_question

    question = "On what date did Kuwait gain independence?"
    assert searched_the_question({"question": question, "completion": "<search> Kuwait independence date </search>"})
    assert not searched_the_question({"question": question, "completion": "<search> What is it? </search>"})
    # the format a simulator-trained policy fell into: the tag never closes, so no search ran
    assert not searched_the_question({"question": question, "completion": f"<search> {question}\n<answer> 1990"})


def test_question_filter_keeps_what_the_warm_up_answers_and_refuses_an_empty_set(tmp_path: Path):
    """The filter reads the warm-up's evaluation on training questions, writes the answered ones as a train file
    the trainer loads, and says what to do when none is left; a rerun reuses the file."""
    import json

    from rich.progress import Progress

    from bench.miniature import Settings, arms, learnable_data, train_argv
    from zerosearch_trainer.data import load_records

    data = tmp_path / "data"
    data.mkdir()
    rows = [{"question": f"What is the capital of country {i}?", "golden_answers": [f"City {i}"],
             "data_source": "capitals"} for i in range(5)]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = load_records(str(data), split="train", max_samples=4)
    out = tmp_path / "mini"
    evaluation = out / "runs" / "warmup-train" / "eval.json"
    evaluation.parent.mkdir(parents=True)
    f1 = [0.0, 1.0, 0.4, 0.0]  # the first four screened: two answered, at least partly
    evaluation.write_text(json.dumps({"results": [{"uid": r.uid, "f1": v} for r, v in zip(records, f1,
                                                                                          strict=True)]}))
    s = Settings(out=out, data=data, steps=1, seeds=[0], ablation_seeds=[0], arms=["zerosearch"], train_questions=8,
                 test_questions=1, fixed_noise=0.5, threads=1, sim_backend=None, engine_backend="corpus",
                 warmup_examples=1, batch=2, group=2, learning_rate=1e-5, temperature=1.0, save_steps=1, eval_batch=1,
                 sim_max_new_tokens=8, sim_verify=False, parallel=1, redis_url="", learnable=4)

    with Progress() as progress:
        target = learnable_data(s, "http://127.0.0.1:9", progress)  # nothing listens there: no eval is run
    kept = load_records(str(target), split="train")
    argv = train_argv(s, arms(0.5)["zerosearch"], 0, out / "runs" / "zerosearch-seed0", "http://127.0.0.1:9")
    assert argv[argv.index("--dataset_name") + 1] == str(target)  # the arms train on the filtered questions
    assert [(r.question, r.golden_answers) for r in kept] == [(records[1].question, ("City 1",)),
                                                             (records[2].question, ("City 2",))]

    evaluation.write_text(json.dumps({"results": [{"uid": r.uid, "f1": 0.0} for r in records]}))
    with Progress() as progress:  # the file is there: reused, the new evaluation is not read
        assert load_records(str(learnable_data(s, "http://127.0.0.1:9", progress)), split="train") == kept
    (target / "train.jsonl").unlink()
    with Progress() as progress, pytest.raises(RuntimeError, match="answered none of the first 4"):
        learnable_data(s, "http://127.0.0.1:9", progress)
    assert not (target / "train.jsonl").exists()
