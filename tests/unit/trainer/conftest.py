from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    from zerosearch_trainer.models import resolve_policy

    return AutoTokenizer.from_pretrained(resolve_policy(None))
