"""tune-sim's SFT data: document fitting, labels, noisy near misses, balance, split, importers and their bad input."""

from __future__ import annotations

import json

import pytest

from zerosearch_core.simulator_prompt import build_messages
from zerosearch_trainer import sim_data
from zerosearch_trainer.sim_data import SearchSet, SFTDataError

LONG = ("name: Nairobi; geographic coordinates: 1 17 S, 36 49 E; time difference: UTC+3 (8 hours ahead of "
        "Washington, DC, during Standard Time); etymology: the name derives from the Maasai expression meaning "
        "cool waters, a reference to a cold water stream that flowed through the area.")


def _hits(prefix: str, n: int, extra: str = "") -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix} {i}", f"{prefix} passage number {i} tells about many things {extra} "
                  "with enough words to be kept as a document of a result set here.") for i in range(n))


def _set(item: str, kind: str, answer: str, hits) -> SearchSet:
    return SearchSet(query=f"capital of {item}", question=f"What is the capital of {item}?", answers=(answer,),
                     hits=tuple(hits), item_id=item, kind=kind)


def test_fit_words_trims_to_the_range_and_keeps_the_answer():
    out = sim_data.fit_words("Kenya - Capital", LONG, answers=["Nairobi"])
    assert out is not None and 20 <= len(out.split()) <= 46 and "Nairobi" in out
    assert sim_data.fit_words("t", "too short to keep") is None
    short = sim_data.fit_words("Kenya - Capital", "name: Nairobi; geographic coordinates: 1 17 S, 36 49 E; time "
                               "difference: UTC+3", answers=["Nairobi"])
    assert short is None or short.startswith("Kenya - Capital:")
    late = "Filler sentence one is here. " * 12 + "The capital is Nairobi."
    fitted = sim_data.fit_words("", late, answers=["Nairobi"])
    assert fitted is not None and "Nairobi" in fitted


def test_containment_labeller_uses_whole_normalised_words():
    labeller = sim_data.ContainmentLabeller()
    assert labeller.label("q", ["Nairobi"], "q", ["The capital is NAIROBI."]) == "useful"
    assert labeller.label("q", ["7"], "q", ["It happened in 1970."]) == "noisy"


def test_examples_are_the_simulators_exact_prompt_balanced_and_deduplicated():
    kenya = _set("Kenya", "capital", "Nairobi", [("Kenya - Capital", LONG), *_hits("Kenya", 6)])
    uganda = _set("Uganda", "capital", "Kampala", [("Uganda - Capital", LONG.replace("Nairobi", "Kampala")),
                                                   *_hits("Uganda", 6)])
    examples = sim_data.build_examples([kenya, uganda, kenya], k=5, seed=0)
    useful = [e for e in examples if e["label"] == "useful"]
    noisy = [e for e in examples if e["label"] == "noisy"]
    assert useful and noisy
    for example in examples:
        question, answers = example["prompt"][1]["content"].split('"')[1], None
        assert example["prompt"] == [dict(m) for m in build_messages(
            "sft", label=example["label"], query=kenya.query if "Kenya" in question else uganda.query,
            question=question, answers=[("Nairobi" if "Kenya" in question else "Kampala")], k=5)]
        lines = example["completion"][0]["content"].splitlines()
        assert [line.split(":")[0] for line in lines] == [f"Doc {i}" for i in range(1, 6)]
        assert all(20 <= len(line.split(": ", 1)[1].split()) <= 47 for line in lines), answers
    first = useful[0]["completion"][0]["content"]
    assert first.startswith("Doc 1:") and ("Nairobi" in first.splitlines()[0] or "Kampala" in first.splitlines()[0])
    for example in noisy:
        answer = "Nairobi" if "Kenya" in example["prompt"][1]["content"] else "Kampala"
        assert answer not in example["completion"][0]["content"]
    assert len({json.dumps(e["prompt"]) for e in examples}) == len(examples)  # the repeated Kenya set is dropped
    balanced = sim_data.balance(examples, seed=0)
    assert sum(e["label"] == "useful" for e in balanced) == sum(e["label"] == "noisy" for e in balanced)


