"""The rollout loop against a real simulator over real HTTP, with the bundled SmolLM2 policy generating."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.integration.trainer.conftest import Simulator
from zerosearch_trainer.data import build_prompt
from zerosearch_trainer.rollout import (
    GenerationResult,
    HFGenerator,
    RolloutSettings,
    SearchRollout,
    SearchService,
)

QUESTIONS = ["What is the capital of France?", "Who wrote Hamlet?"]


def _records(questions):
    return [{"question": q, "golden_answers": ["Paris" if "France" in q else "Shakespeare"], "uid": f"t/{i}"}
            for i, q in enumerate(questions)]


class PrefixPolicy:
    """Wraps a real generator: on the turns listed, the text it returns starts with a scripted action instead.

    SmolLM2 never writes <search> on its own, so the protocol paths (search, answer, max_turns) are driven by
    scripted ids while the real model still generates the other turns and the shapes are real.
    """

    def __init__(self, tokenizer, actions: list[str | None], real=None) -> None:
        self.tokenizer = tokenizer
        self.actions = list(actions)
        self.real = real

    def generate(self, contexts: Sequence[Sequence[int]], max_new_tokens: Sequence[int]) -> list[GenerationResult]:
        action = self.actions.pop(0) if self.actions else "<answer> Paris </answer>"
        if action is None and self.real is not None:
            return self.real.generate(contexts, max_new_tokens)
        ids = self.tokenizer(action, add_special_tokens=False)["input_ids"]
        return [GenerationResult(ids[:m], [-1.0] * len(ids[:m]), False) for m in max_new_tokens]


def _check_alignment(tokenizer, batch):
    for t in batch.trajectories:
        assert len(t.completion_ids) == len(t.env_mask) == len(t.logprobs)
        inserted = [text for kind, text in t.segments if kind != "model"]
        masked_runs, current = [], []
        for token, m in zip(t.completion_ids, t.env_mask, strict=True):
            if m == 0:
                current.append(token)
            elif current:
                masked_runs.append(current)
                current = []
        if current:
            masked_runs.append(current)
        decoded = [tokenizer.decode(run) for run in masked_runs]
        eos_text = tokenizer.decode([tokenizer.eos_token_id])
        assert [d for d in decoded if d != eos_text] == inserted


@pytest.mark.slow
def test_real_model_rollout_over_http(simulator: Simulator, policy, one_thread):
    import torch

    model, tokenizer = policy
    torch.manual_seed(0)
    generation = model.generation_config
    generation.do_sample = True
    with SearchService(simulator.url, retries=0) as service:
        rollout = SearchRollout(tokenizer, service, RolloutSettings(max_turns=1, max_completion_length=64,
                                                                    max_tokens_per_turn=24, top_k=2))
        generator = HFGenerator(model, tokenizer, generation)
        prompts = [build_prompt(q) for q in QUESTIONS for _ in range(2)]
        records = [r for r in _records(QUESTIONS) for _ in range(2)]
        batch = rollout.run(generator, prompts, records, step=0, noise=0.0)
    assert len(batch.trajectories) == 4
    _check_alignment(tokenizer, batch)
    for t in batch.trajectories:
        assert 0 < len(t.completion_ids) <= 64
        assert 1 <= t.turns <= 2
        assert all(lp <= 0.0 for lp in t.logprobs)
        # the model's own tokens are exactly as sampled: they decode to the model segments
        model_ids = [tok for tok, m in zip(t.completion_ids, t.env_mask, strict=True) if m]
        assert tokenizer.decode(model_ids) == "".join(text for kind, text in t.segments if kind == "model")


def test_one_batch_call_per_turn_and_stop_at_answer(simulator: Simulator, policy):
    _, tokenizer = policy
    before = simulator.batch_requests()
    # turn 1: all four search; turn 2: all four search again; turn 3: answer
    actions = ["<think>t</think>\n<search> capital of France </search>", "<search> Hamlet author </search>",
               "<answer> Paris </answer>"]
    with SearchService(simulator.url, retries=0) as service:
        rollout = SearchRollout(tokenizer, service, RolloutSettings(max_turns=5, max_completion_length=600,
                                                                    max_tokens_per_turn=32, top_k=3))
        prompts = [build_prompt(q) for q in QUESTIONS for _ in range(2)]
        batch = rollout.run(PrefixPolicy(tokenizer, actions), prompts, [r for r in _records(QUESTIONS)
                                                                         for _ in range(2)], noise=0.0)
    assert simulator.batch_requests() - before == 2  # 8 searches, 2 turns, 2 HTTP requests
    assert batch.search_calls == 2
    for t in batch.trajectories:
        assert (t.searches, t.turns, t.answered, t.failed_searches) == (2, 3, True, 0)
        assert t.segments[-1] == ("model", "<answer> Paris </answer>")
        info = [text for kind, text in t.segments if kind == "information"]
        assert len(info) == 2 and all(text.startswith("\n\n<information>Doc 1: ") for text in info)
        assert all("scripted backend" in text for text in info)
    _check_alignment(tokenizer, batch)


def test_max_turns_is_honoured(simulator: Simulator, policy):
    _, tokenizer = policy
    before = simulator.batch_requests()
    with SearchService(simulator.url, retries=0) as service:
        rollout = SearchRollout(tokenizer, service, RolloutSettings(max_turns=2, max_completion_length=2000,
                                                                    max_tokens_per_turn=32, top_k=1))
        batch = rollout.run(PrefixPolicy(tokenizer, ["<search> a </search>"] * 10), [build_prompt(QUESTIONS[0])],
                            _records(QUESTIONS[:1]), noise=0.0)
    (t,) = batch.trajectories
    assert t.searches == 2 and t.turns == 3 and not t.answered
    assert simulator.batch_requests() - before == 2


def test_unreachable_simulator_gives_failed_searches_not_a_hang(policy):
    from tests.conftest import free_port

    _, tokenizer = policy
    url = f"http://127.0.0.1:{free_port()}"
    with SearchService(url, retries=1, backoff_s=0.01, timeout_s=2) as service:
        assert not service.healthy()
        rollout = SearchRollout(tokenizer, service, RolloutSettings(max_turns=1, max_completion_length=400))
        batch = rollout.run(PrefixPolicy(tokenizer, ["<search> a </search>", "<answer> b </answer>"]),
                            [build_prompt(QUESTIONS[0])], _records(QUESTIONS[:1]), noise=0.0)
    (t,) = batch.trajectories
    assert t.failed_searches == 1 and t.answered
    assert "The search engine failed" in [text for kind, text in t.segments if kind == "information"][0]


@pytest.mark.parametrize("mode", ["push"])
def test_curriculum_push_reaches_the_server(simulator: Simulator, mode):
    with SearchService(simulator.url) as service:
        state = service.set_curriculum(step=50, total_steps=100, start=0.0, end=0.5, base=4.0)
    from zerosearch_core.curriculum import noise_probability

    assert state.step == 50 and abs(state.noise - noise_probability(50, 100, 0.0, 0.5, 4.0)) < 1e-9


def test_failover_to_a_second_url(simulator: Simulator, policy):
    from tests.conftest import free_port

    _, tokenizer = policy
    urls = f"http://127.0.0.1:{free_port()},{simulator.url}"
    with SearchService(urls, retries=2, backoff_s=0.01, timeout_s=5) as service:
        rollout = SearchRollout(tokenizer, service, RolloutSettings(max_turns=1, max_completion_length=400))
        batch = rollout.run(PrefixPolicy(tokenizer, ["<search> a </search>", "<answer> b </answer>"]),
                            [build_prompt(QUESTIONS[0])], _records(QUESTIONS[:1]), noise=0.0)
    (t,) = batch.trajectories
    assert t.searches == 1 and t.failed_searches == 0


def test_turns_larger_than_the_api_limit_go_as_chunks(simulator: Simulator):
    from zerosearch_core.schemas import MAX_BATCH_REQUESTS

    requests = [{"query": f"q {i}", "k": 1, "noise": 0.0, "seed": i} for i in range(MAX_BATCH_REQUESTS + 20)]
    before = simulator.batch_requests()
    with SearchService(simulator.url) as service:
        outcomes = service.search_batch(requests)
        assert service.batch_calls == 2
    assert len(outcomes) == len(requests) and all(o.text for o in outcomes)
    assert outcomes[-1].text.startswith("Doc 1: ") and "q 531" in outcomes[-1].text
    assert simulator.batch_requests() - before == 2
