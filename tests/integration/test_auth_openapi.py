"""`/openapi.json` describes what is served: schemathesis against a live embedded stack
(bounded examples per operation), zero 5xx and every response conforming to the document;
and CORS for the configured origins."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.integration import harness

ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with harness.embedded(tmp_path_factory.mktemp("openapi"), cors_origins=ORIGIN) as stack:
        yield stack


SKIP = re.compile(r"(:watch|:revoke)$")  # endless feed; could revoke our own token


def test_every_operation_conforms_and_never_5xx(live: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_url(f"{live['http']}/openapi.json")
    checked, failures = 0, []
    for result in schema.get_all_operations():
        if not hasattr(result, "ok"):
            failures.append(f"an operation schemathesis cannot read: {result.err()}")
            continue
        operation = result.ok()
        if SKIP.search(operation.path):
            continue

        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def exercise(case: Any) -> None:
            case.call_and_validate(
                headers=harness.http_headers(live),
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
                timeout=30,
            )

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as exc:  # report every failing operation
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
        checked += 1
    assert checked >= 30
    assert failures == []


def test_document_is_openapi_31_with_bearer_and_event_streams(live: dict[str, Any]) -> None:
    doc = httpx.get(f"{live['http']}/openapi.json", timeout=30).json()  # open: no token
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    events = doc["paths"]["/v1/runs/{run_id}/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    assert "204" in events["responses"]
    cancel = doc["paths"]["/v1/runs/{run_id}:cancel"]["post"]
    assert cancel["x-required-role"] == "operator"
    assert doc["paths"]["/v1/caller"]["get"]["x-required-role"] == "viewer"


def test_cors_preflight_and_simple_requests(live: dict[str, Any]) -> None:
    url = f"{live['http']}/v1/runs"
    preflight = httpx.options(
        url,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=30,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    got = httpx.get(url, headers={"Origin": ORIGIN, **harness.http_headers(live)}, timeout=30)
    assert got.status_code == 200
    assert got.headers["access-control-allow-origin"] == ORIGIN
    # A listed origin, never "*", when credentials are allowed.
    assert got.headers.get("access-control-allow-credentials") == "true"
    refused = httpx.options(
        url,
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        timeout=30,
    )
    assert "access-control-allow-origin" not in refused.headers
    other = httpx.get(url, headers={"Origin": "https://evil.example", **harness.http_headers(live)})
    assert "access-control-allow-origin" not in other.headers