def test_no_noisy_examples_is_an_error_saying_what_to_change():
    kenya = _set("Kenya", "capital", "Nairobi", [("Kenya - Capital", LONG), *_hits("Kenya", 6)])
    examples = [e for e in sim_data.build_examples([kenya], k=5) if e["label"] == "useful"]
    with pytest.raises(SFTDataError, match="balance cannot be built.*none noisy.*near-miss"):
        sim_data.balance(examples)
    with pytest.raises(SFTDataError, match="none useful.*engine can answer"):
        sim_data.balance([{**e, "label": "noisy"} for e in examples])


def test_split_keeps_an_items_examples_together():
    examples = [{"prompt": [{"role": "user", "content": f"{i}-{j}"}], "completion": [], "label": "useful",
                 "item_id": f"item{i}"} for i in range(20) for j in range(2)]
    train, dev = sim_data.split_examples(examples, dev_fraction=0.2, seed=0)
    assert len(dev) == 8 and len(train) == 32
    assert not {e["item_id"] for e in train} & {e["item_id"] for e in dev}


def test_item_queries_cover_rephrasings_and_the_hops():
    item = sim_data.QAItem(id="x", question="What is the capital of the country whose national anthem is "
                           '"Kimigayo"?', answers=("Tokyo",), kind="two_hop",
                           hops=(("Which country's national anthem is \"Kimigayo\"?", ("Japan",)),
                                 ("What is the capital of Japan?", ("Tokyo",))))
    queries = sim_data.item_queries(item)
    assert queries[0] == (item.question, item.question, ("Tokyo",))
    assert ('capital country national anthem "Kimigayo"', item.question, ("Tokyo",)) in queries
    assert ("capital Japan", "What is the capital of Japan?", ("Tokyo",)) in queries
    assert any(answers == ("Japan",) for _q, _question, answers in queries)


@pytest.mark.parametrize(("rows", "suffix"), [
    ([{"instruction": "You are the Google search engine. ... noisy documents", "input": "", "output": "Doc 1: x"}],
     ".json"),
    ([{"conversations": [{"from": "human", "value": "generate five useful documents"},
                         {"from": "gpt", "value": "Doc 1: y"}]}], ".jsonl"),
    ([{"prompt": "generate five useful documents", "completion": "Doc 1: z"}], ".jsonl"),
])
def test_released_data_formats_import_as_conversational_pairs(tmp_path, rows, suffix):
    path = tmp_path / f"released{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (example,) = sim_data.import_sft_file(path)
    assert example["prompt"][0] == {"role": "system", "content": ""}
    assert example["prompt"][-1]["role"] == "user" and example["completion"][0]["role"] == "assistant"
    assert example["label"] == ("noisy" if "noisy" in example["prompt"][-1]["content"] else "useful")


@pytest.mark.parametrize(("row", "message"), [
    ({"instruction": "x"}, "row 2: missing field 'output'"),
    ({"conversations": [{"from": "human"}]}, r"row 2: conversations\[0\]: missing field 'from'/'value'"),
    ({"prompt": "x"}, "row 2: missing field 'completion'"),
    ({"question": "x"}, "row 2: missing field 'instruction'/'output', 'conversations' or 'prompt'/'completion'"),
])
def test_a_malformed_sft_file_names_the_file_the_row_and_the_field(tmp_path, row, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "ok", "completion": "ok"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(SFTDataError, match=f"bad.jsonl: {message}"):
        sim_data.import_sft_file(path)


def test_a_qa_row_without_answers_is_named(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "q?", "golden_answers": ["a"]}) + "\n" + json.dumps({"question": "q"}))
    with pytest.raises(SFTDataError, match="qa.jsonl: row 2: missing field 'golden_answers'"):
        sim_data.load_qa_items(str(path))


def test_data_hash_changes_with_the_data():
    a = [{"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "assistant", "content": "b"}]}]
    b = [{"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "assistant", "content": "c"}]}]
    assert sim_data.data_hash(a) == sim_data.data_hash(list(a)) != sim_data.data_hash(b)
