"""The trainer's commands end to end: train (1 GRPO step), warmup, eval, ask, and their start-up failures."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.trainer.conftest import Simulator, run_cli

TINY_TRAIN = ["--model_name_or_path", "bundled", "--warmup_config", "", "--max_train_samples", "4",
              "--per_device_train_batch_size", "2", "--num_generations", "2", "--max_completion_length", "48",
              "--max_tokens_per_turn", "16", "--max_turns", "1", "--save_strategy", "no", "--torch_threads", "1"]


@pytest.mark.slow
def test_train_one_step_end_to_end(simulator: Simulator, tmp_path: Path):
    out = tmp_path / "run"
    done = run_cli("train", "--config", "configs/grpo-tiny-cpu.yaml", "--max_steps", "1", "--output_dir", str(out),
                   "--search_url", simulator.url, "--curriculum", "push", "--curriculum_steps", "40",
                   "--beta", "0.001", *TINY_TRAIN)  # the GPU recipes' KL: a reference model beside the rollout
    assert done.returncode == 0, done.stderr[-3000:]
    # push mode: the trainer set the server's schedule before the rollout
    server_state = httpx.get(simulator.url + "/v1/curriculum").json()
    assert (server_state["step"], server_state["total_steps"]) == (0, 40)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 1
    (logged,) = [e for e in state["log_history"] if "reward" in e]
    for key in ("reward", "rewards/f1_reward/mean", "rewards/em_reward/mean", "rewards/sub_em_reward/mean",
                "rewards/format_reward/mean", "search/searches_per_trajectory", "rollout/turns",
                "rollout/invalid_actions", "curriculum/noise", "search/failed_searches", "search/latency_s", "kl"):
        assert key in logged, key
    assert logged["curriculum/noise"] == 0.0  # step 0 of the schedule
    assert (out / "training_curves.png").stat().st_size > 1000
    assert (out / "model.safetensors").is_file()
    assert "rollout:" in done.stderr  # the per-step rollout line (searches per trajectory) is logged


def test_train_stops_cleanly_without_a_simulator(tmp_path: Path):
    url = f"http://127.0.0.1:{free_port()}"
    done = run_cli("train", "--config", "configs/grpo-tiny-cpu.yaml", "--output_dir", str(tmp_path), "--search_url",
                   url, "--search_retries", "0", timeout=120)
    assert done.returncode == 1
    assert "no simulator answers at " + url in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_train_stops_cleanly_on_missing_or_malformed_data(simulator: Simulator, tmp_path: Path):
    done = run_cli("train", "--config", "configs/grpo-tiny-cpu.yaml", "--dataset_name", str(tmp_path / "nope.jsonl"),
                   "--search_url", simulator.url, "--output_dir", str(tmp_path), timeout=120)
    assert done.returncode == 1 and "no such dataset file" in done.stderr and "Traceback" not in done.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    done = run_cli("train", "--config", "configs/grpo-tiny-cpu.yaml", "--dataset_name", str(bad),
                   "--search_url", simulator.url, "--output_dir", str(tmp_path), timeout=120)
    assert done.returncode == 1 and "no golden answers" in done.stderr and "Traceback" not in done.stderr


def test_bad_option_and_missing_config(tmp_path: Path):
    done = run_cli("train", "--config", str(tmp_path / "none.yaml"), timeout=120)
    assert done.returncode == 2 and "no such file" in done.stderr
    done = run_cli("train", "--config", "configs/grpo-tiny-cpu.yaml", "--curriculum", "sideways", timeout=120)
    assert done.returncode == 2 and "curriculum must be one of" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_warmup_masks_information_and_saves_a_checkpoint(simulator: Simulator, tmp_path: Path):
    out = tmp_path / "warm"
    done = run_cli("warmup", "--config", "configs/warmup-tiny-cpu.yaml", "--search_url", simulator.url,
                   "--output_dir", str(out), "--num_examples", "4", "--per_device_train_batch_size", "4",
                   "--max_steps", "1", "--train_top_layers", "2", "--torch_threads", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


@pytest.mark.slow
def test_eval_writes_em_f1_json(simulator: Simulator, tmp_path: Path):
    out = tmp_path / "eval.json"
    # The recipe gives the defaults (16 samples, top_k 2, ...); the flags below win over it.
    done = run_cli("eval", "--config", "configs/eval-tiny-cpu.yaml", "--model", "bundled",
                   "--data", "data/sample_plain.jsonl", "--max_samples", "2",
                   "--max_turns", "1", "--max_completion_length", "48", "--max_tokens_per_turn", "16",
                   "--search_url", simulator.url, "--output", str(out), "--threads", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    for key in ("em", "sub_em", "f1", "searches_per_question"):
        assert key in report["overall"]
        assert key in report["per_data_source"]["sample_plain"]
    assert report["overall"]["n"] == 2 and len(report["results"]) == 2
    assert "overall" in done.stdout


def test_eval_config_values_are_validated(tmp_path: Path):
    bad = tmp_path / "eval.yaml"
    bad.write_text("max_samples: -3\n")
    done = run_cli("eval", "--config", str(bad), timeout=120)
    assert done.returncode == 2 and "max_samples" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("eval", "--config", str(tmp_path / "missing.yaml"), timeout=120)
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_ask_prints_steps(simulator: Simulator):
    done = run_cli("ask", "What is the capital of France?", "--search_url", simulator.url, "--max_turns", "1",
                   "--max_completion_length", "32", "--max_tokens_per_turn", "16", "--threads", "1", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Question: What is the capital of France?" in done.stdout and "answer:" in done.stdout
