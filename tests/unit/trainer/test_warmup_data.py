"""Warm-up trajectories: the protocol with the golden answer, <information> masked from the SFT loss."""

from __future__ import annotations

import re

from zerosearch_trainer.data import QARecord, build_prompt
from zerosearch_trainer.rollout import SearchOutcome, SearchRollout
from zerosearch_trainer.warmup import SEARCH_CHUNK, build_examples


class FakeSearch:
    def __init__(self):
        self.calls = 0

    def search_batch(self, requests):
        self.calls += 1
        return [SearchOutcome(f"Doc 1: about {r['query']}") for r in requests]


def test_examples_follow_the_protocol_and_mask_information(tokenizer):
    records = [QARecord("What is the capital of Peru?", ("Lima",), "s", "s/0"),
               QARecord("Who wrote Hamlet?", ("William Shakespeare",), "s", "s/1")]
    search = FakeSearch()
    examples = build_examples(records, tokenizer, search, num_examples=4, seed=0, top_k=2,
                              max_information_tokens=64, chat=True)
    assert len(examples) == 4 and search.calls == 1  # one batch call for a chunk's searches
    rollout = SearchRollout(tokenizer, search)
    for ex in examples:
        ids, labels = ex["input_ids"], ex["labels"]
        assert len(ids) == len(labels)
        trained = tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab != -100])
        ignored = tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab == -100])
        assert trained.startswith("<think>") and "<search>" in trained and "</answer>" in trained
        assert trained.endswith(tokenizer.eos_token)
        assert "<information>" not in trained and "Doc 1:" not in trained
        assert "<information>Doc 1: about" in ignored
        question = "What is the capital of Peru?" if "Peru" in ignored else "Who wrote Hamlet?"
        prompt_ids = rollout.prompt_ids(build_prompt(question))
        assert ids[: len(prompt_ids)] == prompt_ids  # the same prompt ids as the RL rollout
        answer = "Lima" if "Peru" in question else "William Shakespeare"
        assert f"<answer> {answer} </answer>" in trained


def test_searches_go_in_chunks_and_keep_their_order(tokenizer):
    records = [QARecord(f"What is the capital of country {i}?", (f"City {i}",), "s", f"s/{i}") for i in range(5)]
    search = FakeSearch()
    n = SEARCH_CHUNK + 3
    examples = build_examples(records, tokenizer, search, num_examples=n, seed=0, top_k=1,
                              max_information_tokens=64, chat=True)
    assert len(examples) == n and search.calls == 2
    for ex in examples:  # each trajectory reads the documents of its own question's search
        text = tokenizer.decode(ex["input_ids"])
        asked = re.search(r"Question: What is the capital of country (\d+)", text).group(1)
        information = text.rsplit("<information>", 1)[1].split("</information>", 1)[0]  # the prompt names the tag
        assert re.findall(r"country (\d+)", information) == [asked]
