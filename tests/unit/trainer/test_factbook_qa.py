"""Factbook QA: field extractors on the real Factbook, aliases, unique bridges, entity splits, the schema of data/,
the answerable check against the real BM25 engine, bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zerosearch_core.factbook import load_entities
from zerosearch_core.scoring import normalize_answer
from zerosearch_trainer.data import load_records
from zerosearch_trainer.factbook_fields import KINDS, fold_accents, proper_name
from zerosearch_trainer.factbook_qa import (
    SPLITS,
    BuildOptions,
    FactbookQAError,
    build,
    candidate_questions,
    corpus_search_batch,
    is_answerable,
    parse_kinds,
)

DATA = Path(__file__).resolve().parents[3] / "data"


@pytest.fixture(scope="module")
def entities():
    return {e.code: e for e in load_entities()}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("index-cache")


@pytest.fixture(scope="module")
def search(cache_dir):
    """The real engine: bm25s over the Factbook passages, as `zerosearch serve --backend corpus` serves them.

    Results are remembered per query, so the several builds below search each question once."""
    engine = corpus_search_batch(str(cache_dir))
    seen: dict[str, list] = {}

    def remembered(queries: list[str], k: int) -> list[list]:
        assert k == 5
        missing = [q for q in queries if q not in seen]
        if missing:
            seen.update(zip(missing, engine(missing, k), strict=True))
        return [seen[q] for q in queries]

    return remembered


@pytest.fixture(scope="module")
def built(tmp_path_factory, search):
    """The default build, into an output folder that does not exist yet (two levels deep)."""
    out = tmp_path_factory.mktemp("factbook-qa") / "new" / "splits"
    stats = build(BuildOptions(out=out, progress=False), search_batch=search)
    rows = {s: [json.loads(line) for line in (out / f"{s}.jsonl").read_text().splitlines()] for s in SPLITS}
    return out, stats, rows


def fact(entities, code, kind):
    return KINDS[kind].extract(entities[code].fields)


# ---- extractors and aliases ------------------------------------------------------------------------------


def test_extractors_on_kenya(entities):
    assert fact(entities, "ke", "capital").answer == "Nairobi"
    currency = fact(entities, "ke", "currency")
    assert currency.answer == "Kenyan shillings"
    assert {"Kenyan shilling", "KES"} <= set(currency.aliases)
    highest = fact(entities, "ke", "highest_point")
    assert highest.answer == "Mount Kenya" and "Mt. Kenya" in highest.aliases
    assert fact(entities, "ke", "national_anthem").answer == "Ee Mungu Nguvu Yetu"
    chief = fact(entities, "ke", "chief_of_state")
    assert chief.answer == "William Ruto" and "Ruto" in chief.aliases
    independence = fact(entities, "ke", "independence_from")
    assert independence.answer == "UK" and "United Kingdom" in independence.aliases
    assert fact(entities, "ke", "independence_date").aliases == ("12 December 1963", "1963")
    assert fact(entities, "ke", "internet_code").answer == ".ke"
    assert fact(entities, "ke", "government_type").answer == "presidential republic"
    holiday = fact(entities, "ke", "national_holiday")
    assert holiday.answer == "Jamhuri Day" and "Independence Day" in holiday.aliases


def test_aliases_fold_accents_and_fix_case(entities):
    capital = fact(entities, "br", "capital")
    assert capital.answer == "Brasília" and "Brasilia" in capital.aliases
    assert fold_accents("Nicușor Dan") == "Nicusor Dan"
    # normalize_answer keeps accents, so the folded alias is what lets an ASCII answer score
    assert normalize_answer("Brasília") != normalize_answer("Brasilia")
    assert proper_name("King CHARLES III") == "King Charles III"
    assert proper_name("XI Jinping") == "Xi Jinping"
    assert proper_name("Frank-Walter STEINMEIER") == "Frank-Walter Steinmeier"
    assert fact(entities, "ch", "chief_of_state").answer == "Xi Jinping"
    assert fact(entities, "uk", "chief_of_state").answer == "Charles III"
    assert fact(entities, "uk", "head_of_government").aliases == ("Keir Starmer", "Starmer")
    assert "CFA franc" in fact(entities, "sg", "currency").aliases  # West African CFA franc, by its usual name
    south_africa = set(fact(entities, "sf", "capital").aliases)
    assert {"Pretoria", "Cape Town", "Bloemfontein"} <= south_africa
    assert fact(entities, "ja", "national_anthem").answer == "Kimigayo"
    # no single answer: co-princes of Andorra, two captains regent of San Marino
    assert fact(entities, "an", "chief_of_state") is None
    assert fact(entities, "sm", "chief_of_state") is None


def test_two_hop_bridges_are_unique(entities):
    questions = candidate_questions(entities.values(), tuple(KINDS), two_hop_per_entity=3, seed=0)
    two_hop = [q for q in questions if q.kind == "two_hop"]
    assert len(two_hop) > 300
    values: dict[tuple[str, str], set[str]] = {}
    for e in entities.values():
        for kind in KINDS:
            if (f := KINDS[kind].extract(e.fields)) is not None:
                values.setdefault((kind, normalize_answer(fold_accents(f.answer))), set()).add(e.code)
    for q in two_hop:
        (code,) = q.entities
        bridge, target = q.hops[0]["kind"], q.hops[1]["kind"]
        assert bridge != target
        value = KINDS[bridge].extract(entities[code].fields)
        assert values[(bridge, normalize_answer(fold_accents(value.answer)))] == {code}, q.question
        assert entities[code].name in q.hops[0]["answers"]
        assert tuple(q.hops[1]["answers"]) == q.answers
        assert entities[code].name in q.hops[1]["question"] and entities[code].name not in q.question
    assert not any("God Save the King" in q.question for q in two_hop)  # shared by the UK and its realms
    kimigayo = [q for q in two_hop if '"Kimigayo"' in q.question]
    assert all(q.hops[0]["answers"][0] == "Japan" for q in kimigayo)


# ---- the built splits -------------------------------------------------------------------------------------


def test_build_creates_the_missing_folder_and_writes_every_split(built):
    out, stats, rows = built
    for split in SPLITS:
        assert (out / f"{split}.jsonl").is_file() and (out / f"{split}.parquet").is_file()
    assert json.loads((out / "stats.json").read_text()) == stats
    assert sum(len(r) for r in rows.values()) >= 1500
    assert stats["questions"] == {s: len(r) for s, r in rows.items()}
    kinds = {r["extra_info"]["kind"] for split in rows.values() for r in split}
    assert len(kinds - {"two_hop"}) >= 8 and "two_hop" in kinds


def test_splits_are_disjoint_by_entity_and_ids_unique(built):
    out, _stats, rows = built
    entities = {s: {c for r in split for c in r["extra_info"]["entities"]} for s, split in rows.items()}
    assert not entities["test"] & entities["train"]
    assert not entities["test"] & entities["dev"]
    assert not entities["dev"] & entities["train"]
    every = [r for split in rows.values() for r in split]
    assert len({r["extra_info"]["id"] for r in every}) == len(every)
    assert len({r["extra_info"]["index"] for r in every}) == len(every)
    uids = [rec.uid for s in SPLITS for rec in load_records(str(out), split=s)]  # what the trainer keys groups by
    assert len(set(uids)) == len(uids) == len(every)


def test_records_have_the_schema_of_the_samples(built):
    import pyarrow.parquet as pq

    out, _stats, rows = built
    sample = json.loads((DATA / "sample_train.jsonl").read_text().splitlines()[0])
    for record in (rows["train"][0], rows["test"][-1]):
        assert set(record) == set(sample)
        assert set(record["reward_model"]) == set(sample["reward_model"])
        assert record["reward_model"]["ground_truth"]["target"] == record["golden_answers"]
        assert record["prompt"][0]["role"] == "user" and record["prompt"][0]["content"].endswith(record["question"])
        assert set(sample["extra_info"]) <= set(record["extra_info"])
        assert record["ability"] == sample["ability"]
    assert set(pq.read_schema(out / "test.parquet").names) == set(pq.read_schema(DATA / "sample_train.parquet").names)
    two_hop = next(r for r in rows["train"] if r["extra_info"]["kind"] == "two_hop")
    hops = two_hop["extra_info"]["hops"]
    assert len(hops) == 2 and all(h["question"] and h["answers"] and h["kind"] in KINDS for h in hops)


def test_trainer_and_eval_load_the_splits(built):
    out, _stats, rows = built
    for split in SPLITS:  # the folder, as --dataset_name / --data take it, and each file directly
        records = load_records(str(out), split=split)
        assert [r.question for r in records] == [r["question"] for r in rows[split]]
        assert load_records(str(out / f"{split}.parquet"), split=split)[0] == records[0]
    assert records[0].data_source.startswith("factbook_")


def test_every_kept_question_is_answerable_in_the_top_five(built, search):
    _out, stats, rows = built
    hops = [hop for record in rows["test"] for hop in (
        record["extra_info"]["hops"] or [{"question": record["question"], "answers": record["golden_answers"]}])]
    for hop, passages in zip(hops, search([h["question"] for h in hops], 5), strict=True):
        assert len(passages) <= 5
        assert is_answerable(hop["answers"], passages), hop["question"]
    for kind, row in stats["per_kind"].items():
        assert row["answerable"] <= row["candidates"]
        assert row["answerable_rate"] == pytest.approx(row["answerable"] / row["candidates"], abs=1e-4)
        assert row["train"] + row["dev"] + row["test"] == row["answerable"], kind
    assert stats["per_kind"]["internet_code"]["answerable_rate"] > 0.9


@dataclass
class _P:
    title: str
    text: str


def test_answerable_matches_whole_words_after_normalisation():
    passages = [_P("Kenya - Internet country code", ".ke"), _P("Brazil - Capital", "name: Brasília")]
    assert is_answerable([".ke"], passages)
    assert is_answerable(["Brasilia"], passages)  # accents folded on both sides
    assert not is_answerable(["ke"], [_P("Kenya - Capital", "name: Nairobi")])  # not inside "kenya"
    assert not is_answerable(["Mombasa"], passages)


def test_build_is_deterministic_given_the_seed(tmp_path, search):
    def files(out, seed):
        build(BuildOptions(out=out, kinds=("internet_code", "government_type"), seed=seed, two_hop_per_entity=1,
                           progress=False), search_batch=search)
        return {s: (out / f"{s}.jsonl").read_bytes() for s in SPLITS}

    first = files(tmp_path / "a", 7)
    assert files(tmp_path / "b", 7) == first
    assert files(tmp_path / "c", 8) != first


# ---- bad input ----------------------------------------------------------------------------------------------


def test_unknown_kind_lists_the_kinds(tmp_path):
    with pytest.raises(FactbookQAError, match="unknown kind.*foo.*kinds: capital, currency"):
        parse_kinds("capital,foo")
    assert parse_kinds(" capital , currency,capital") == ("capital", "currency")

    from zerosearch_trainer.cli import data_command

    result = CliRunner().invoke(data_command, ["factbook", "--out", str(tmp_path / "x"), "--kinds", "capital,foo"])
    assert result.exit_code == 2
    assert "foo" in result.output and "national_anthem" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_output_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(FactbookQAError, match="not a folder"):
        build(BuildOptions(out=target, progress=False), entities=[], search_batch=lambda q, k: [])


def test_the_shipped_test_split_loads():
    shipped = DATA / "factbook_qa"
    records = load_records(str(shipped), split="test")
    stats = json.loads((shipped / "stats.json").read_text())
    assert len(records) == stats["questions"]["test"] >= 200
    assert len({r.uid for r in records}) == len(records)
    assert {r.data_source for r in records} >= {"factbook_capital", "factbook_two_hop"}


def test_output_under_a_file_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(FactbookQAError, match="cannot create the output folder"):
        build(BuildOptions(out=tmp_path / "file" / "splits", progress=False), entities=[], search_batch=lambda q, k: [])
