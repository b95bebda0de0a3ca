"""Which policy checkpoint to load: a local directory, a hub id, or the bundled SmolLM2-135M-Instruct.

GGUF-loaded models are flagged as quantized and cannot be trained, so the bundled policy is the plain
checkpoint that `zerosearch_core.models` converts once into the user's cache directory (the same one the
simulator uses).
"""

from __future__ import annotations

from pathlib import Path

from zerosearch_core.errors import ZeroSearchError
from zerosearch_core.models import ModelUnavailableError, resolve_model

__all__ = ["BUNDLED", "PolicyModelError", "resolve_policy"]

BUNDLED = "bundled"


class PolicyModelError(ZeroSearchError):
    """The policy model cannot be found or prepared."""


def resolve_policy(name: str | None) -> str:
    """A path or hub id that `from_pretrained` can load (and train)."""
    local = Path(name).expanduser() if name else None
    if local is not None and local.is_dir() and not (local / "config.json").is_file():
        raise PolicyModelError(f"{local}: not a model checkpoint (no config.json).")
    try:
        return resolve_model(name).path
    except ModelUnavailableError as exc:
        raise PolicyModelError(str(exc)) from None
