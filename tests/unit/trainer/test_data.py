"""Loading the Search-R1 / ZeroSearch schema and plain QA JSONL; the policy prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zerosearch_trainer.data import (
    PAPER_TEMPLATE,
    DataError,
    build_prompt,
    load_records,
    paper_prompt,
    records_to_dataset,
)

DATA = Path(__file__).resolve().parents[3] / "data"


def test_paper_prompt_appends_question_mark_and_strips():
    text = paper_prompt("  who wrote hamlet ")
    assert text.endswith("Question: who wrote hamlet?")
    assert text.startswith("Answer the given question. You must conduct reasoning inside <think>")
    assert paper_prompt("Who?").endswith("Question: Who?")
    assert PAPER_TEMPLATE.count("{question}") == 1


def test_build_prompt_chat_and_plain():
    assert build_prompt("q", chat=True) == [{"role": "user", "content": paper_prompt("q")}]
    assert build_prompt("q", chat=False) == paper_prompt("q")


@pytest.mark.parametrize("name", ["sample_train.jsonl", "sample_train.parquet"])
def test_shipped_samples_load_in_both_formats(name):
    records = load_records(str(DATA / name))
    assert len(records) >= 200
    assert all(r.question and r.golden_answers for r in records)
    assert len({r.uid for r in records}) == len(records)


def test_jsonl_and_parquet_agree():
    a = load_records(str(DATA / "sample_test.jsonl"))
    b = load_records(str(DATA / "sample_test.parquet"))
    assert a == b


def test_plain_schema_and_max_samples():
    records = load_records(str(DATA / "sample_plain.jsonl"), max_samples=3)
    assert len(records) == 3
    assert records[0].data_source == "sample_plain"


def test_searchr1_record_without_question_column(tmp_path):
    row = {"data_source": "nq", "prompt": [{"role": "user", "content": paper_prompt("who wrote hamlet")}],
           "reward_model": {"style": "rule", "ground_truth": {"target": ["Shakespeare"]}},
           "extra_info": {"split": "train", "index": 7}}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (record,) = load_records(str(path))
    assert record.question == "who wrote hamlet?"
    assert record.golden_answers == ("Shakespeare",)
    assert record.uid == "nq/train/7"


def test_group_ids_are_unique_across_sources_and_duplicates(tmp_path):
    rows = [{"data_source": src, "question": "q", "golden_answers": ["a"], "extra_info": {"index": 0}}
            for src in ("nq", "hotpotqa", "nq")]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    uids = [r.uid for r in load_records(str(path))]
    assert len(set(uids)) == 3


def test_directory_with_split_files(tmp_path):
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "q", "golden_answers": "a"}) + "\n")
    (record,) = load_records(str(tmp_path), split="test")
    assert record.golden_answers == ("a",)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such dataset file"):
        load_records(str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="no such dataset file"):
        load_records("./missing/dir")


@pytest.mark.parametrize("line, message", [
    ("{not json", "invalid JSON"),
    ('{"golden_answers": ["a"]}', "no question"),
    ('{"question": "q", "golden_answers": []}', "no golden answers"),
    ('{"question": "q"}', "no golden answers"),
    ("[1, 2]", "JSON object"),
])
def test_malformed_records(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "ok", "golden_answers": ["a"]}\n' + line + "\n")
    with pytest.raises(DataError, match=message) as info:
        load_records(str(path))
    assert str(path) in str(info.value)


def test_records_to_dataset_columns():
    records = load_records(str(DATA / "sample_test.jsonl"), max_samples=4)
    ds = records_to_dataset(records, chat=True)
    assert set(ds.column_names) == {"prompt", "question", "golden_answers", "data_source", "uid"}
    assert ds[0]["prompt"][0]["role"] == "user"
    assert ds[0]["golden_answers"] == list(records[0].golden_answers)
