"""The rollout loop with a scripted policy and an in-memory search service: ids, masks, turns, failures."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from zerosearch_trainer.data import build_prompt
from zerosearch_trainer.rollout import (
    INVALID_ACTION_MESSAGE,
    GenerationResult,
    RolloutSettings,
    SearchOutcome,
    SearchRollout,
    parse_action,
)


@pytest.mark.parametrize("text, expected", [
    ("<think>x</think><search> capital of France </search>", ("search", "capital of France")),
    ("<answer> Paris </answer>", ("answer", "Paris")),
    ("<search>a</search>\n<answer>b</answer>", ("search", "a")),
    ("<answer>b</answer><search>a</search>", ("answer", "b")),
    ("<search>  </search>", (None, "")),
    ("just text", (None, "")),
    ("<search>q</search>\n", ("search", "q")),  # a closing token that carries a newline
])
def test_parse_action(text, expected):
    assert parse_action(text) == expected


class ScriptedGenerator:
    """Replays one scripted text per trajectory per turn (keyed by the trajectory's prompt)."""

    def __init__(self, tokenizer, scripts: dict[str, list[str]], eos_on: tuple[str, ...] = ()) -> None:
        self.tokenizer = tokenizer
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.eos_on = eos_on
        self.calls: list[int] = []

    def generate(self, contexts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[GenerationResult]:
        self.calls.append(len(contexts))
        results = []
        for ctx, limit in zip(contexts, max_new_tokens, strict=True):
            text = self.tokenizer.decode(list(ctx))
            key = next(k for k in self.scripts if k in text)
            piece = self.scripts[key].pop(0) if self.scripts[key] else "<answer>x</answer>"
            ids = self.tokenizer(piece, add_special_tokens=False)["input_ids"]
            eos = piece in self.eos_on
            if eos:
                ids = ids + [self.tokenizer.eos_token_id]
            ids = ids[:limit]
            results.append(GenerationResult(ids, [-0.5] * len(ids), eos and len(ids) <= limit))
        return results


class FakeSearch:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[dict]] = []
        self.fail = fail

    def search_batch(self, requests):
        self.batches.append(list(requests))
        if self.fail:
            return [SearchOutcome(None, "the search service is unavailable") for _ in requests]
        return [SearchOutcome(f"Doc 1: about {r['query']}", None, False, 1.0) for r in requests]


def _run(tokenizer, scripts, *, settings=None, search=None, eos_on=(), **kwargs):
    search = search or FakeSearch()
    rollout = SearchRollout(tokenizer, search, settings or RolloutSettings(max_turns=3, max_completion_length=400))
    generator = ScriptedGenerator(tokenizer, scripts, eos_on)
    questions = list(scripts)
    prompts = [build_prompt(q) for q in questions]
    records = [{"question": q, "golden_answers": ["gold " + q], "uid": f"u{i}"} for i, q in enumerate(questions)]
    kwargs.setdefault("noise", 0.25) if "send_step" not in kwargs and "step" not in kwargs else None
    return rollout.run(generator, prompts, records, **kwargs), search, generator


def _masked_runs(ids, mask):
    runs, current = [], []
    for token, m in zip(ids, mask, strict=True):
        if m == 0:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def test_search_then_answer_masks_exactly_the_information(tokenizer):
    batch, search, generator = _run(tokenizer, {
        "Who wrote Hamlet": ["<think>hmm</think>\n<search> Hamlet author </search>", "<answer> Shakespeare </answer>"],
        "capital of Peru": ["<answer> Lima </answer>"],
    })
    hamlet, peru = batch.trajectories
    assert (hamlet.searches, hamlet.turns, hamlet.answered) == (1, 2, True)
    assert (peru.searches, peru.turns, peru.answered) == (0, 1, True)
    # one batch call for the turn with a search, holding the question, the answers, a seed and the noise
    assert len(search.batches) == 1 and len(search.batches[0]) == 1
    request = search.batches[0][0]
    assert request["query"] == "Hamlet author" and request["question"] == "Who wrote Hamlet"
    assert request["answers"] == ["gold Who wrote Hamlet"] and request["noise"] == 0.25 and "seed" in request
    for t in batch.trajectories:
        assert len(t.completion_ids) == len(t.env_mask) == len(t.logprobs)
    runs = _masked_runs(hamlet.completion_ids, hamlet.env_mask)
    assert tokenizer.decode(runs[0]) == "\n\n<information>Doc 1: about Hamlet author</information>\n\n"
    assert runs[1] == [tokenizer.eos_token_id]  # the masked EOS after </answer>
    model_text = tokenizer.decode([t for t, m in zip(hamlet.completion_ids, hamlet.env_mask, strict=True) if m])
    assert model_text == "<think>hmm</think>\n<search> Hamlet author </search><answer> Shakespeare </answer>"
    # the whole completion decodes to the concatenation of its segments
    assert tokenizer.decode(hamlet.completion_ids[:-1]) == "".join(text for _, text in hamlet.segments)
    assert all(lp == 0.0 for lp, m in zip(hamlet.logprobs, hamlet.env_mask, strict=True) if m == 0)
    assert batch.metrics()["search/searches_per_trajectory"] == 0.5


def test_masking_off_trains_on_the_information_but_not_on_other_inserted_text(tokenizer):
    scripts = {"Who wrote Hamlet": ["<search> Hamlet author </search>", "rambling", "<answer> Shakespeare </answer>"]}
    batch, _, _ = _run(tokenizer, scripts, eos_on=("rambling",),
                       settings=RolloutSettings(max_turns=3, max_completion_length=400, mask_information=False))
    (t,) = batch.trajectories
    assert t.searches == 1 and t.invalid_actions == 1 and t.answered
    runs = _masked_runs(t.completion_ids, t.env_mask)
    # only the invalid-action message and the closing EOS stay masked; the documents are now trained on
    assert [tokenizer.decode(r) for r in runs] == [f"\n{INVALID_ACTION_MESSAGE}\n", tokenizer.eos_token]
    info = tokenizer("\n\n<information>Doc 1: about Hamlet author</information>\n\n",
                     add_special_tokens=False)["input_ids"]
    start = next(i for i in range(len(t.completion_ids)) if t.completion_ids[i:i + len(info)] == info)
    assert all(m == 1 for m in t.env_mask[start:start + len(info)])
    # the policy did not sample them: NaN sampling log-probs (TRL's importance ratio 1), not a fake 0.0
    assert all(lp != lp for lp in t.logprobs[start:start + len(info)])


def test_max_turns_then_a_final_answer_turn(tokenizer):
    batch, search, generator = _run(
        tokenizer, {"loop question": ["<search> a </search>", "<search> b </search>", "<search> c </search>"]},
        settings=RolloutSettings(max_turns=2, max_completion_length=400))
    (t,) = batch.trajectories
    assert t.searches == 2 and t.turns == 3  # two searches, then the final turn's search is not run
    assert len(search.batches) == 2 and not t.answered
    assert generator.calls == [1, 1, 1]


def test_invalid_action_message_is_inserted_and_masked(tokenizer):
    batch, _, _ = _run(tokenizer, {"odd question": ["I will just talk.", "<answer> x </answer>"]},
                       eos_on=("I will just talk.",))
    (t,) = batch.trajectories
    assert t.invalid_actions == 1 and t.answered
    runs = _masked_runs(t.completion_ids, t.env_mask)
    assert tokenizer.decode(runs[0]) == f"\n{INVALID_ACTION_MESSAGE}\n"
    # the EOS the model wrote before the invalid-action message is not kept mid-sequence
    assert tokenizer.eos_token_id not in t.completion_ids[:-1]


def test_failed_search_becomes_an_information_message(tokenizer):
    batch, _, _ = _run(tokenizer, {"q1": ["<search> x </search>", "<answer> y </answer>"]},
                       search=FakeSearch(fail=True))
    (t,) = batch.trajectories
    assert t.failed_searches == 1 and t.answered
    text = tokenizer.decode(_masked_runs(t.completion_ids, t.env_mask)[0])
    assert text.startswith("\n\n<information>The search engine failed") and text.endswith("</information>\n\n")
    assert batch.metrics()["search/failed_searches"] == 1


def test_budget_counts_environment_tokens(tokenizer):
    settings = RolloutSettings(max_turns=5, max_completion_length=40, max_tokens_per_turn=30)
    batch, _, _ = _run(tokenizer, {"long": ["<search> a </search>"] * 5}, settings=settings)
    (t,) = batch.trajectories
    assert len(t.completion_ids) <= 40 and t.truncated


def test_information_is_capped(tokenizer):
    settings = RolloutSettings(max_turns=1, max_completion_length=400, max_information_tokens=5)
    rollout = SearchRollout(tokenizer, FakeSearch(), settings)
    ids, text = rollout.information_ids("word " * 100)
    assert text.startswith("\n\n<information>") and text.endswith("</information>\n\n")
    assert len(ids) == 5 + len(rollout.encode("\n\n<information>")) + len(rollout.encode("</information>\n\n"))


def test_step_mode_and_server_mode(tokenizer):
    _, search, _ = _run(tokenizer, {"q": ["<search> a </search>", "<answer>b</answer>"]}, step=7, send_step=True)
    assert search.batches[0][0]["step"] == 7 and "noise" not in search.batches[0][0]
    _, search, _ = _run(tokenizer, {"q": ["<search> a </search>", "<answer>b</answer>"]}, step=7)
    assert "step" not in search.batches[0][0] and "noise" not in search.batches[0][0]
