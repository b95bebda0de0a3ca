"""peft adapters as models: merged into their base once, cached by fingerprint; missing or corrupt ones refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zerosearch_core import models
from zerosearch_core.models import ModelUnavailableError, resolve_model


@pytest.fixture(scope="module")
def base_path() -> str:
    return resolve_model("bundled").path  # the converted bundled checkpoint (cached across the test run)


@pytest.fixture
def adapter(tmp_path, base_path) -> Path:
    """A real LoRA adapter (r = 1 on the last layer's q_proj, non-zero B) over the bundled checkpoint."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    tuned = get_peft_model(model, LoraConfig(r=1, lora_alpha=2, target_modules=["q_proj"], layers_to_transform=[29],
                                             init_lora_weights=False))
    out = tmp_path / "tiny-adapter"
    tuned.save_pretrained(str(out))
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base_path
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


@pytest.mark.slow
def test_an_adapter_is_merged_once_and_cached_by_fingerprint(adapter, tmp_path, monkeypatch):
    monkeypatch.setenv("ZS_CACHE_DIR", str(tmp_path / "cache"))
    merges = []
    real_merge = models._merge
    monkeypatch.setattr(models, "_merge", lambda *a: (merges.append(a), real_merge(*a)))
    first = resolve_model(str(adapter))
    again = resolve_model(str(adapter))
    assert first == again and len(merges) == 1
    assert first.model_id.startswith("tiny-adapter (adapter over")
    assert Path(first.path).parent == tmp_path / "cache" / "models"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in Path(first.path).iterdir()}

    from safetensors import safe_open

    name = "model.layers.29.self_attn.q_proj.weight"
    with safe_open(str(Path(first.path) / "model.safetensors"), "pt") as merged, \
            safe_open(str(Path(models.resolve_model("bundled").path) / "model.safetensors"), "pt") as base:
        assert not merged.get_tensor(name).equal(base.get_tensor(name))  # the adapter is in the weights
        other = "model.layers.0.self_attn.q_proj.weight"
        assert merged.get_tensor(other).equal(base.get_tensor(other))

    weights = adapter / "adapter_model.safetensors"
    from safetensors.torch import load_file, save_file

    tensors = {k: v * 2 for k, v in load_file(str(weights)).items()}
    save_file(tensors, str(weights))
    changed = resolve_model(str(adapter))
    assert changed.path != first.path and len(merges) == 2


def test_a_corrupt_or_incomplete_adapter_is_one_line(adapter, tmp_path, monkeypatch):
    monkeypatch.setenv("ZS_CACHE_DIR", str(tmp_path / "cache"))
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelUnavailableError, match="tiny-adapter: cannot be applied to") as caught:
        resolve_model(str(adapter))
    assert "\n" not in str(caught.value)
    assert not list((tmp_path / "cache" / "models").glob("tiny-adapter-merged-*/config.json"))
    weights.unlink()
    with pytest.raises(ModelUnavailableError, match="adapter_model.safetensors is missing"):
        resolve_model(str(adapter))
    (adapter / "adapter_config.json").write_text("{")
    with pytest.raises(ModelUnavailableError, match="adapter_config.json is unreadable"):
        resolve_model(str(adapter))


def test_the_simulator_default_is_the_shipped_adapter_and_bundled_base_the_untuned_model(tmp_path, monkeypatch):
    from zerosearch_simulator import tuned

    assert tuned.simulator_model(None) == str(tuned.default_adapter_dir())
    assert tuned.simulator_model("") == tuned.simulator_model("bundled-tuned") == tuned.simulator_model(None)
    assert tuned.simulator_model("bundled-base") == "bundled-base"
    assert resolve_model("bundled-base") == resolve_model("bundled")
    config = json.loads((tuned.default_adapter_dir() / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "bundled"

    monkeypatch.setattr(tuned, "default_adapter_dir", lambda: tmp_path / "gone")
    with pytest.raises(ModelUnavailableError, match="gone/adapter_config.json is missing.*ZS_MODEL=bundled-base"):
        tuned.simulator_model(None)


@pytest.mark.slow
def test_serve_refuses_a_corrupt_adapter_in_one_line(adapter, tmp_path):
    (adapter / "adapter_model.safetensors").write_bytes(b"garbage")
    done = subprocess.run([str(Path(sys.executable).parent / "zerosearch"), "serve", "--port", "9",
                           "--model", str(adapter)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ZS_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert lines[-1].startswith(f"error: adapter {adapter}: cannot be applied to"), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
