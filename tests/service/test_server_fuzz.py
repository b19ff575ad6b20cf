"""Schemathesis over the service's OpenAPI schema: no 5xx, and no way in without a key.

Every operation gets generated requests, valid and invalid, sent to the ASGI
app in-process with a valid key (so the authenticated path runs, against the
simulated provider: no network); each is then sent again without the key,
which must be refused unless the path is public.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import sim_models
from hypothesis import HealthCheck, given, settings

import mmo_magic as mmo
from mmo_magic.service import PUBLIC_PATHS, create_app

schemathesis = pytest.importorskip("schemathesis", minversion="4.0")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

KEY = "fuzz-client-key-0123456789"
EXAMPLES = 25  # per operation: the whole file stays well under a minute


@pytest.fixture(scope="module")
def app(sim_server: Any) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MMO_TEST_OPENAI_KEY", "sk-test-openai-000000000000")
        env.setenv("MMO_TEST_ANTHROPIC_KEY", "sk-ant-test-0000000000000")
        with mmo.Orchestrator(
            sim_models(sim_server), default_model="oa", runlog=":memory:", cache=False
        ) as orc:
            yield create_app(orc, keys=[KEY])


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_server_errors_and_no_access_without_a_key(app: Any, mode: str) -> None:
    # Driven through schemathesis's Python API (an operation's Hypothesis strategy):
    # its pytest plugin breaks on pytest 9 (schemathesis 4.32 sets Function._nodeid).
    # With keys set, the schema itself needs one (README: "The service").
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", app, headers={"authorization": f"Bearer {KEY}"}
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/complete"}
    for operation in operations:
        inputs = (operation.body, operation.query, operation.path_parameters, operation.headers)
        if mode == "negative" and not any(inputs):
            continue  # nothing it takes can be made invalid
        strategy = operation.as_strategy(schemathesis.GenerationMode(mode))
        check_operation = settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )(given(case=strategy)(_check_case))
        check_operation()


def _check_case(case: Any) -> None:
    authorized = case.call(headers={"authorization": f"Bearer {KEY}"})
    case.validate_response(authorized, checks=[not_a_server_error, response_schema_conformance])
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    anonymous = case.call()
    if case.path in PUBLIC_PATHS:
        assert anonymous.status_code < 500
    else:
        assert anonymous.status_code == 401, (case.method, case.path, anonymous.text)
