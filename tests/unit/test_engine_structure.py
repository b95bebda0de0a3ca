"""Structure enforcement (continuing a reply that stops before k documents) and label verification, with the
scripted backend's misbehaviour directives (`[short N]`, `[leak]`, `[hide N]`)."""

import httpx
import pytest

from zerosearch_simulator import Settings, create_app
from zerosearch_simulator.backends.scripted import ScriptedBackend


@pytest.fixture
def serve():
    """serve(**settings) -> an async context yielding (client, backend, app)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def start(backend=None, **settings):
        backend = backend or ScriptedBackend()
        app = create_app(Settings(backend="scripted", **settings), backend=backend)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
                yield client, backend, app

    return start


def metric(app, name, **labels):
    return app.state.metrics.registry.get_sample_value(name, labels) or 0.0


async def search(client, **body):
    response = await client.post("/v1/search", json=body | {"cache": False})
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_reply_that_stops_early_is_continued_from_the_next_marker(serve):
    async with serve() as (client, backend, app):
        body = await search(client, query="capital of peru [short 2]", k=5, noise=0)
    assert len(body["documents"]) == 5 and not body["partial"]
    assert body["continued"] == 2 and len(backend.calls) == 3
    second = backend.calls[1].continuation
    assert second.startswith("Doc 1: Useful document 1") and second.endswith("\nDoc 3:")
    assert backend.calls[2].continuation.endswith("\nDoc 5:")
    assert [d["snippet"].split()[2] for d in body["documents"]] == ["1", "2", "3", "4", "5"]
    assert body["text"].count("Doc ") == 5
    assert metric(app, "zerosearch_continuations_total") == 2


async def test_each_missing_document_brings_its_own_share_of_the_budget(serve):
    # ZS_MAX_NEW_TOKENS=320: 64 tokens a document, whatever the first reply spent on its long documents.
    async with serve() as (client, backend, _):
        await search(client, query="capital of peru [short 2]", k=5, noise=0)
    assert [call.max_new_tokens for call in backend.calls] == [320, 64 * 3, 64]


async def test_a_set_is_partial_only_when_three_times_the_budget_cannot_hold_k(serve):
    # ZS_MAX_NEW_TOKENS=8: a 48-token reply, 144 tokens in all; scripted documents run to ~24 tokens each.
    async with serve(max_new_tokens=8) as (client, backend, _):
        body = await search(client, query="capital of peru [short 1]", k=8, noise=0)
    assert body["partial"] and 1 < len(body["documents"]) < 8 and body["continued"] == len(backend.calls) - 1
    assert sum(len(call.continuation) > 0 for call in backend.calls) == len(backend.calls) - 1


async def test_a_continuation_that_repeats_itself_is_followed_by_a_fresh_reply(serve):
    async with serve() as (client, backend, _):
        body = await search(client, query="capital of peru [short 2] [repeat]", k=5, noise=0)
    assert len(body["documents"]) == 5 and not body["partial"]
    kinds = ["fresh" if not call.continuation else "continued" for call in backend.calls]
    assert kinds[:3] == ["fresh", "continued", "fresh"]  # the continuation repeated document 2
    assert "continued" in kinds[3:]  # and continuing is tried again after the fresh reply
    assert len({d["snippet"] for d in body["documents"]}) == 5


async def test_a_reply_that_runs_past_k_is_cut_at_the_next_marker(serve):
    async with serve(ScriptedBackend(documents=9)) as (client, backend, _):
        body = await search(client, query="q", k=3, noise=0)
    assert len(body["documents"]) == 3 and body["continued"] == 0 and len(backend.calls) == 1
    assert backend.calls[0].stop == ("Doc 4:",)


async def test_a_useful_set_that_contains_the_answer_passes(serve):
    async with serve() as (client, backend, app):
        body = await search(client, query="who wrote hamlet", noise=0, answers=["William Shakespeare"])
    assert body["verification"] == "passed" and body["regenerated"] == 0 and len(backend.calls) == 1
    assert [d["has_answer"] for d in body["documents"]] == [True, False, False, False, False]
    assert metric(app, "zerosearch_label_checks_total", label="useful", result="passed") == 1


async def test_leaking_noisy_documents_are_regenerated_alone_without_the_answer(serve):
    async with serve() as (client, backend, app):
        body = await search(client, query="who wrote hamlet [leak]", noise=1, question="Who wrote Hamlet?",
                            answers=["Shakespeare"])
    assert body["noisy"] and body["verification"] == "repaired" and body["regenerated"] == 5
    assert [d["has_answer"] for d in body["documents"]] == [False] * 5
    assert len({d["snippet"] for d in body["documents"]}) == 5
    regenerations = backend.calls[1:]
    assert len(regenerations) == 5
    for call in regenerations:
        assert call.stop == ("Doc 2:",)  # one document
        prompt = call.messages[-1]["content"]
        assert "Shakespeare" not in prompt and "Who wrote Hamlet?" in prompt and "noisy documents" in prompt
    assert metric(app, "zerosearch_label_checks_total", label="noisy", result="repaired") == 1


async def test_a_useful_set_without_the_answer_regenerates_its_first_document(serve):
    async with serve() as (client, backend, _):
        body = await search(client, query="who wrote hamlet [hide 1]", noise=0, answers=["Shakespeare"])
    assert body["verification"] == "repaired" and body["regenerated"] == 1
    assert body["documents"][0]["has_answer"] and not any(d["has_answer"] for d in body["documents"][1:])
    assert "answer is Shakespeare" in backend.calls[1].messages[-1]["content"]


async def test_verification_that_keeps_failing_is_bounded_and_reported(serve):
    async with serve(label_retries=3, anchor_answers=False) as (client, backend, app):
        body = await search(client, query="who wrote hamlet [hide]", noise=0, answers=["Shakespeare"])
    assert body["verification"] == "failed" and body["regenerated"] == 3 and len(backend.calls) == 4
    assert len(body["documents"]) == 5  # the set is returned as written, and says it failed
    assert metric(app, "zerosearch_label_checks_total", label="useful", result="failed") == 1


async def test_the_last_regeneration_of_a_useful_document_starts_from_the_answer(serve):
    async with serve(label_retries=3) as (client, backend, app):
        body = await search(client, query="who wrote hamlet [hide]", noise=0, answers=["Shakespeare", "Bard"])
    assert body["verification"] == "anchored" and body["regenerated"] == 3 and len(backend.calls) == 4
    assert [call.continuation for call in backend.calls[1:]] == ["", "", "Doc 1: Shakespeare"]
    first = body["documents"][0]
    assert first["snippet"].startswith("Shakespeare Useful document") and first["has_answer"]
    assert not any(d["has_answer"] for d in body["documents"][1:])
    assert metric(app, "zerosearch_label_checks_total", label="useful", result="anchored") == 1


async def test_noisy_sets_are_never_anchored(serve):
    async with serve(label_retries=1) as (client, backend, _):
        body = await search(client, query="q [leak]", noise=1, answers=["x y"])
    assert body["verification"] == "repaired" and all(call.continuation == "" for call in backend.calls)


async def test_no_retries_allowed_fails_at_once(serve):
    async with serve(label_retries=0) as (client, backend, _):
        body = await search(client, query="q [leak]", noise=1, answers=["x y"])
    assert body["verification"] == "failed" and body["regenerated"] == 0 and len(backend.calls) == 1


async def test_verification_off_or_without_answers(serve):
    async with serve(verify_labels=False) as (client, backend, _):
        off = await search(client, query="q [leak]", noise=1, answers=["x y"])
    assert off["verification"] == "skipped" and off["regenerated"] == 0 and len(backend.calls) == 1
    assert all(d["has_answer"] for d in off["documents"])
    async with serve() as (client, _, _):
        none = await search(client, query="q [leak]", noise=1)
    assert none["verification"] is None and all(d["has_answer"] is None for d in none["documents"])


async def test_the_cached_value_is_the_verified_set(serve):
    async with serve() as (client, backend, _):
        body = {"query": "q [leak]", "noise": 1, "answers": ["Shakespeare"]}
        first = (await client.post("/v1/search", json=body)).json()
        again = (await client.post("/v1/search", json=body)).json()
    assert again["cached"] and again["documents"] == first["documents"]
    assert again["verification"] == "repaired" and not any(d["has_answer"] for d in again["documents"])
    assert len(backend.calls) == 6


async def test_an_anchored_document_the_model_leaves_empty_is_anchored_again_after_the_question(serve):
    from zerosearch_simulator.backends.base import Generation

    class StopsAtOnce(ScriptedBackend):
        """Ends the first anchored reply at once, as a model may do after a forced start."""

        stopped = False

        async def generate(self, request):
            if request.continuation.endswith("Shakespeare") and not self.stopped:
                self.stopped = True
                self.calls.append(request)
                return Generation(text="", completion_tokens=1)
            return await super().generate(request)

    async with serve(StopsAtOnce(), label_retries=1) as (client, backend, _):
        body = await search(client, query="who wrote hamlet [hide]", noise=0, answers=["Shakespeare"])
    assert [call.continuation for call in backend.calls[1:]] == [
        "Doc 1: Shakespeare", "Doc 1: who wrote hamlet [hide] - Shakespeare"]
    assert body["verification"] == "anchored" and body["documents"][0]["has_answer"]
