"""Property-based fuzzing with schemathesis over the served OpenAPI schema: every operation (native, batch,
curriculum, every dialect, system) against the real app over real HTTP, on the scripted backend. Checks: no 5xx,
responses conform to the schema, and the content type is the one declared.

The examples per operation are bounded (ZS_FUZZ_EXAMPLES, default 25) so this stays a test of seconds;
raise it for a longer hunt: `ZS_FUZZ_EXAMPLES=2000 pytest tests/integration/test_fuzz_schema.py`.
The same run against the real model is test_fuzz_real_model.py (slow).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from tests.conftest import serve_in_thread
from zerosearch_simulator import Settings, create_app
from zerosearch_simulator.backends.scripted import ScriptedBackend

EXAMPLES = int(os.environ.get("ZS_FUZZ_EXAMPLES", "25"))
SEEN: dict[str, Counter] = {}  # "METHOD /path" -> responses by class (2 = 2xx, 4 = 4xx)
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]



def build_app():
    return create_app(Settings(backend="scripted", api_keys=None), backend=ScriptedBackend())


# The schema is the app's own (what /openapi.json serves; test_the_fuzzed_schema_is_the_served_one checks),
# read at collection so that each operation is a test of its own.
schema = schemathesis.openapi.from_dict(build_app().openapi())


@pytest.fixture(scope="module")
def base_url():
    with serve_in_thread(build_app(), lifespan="on") as url:
        yield url


def test_the_fuzzed_schema_is_the_served_one(base_url):
    import httpx

    served = httpx.get(f"{base_url}/openapi.json").json()
    assert served == schema.raw_schema
    assert {"/v1/search", "/v1/search/batch", "/v1/curriculum", "/search", "/search.json", "/extract",
            "/res/v1/web/search", "/customsearch/v1", "/retrieve", "/healthz", "/readyz"} <= set(served["paths"])


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_every_operation(case, base_url):
    response = case.call_and_validate(base_url=base_url, checks=CHECKS)
    SEEN.setdefault(f"{case.method.upper()} {case.path}", Counter())[response.status_code // 100] += 1


def test_every_operation_was_exercised():
    """The fuzzing is not vacuous: every operation was called, and between them they saw 2xx and 4xx."""
    operations = {f"{op.method.upper()} {op.path}" for op in (r.ok() for r in schema.get_all_operations())}
    assert operations <= set(SEEN), operations - set(SEEN)  # (and wrong methods on each, from schemathesis)
    assert sum(c[2] for c in SEEN.values()) > 0 and sum(c[4] for c in SEEN.values()) > 0, SEEN
