"""The shipped tuned simulator's record (TUNING.json) matches the recipe, the adapter and the bundled base."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from zerosearch_simulator.tuned import default_adapter_dir

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "tune-sim-tiny-cpu.yaml"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_record_matches_the_recipe_and_the_shipped_files():
    adapter = default_adapter_dir()
    record = json.loads((adapter / "TUNING.json").read_text())
    recipe = yaml.safe_load(RECIPE.read_text())
    assert record["recipe"] == "configs/tune-sim-tiny-cpu.yaml"
    assert record["recipe_sha256"] == _sha256(RECIPE)
    assert record["command"].startswith("zerosearch tune-sim --config configs/tune-sim-tiny-cpu.yaml")
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == recipe["model_name_or_path"] == "bundled"
    assert config["r"] == record["lora"]["r"] == recipe["lora_r"]
    assert config["lora_alpha"] == record["lora"]["alpha"] == recipe["lora_alpha"]
    assert record["lora"]["top_layers"] == recipe["lora_top_layers"]
    assert config["layers_to_transform"] == list(range(30 - recipe["lora_top_layers"], 30))
    assert record["training"]["learning_rate"] == recipe["learning_rate"]
    assert record["training"]["batch_size"] == recipe["per_device_train_batch_size"]
    assert record["training"]["max_length"] == recipe["max_length"]
    assert record["sft_examples"]["useful"] == record["sft_examples"]["noisy"]
    assert record["sft_examples"]["useful"] * 2 == recipe["max_examples"]
    assert len(record["sft_data_sha256"]) == 64
    assert record["figures"]["adapter_bytes"] == (adapter / "adapter_model.safetensors").stat().st_size


def test_the_record_names_the_bundled_base_by_its_hash():
    from zerosearch_core.models import BUNDLED_FILE, bundled_gguf

    record = json.loads((default_adapter_dir() / "TUNING.json").read_text())
    assert record["base_model"]["file"] == BUNDLED_FILE
    assert record["base_model"]["sha256"] == _sha256(bundled_gguf())


def test_the_tune_sim_recipes_parse():
    import pytest

    from zerosearch_trainer.tune_sim import parse

    for name, base in (("tiny-cpu", "bundled"), ("qwen2.5-3b", "Qwen/Qwen2.5-3B-Instruct"),
                       ("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct")):
        model_args, _args, opts = parse(["--config", str(REPO / "configs" / f"tune-sim-{name}.yaml"),
                                         "--bf16", "false"])  # the GPU recipes ask for bf16, which a CPU refuses
        assert model_args.model_name_or_path == base and opts.tuning == "lora"
    with pytest.raises(ValueError, match="tuning must be lora or full"):
        parse(["--config", str(REPO / "configs" / "tune-sim-tiny-cpu.yaml"), "--tuning", "qlora"])
    with pytest.raises(ValueError, match=r"fetch_k <= 20 \(the native API's largest k\), got sft_k=5, fetch_k=21"):
        parse(["--config", str(REPO / "configs" / "tune-sim-tiny-cpu.yaml"), "--fetch_k", "21"])
