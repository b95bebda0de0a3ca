"""A short schemathesis run against the real bundled model (SmolLM2-135M) behind `zerosearch serve`: the
generated text goes through the parser and every dialect's renderer, and every answer must still conform
to the schema, with the declared content type and no 5xx. Bounded: the native search and one dialect
(SerpAPI's GET /search.json), 3 examples each beyond schemathesis's coverage cases (most of those are refused
with 4xx before any generation; a loaded 2-CPU machine takes minutes per generated example). The other
operations and the batch forms are fuzzed on the scripted backend (test_fuzz_schema.py)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.conftest import ServeProcess
from tests.integration.test_fuzz_schema import CHECKS, build_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

schema = schemathesis.openapi.from_dict(build_app().openapi()).include(
    path_regex=r"^/(v1/search|search\.json)$")


@pytest.fixture(scope="module")
def model_url():
    # Short generations and a long deadline: a loaded CPU must produce answers, not 504s.
    server = ServeProcess("--backend", "transformers", env={"ZS_MAX_NEW_TOKENS": "40", "ZS_TIMEOUT_S": "300",
                                                            "ZS_TORCH_THREADS": "1", "ZS_MAX_BATCH": "4"},
                          log_prefix="zs-fuzz-model")
    yield server.url
    server.stop()


@schema.parametrize()
@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_real_model_operations(case, model_url):
    case.call_and_validate(base_url=model_url, checks=CHECKS, timeout=320)
