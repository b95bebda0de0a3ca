"""The simulator's default model: the bundled SmolLM2-135M with the tuned adapter shipped in this package.

`ZS_MODEL` unset (or `bundled-tuned`) serves `adapters/smollm2-135m-zerosearch`, a LoRA adapter made by
`zerosearch tune-sim` (its recipe and figures in `TUNING.json` beside it), merged into the bundled model once and
cached (`zerosearch_core.models`). `ZS_MODEL=bundled-base` (or `bundled`) serves the untuned bundled model.

A shipped adapter that is missing or corrupt stops the start with one line naming the file and the way out
(`ZS_MODEL=bundled-base`) rather than silently serving an untuned model under the tuned default's name.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from zerosearch_core.models import ADAPTER_CONFIG, ADAPTER_WEIGHTS, ModelUnavailableError

__all__ = ["DEFAULT_ADAPTER", "TUNED_NAME", "default_adapter_dir", "simulator_model"]

DEFAULT_ADAPTER = "smollm2-135m-zerosearch"
TUNED_NAME = "bundled-tuned"


def default_adapter_dir() -> Path:
    return Path(str(resources.files("zerosearch_simulator").joinpath("adapters", DEFAULT_ADAPTER)))


def simulator_model(name: str | None) -> str:
    """`ZS_MODEL` as `zerosearch_core.models.resolve_model` takes it: unset means the shipped tuned adapter."""
    if name is not None and name.strip() not in ("", TUNED_NAME):
        return name
    adapter = default_adapter_dir()
    for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (adapter / required).is_file():
            raise ModelUnavailableError(
                f"the shipped tuned simulator is incomplete: {adapter / required} is missing; reinstall zerosearch, "
                "or set ZS_MODEL=bundled-base to serve the untuned bundled model")
    return str(adapter)
