"""`zerosearch tune-sim` and `zerosearch fidelity` end to end: collection from the real corpus engine, bad input,
two training steps whose output `zerosearch serve --model DIR` loads, and the fidelity report."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.trainer.conftest import REPO, VENV_BIN, Simulator
from zerosearch_trainer import sim_data

QA = Path("data/factbook_qa")


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`zerosearch ARGS` from the repository root, as a user runs it."""
    env = os.environ | {"TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([str(VENV_BIN / "zerosearch"), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def corpus_engine():
    server = Simulator(backend="corpus")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def collected(corpus_engine):
    items = sim_data.load_qa_items(str(QA), split="test", max_items=12)
    return items, sim_data.collect(items, corpus_engine.url, k=5, fetch_k=20, progress=False)


def test_collection_from_the_corpus_engine_builds_balanced_labelled_examples(collected):
    items, collection = collected
    assert collection.failed == 0 and collection.queries >= len(items)
    assert all(len(s.hits) >= 5 for s in collection.sets)
    examples = sim_data.build_examples(collection.sets, k=5, seed=0)
    balanced = sim_data.balance(examples, seed=0)
    assert {e["label"] for e in balanced} == {"useful", "noisy"}
    assert sum(e["label"] == "useful" for e in balanced) * 2 == len(balanced)
    by_query = {s.query: s for s in collection.sets}
    for example in balanced:
        query = example["prompt"][1]["content"].split("Query: ")[1].split("\n")[0]
        answers = by_query[query].answers
        docs = [line.split(": ", 1)[1] for line in example["completion"][0]["content"].splitlines()]
        assert len(docs) == 5 and all(20 <= len(d.split()) <= 46 for d in docs)
        has = [sim_data.contains_answer(d, answers) for d in docs]
        assert any(has) if example["label"] == "useful" else not any(has)


def test_an_engine_that_does_not_answer_fails_fast_with_its_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    done = run_cli("tune-sim", "--config", "configs/tune-sim-tiny-cpu.yaml", "--qa_data", str(QA), "--qa_split",
                   "test", "--engine_url", url, "--output_dir", str(tmp_path / "out"), timeout=300)
    assert done.returncode == 1
    assert f"the engine at {url} does not answer" in done.stderr
    assert "Traceback" not in done.stderr


def test_searches_the_engine_refuses_all_fail_with_its_own_message(corpus_engine):
    items = sim_data.load_qa_items(str(QA), split="test", max_items=2)
    with pytest.raises(sim_data.SFTDataError, match=r"every one of the \d+ searches on http://\S+ failed; "
                                                     r"the first said \w+: .*20"):
        sim_data.collect(items, corpus_engine.url, k=5, fetch_k=21, progress=False)  # the native API's k is 1-20


def test_a_malformed_sft_file_is_one_line(tmp_path):
    bad = tmp_path / "released.jsonl"
    bad.write_text(json.dumps({"instruction": "x"}) + "\n")
    done = run_cli("tune-sim", "--config", "configs/tune-sim-tiny-cpu.yaml", "--engine_url", "none", "--sft_data",
                   str(bad), "--output_dir", str(tmp_path / "out"), timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"Error: {bad}: row 1: missing field 'output' (alpaca rows need " \
                                                   "instruction and output)."


@pytest.mark.slow
def test_two_steps_then_serve_the_adapter(collected, tmp_path):
    """Two LoRA steps on a handful of collected examples; `zerosearch serve --model DIR` merges and answers."""
    _items, collection = collected
    examples = sim_data.balance(sim_data.build_examples(collection.sets, k=5), seed=0, limit=8)
    released = tmp_path / "released.jsonl"  # the importer path: the collected examples as prompt/completion rows
    released.write_text("\n".join(json.dumps({"prompt": e["prompt"], "completion": e["completion"]})
                                  for e in examples) + "\n")
    out = tmp_path / "tuned"
    done = run_cli("tune-sim", "--config", "configs/tune-sim-tiny-cpu.yaml", "--engine_url", "none", "--sft_data",
                   str(released), "--dev_fraction", "0", "--max_steps", "2", "--per_device_train_batch_size", "2",
                   "--max_length", "320", "--lora_top_layers", "2", "--save_strategy", "no", "--output_dir",
                   str(out), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "TUNING.json").read_text())
    assert record["training"]["steps"] == 2 and record["figures"]["tokens_per_s"] > 0
    assert record["sft_data_sha256"] == sim_data.data_hash(
        [json.loads(line) for line in (out / "sft_train.jsonl").read_text().splitlines()])
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "bundled" and config["layers_to_transform"] == [28, 29]
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert not (out / "tokenizer.json").exists()  # the base's tokenizer is used: the adapter stays small

    server = Simulator(backend="transformers", ZS_MODEL=str(out), ZS_MAX_NEW_TOKENS="48", ZS_TORCH_THREADS="1")
    try:
        ready = httpx.get(server.url + "/readyz").json()
        assert ready["model"].startswith("tuned (adapter over SmolLM2-135M-Instruct")
        answer = httpx.post(server.url + "/v1/search", json={"query": "capital of Kenya", "k": 2, "noise": 0.0,
                                                             "cache": False}, timeout=600)
        assert answer.status_code == 200 and answer.json()["documents"]
    finally:
        server.stop()


def test_fidelity_report_against_the_corpus_engine(corpus_engine, tmp_path):
    report = tmp_path / "fidelity.json"
    done = run_cli("fidelity", "--search_url", corpus_engine.url, "--data", str(QA), "--n", "4", "--out",
                   str(report), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "useful containment" in done.stdout
    figures = json.loads(report.read_text())["endpoints"]["simulator"]
    assert figures["searches"] == 8 and figures["failed"] == 0
    assert figures["delivered_k"] == 1.0  # a real engine over the Factbook always has five passages
    for key in ("adherence", "useful_containment", "noisy_leakage", "gap", "words_per_doc", "duplicates",
                "query_coverage", "extra_generations_per_search"):
        assert key in figures


def test_fidelity_against_nothing_is_one_line(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    done = run_cli("fidelity", "--search_url", url, "--data", str(QA), "--n", "2", timeout=300)
    assert done.returncode == 1 and f"Error: the endpoint at {url} does not answer" in done.stderr
