"""Loading the policy for any command that runs it (warm-up, GRPO, eval, ask).

`models.py` decides which checkpoint; this module loads it with its tokenizer and decides whether prompts
go through the tokenizer's chat template, so every command sees the policy the same way.
"""

from __future__ import annotations

from typing import Any

from zerosearch_trainer.models import PolicyModelError, resolve_policy

__all__ = ["load_policy", "use_chat"]


def load_policy(model_args: Any, *, dtype_default: str = "float32"):
    """(model, tokenizer, resolved path) for TRL's `ModelConfig`-like `model_args`; pad falls back to eos."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_policy(model_args.model_name_or_path)
    dtype = model_args.dtype if model_args.dtype not in (None, "auto") else dtype_default
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype),
                                                     revision=model_args.model_revision,
                                                     attn_implementation=model_args.attn_implementation)
        tokenizer = AutoTokenizer.from_pretrained(path, revision=model_args.model_revision)
    except OSError as exc:  # not a checkpoint, or a hub id that cannot be fetched (offline, private, typo)
        raise PolicyModelError(f"cannot load the policy {path!r}: {exc}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, path


def use_chat(tokenizer: Any, setting: str) -> bool:
    """Whether prompts are chat-templated: `on`, `off`, or `auto` (when the tokenizer has a template)."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    return bool(getattr(tokenizer, "chat_template", None))
