"""One rollout against `zerosearch serve` with the real bundled SmolLM2 simulator (transformers backend)."""

from __future__ import annotations

import pytest

from tests.integration.trainer.conftest import Simulator
from tests.integration.trainer.test_rollout_http import PrefixPolicy, _check_alignment, _records
from zerosearch_trainer.data import build_prompt
from zerosearch_trainer.rollout import RolloutSettings, SearchRollout, SearchService

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_simulator():
    server = Simulator(backend="transformers", ZS_MAX_NEW_TOKENS="48", ZS_MAX_BATCH="4", ZS_MAX_WAIT_MS="100",
                       ZS_TIMEOUT_S="300", OMP_NUM_THREADS="1")
    yield server
    server.stop()


def test_rollout_with_model_written_documents(model_simulator: Simulator, policy):
    _, tokenizer = policy
    questions = ["What is the capital of France?", "Who wrote Hamlet?"]
    with SearchService(model_simulator.url, retries=1, timeout_s=300) as service:
        rollout = SearchRollout(tokenizer, service, RolloutSettings(max_turns=2, max_completion_length=400,
                                                                    max_tokens_per_turn=32, top_k=2))
        batch = rollout.run(PrefixPolicy(tokenizer, ["<search> capital of France </search>",
                                                     "<answer> Paris </answer>"]),
                            [build_prompt(q) for q in questions], _records(questions), step=3, noise=0.0)
    assert batch.search_calls == 1
    for t in batch.trajectories:
        assert t.searches == 1 and t.failed_searches == 0 and t.answered
        (info,) = [text for kind, text in t.segments if kind == "information"]
        assert info.startswith("\n\n<information>Doc 1: ") and "scripted" not in info
    _check_alignment(tokenizer, batch)
