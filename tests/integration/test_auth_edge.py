"""Bad input at the public edge never gives a 5xx: the cases a fuzz found, then a bounded
hypothesis fuzz of every HTTP route (embedded stack)."""

from __future__ import annotations

import json
import re
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.cli.background import BackgroundSuite
from conveyor.gateway import service
from conveyor.gateway.forward import service_descriptor
from conveyor.gateway.transcode import routes_for
from conveyor.kernel.settings import Settings
from conveyor.suite import routes
from tests.integration import harness

WORKFLOW = json.dumps(
    {"schema": "conveyor/v1", "name": "edge", "nodes": [{"id": "a", "type": "action.sleep"}]}
)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with harness.embedded(tmp_path_factory.mktemp("edge")) as stack:
        yield stack


@pytest.fixture(scope="module")
def http(edge: dict[str, Any]) -> Iterator[httpx.Client]:
    with harness.http_client(edge, timeout=60) as client:
        yield client


def _error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()["error"]
    assert body["code"] == status and body["message"]
    return body


@pytest.mark.parametrize(
    "body",
    [
        b'{"workflow_json": "x", "nodes": Infinity}',
        b'{"parameters": {"n": 1e400}}',
        b'{"parameters": {"n": NaN}}',
        b'{"parameters": {"n": -Infinity}}',
        b"[" * 10_000 + b"]" * 10_000,
        b'{"parameters": ' + b'{"a": ' * 10_000 + b"1" + b"}" * 10_000 + b"}",
        b'{"parameters": ' + b'{"a": ' * 80 + b"1" + b"}" * 80 + b"}",
        b'{"parameters": {"name": "a\\u0000b"}}',
        b'{"parameters": {"name": "\\ud800"}}',
        b'{"request_id": "a\\u0000b"}',
        b"\xff\xfe not utf-8",
    ],
)
def test_bad_bodies_are_400(http: httpx.Client, body: bytes) -> None:
    resp = http.post(
        "/v1/jobs/hello:run", content=body, headers={"content-type": "application/json"}
    )
    assert _error(resp, 400)["status"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/runs?page_token=%%%",
        "/v1/runs?page_token=not-a-token",
        "/v1/runs?page_token=eyJ4IjogMX0",
        "/v1/jobs?page_token=AAAA",
        "/v1/schedules?page_token=zz",
        "/v1/alertRules?page_token=%00",
        "/v1/runs/a%00b",
        "/v1/jobs/%00",
        "/v1/runs?page_size=99999999999999999999",
        "/v1/runs?states=NOPE",
        "/v1/alerts?state=10",
        "/v1/runs?states=10",  # a number AlertState does not define
    ],
)
def test_bad_queries_and_ids_are_never_5xx(http: httpx.Client, path: str) -> None:
    resp = http.get(path)
    # A token that happens to decode may be served (as an empty page); nothing is a 5xx.
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert resp.json()["error"]["code"] == resp.status_code


def test_oversized_bodies_are_413_declared_or_streamed(
    edge: dict[str, Any], http: httpx.Client
) -> None:
    limit = Settings().http_max_body_bytes
    # Only the headers are sent: the answer comes from the declared length alone.
    host, port = edge["http"].removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            (
                f"POST /v1/workflows:validate HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {edge['token']}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n"
            ).encode()
        )
        answer = sock.recv(65536).decode()
        # The headers and the body may arrive in separate segments.
        head, _, body = answer.partition("\r\n\r\n")
        length = next(
            int(line.split(":", 1)[1])
            for line in head.lower().splitlines()
            if line.startswith("content-length:")
        )
        while len(body.encode()) < length:
            more = sock.recv(65536).decode()
            if not more:
                break
            body += more
        answer = f"{head}\r\n\r\n{body}"
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "RESOURCE_EXHAUSTED" in answer

    def chunks() -> Iterator[bytes]:
        piece = b" " * (1024 * 1024)
        for _ in range(limit // len(piece) + 2):
            yield piece

    streamed = http.post(
        "/v1/workflows:validate", content=chunks(), headers={"content-type": "application/json"}
    )
    assert _error(streamed, 413)["status"] == "RESOURCE_EXHAUSTED"


def _route_table() -> list[Any]:
    names = [*routes(Settings()), service.SERVICE_NAME]
    table = routes_for(service_descriptor(name) for name in dict.fromkeys(names))
    # Revoking could revoke the fuzzer's own token; everything else is fair game.
    return [r for r in table if not r.template.endswith(":revoke")]


ROUTES = _route_table()
NASTY_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\x00", "a\x00b", "%00", "..", "Infinity", "1e400", "-1", "9" * 30, ""]),
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    NASTY_TEXT,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(NASTY_TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)


def _fields(route: Any) -> list[str]:
    return [f.name for f in route.method.input_type.fields]


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes | None]:
    route = draw(st.sampled_from(ROUTES))
    path = re.sub(
        r"\{[^}]+\}",
        lambda _: urllib.parse.quote(draw(NASTY_TEXT), safe="") or "x",
        route.template,
    )
    names = [*_fields(route), "page_token", "bogus"]
    query = draw(st.dictionaries(st.sampled_from(names), NASTY_TEXT, max_size=3))
    body: bytes | None = None
    if route.body:
        kind = draw(st.sampled_from(["fields", "raw", "nasty"]))
        if kind == "fields":
            doc = draw(st.dictionaries(st.sampled_from(names), JSON_VALUES, max_size=4))
            body = json.dumps(doc).encode()
        elif kind == "raw":
            body = draw(st.binary(max_size=64))
        else:
            body = draw(
                st.sampled_from(
                    [b'{"x": Infinity}', b'{"parameters": {"a": 1e400}}', b"[" * 5000, b"{"]
                )
            )
    return route.verb, path, query, body


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
def test_fuzzed_requests_never_get_a_5xx(
    edge: dict[str, Any], request: tuple[str, str, dict[str, str], bytes | None]
) -> None:
    verb, path, query, body = request
    with httpx.Client(
        base_url=edge["http"], headers=harness.http_headers(edge), timeout=30
    ) as client:
        built = client.build_request(verb, path, params=query, content=body)
        resp = client.send(built, stream=True)
        try:
            assert resp.status_code < 500, (verb, path, query, body, resp.read())
        finally:
            resp.close()


def test_open_mode_needs_no_token_and_names_nobody(tmp_path: Path) -> None:
    with BackgroundSuite(harness.embedded_settings(tmp_path), open_access=True) as suite:
        assert suite.token is None and not (tmp_path / "token").exists()
        caller = httpx.get(f"{suite.addresses['http']}/v1/caller", timeout=30).json()
        assert caller == {"name": "anonymous", "role": "ROLE_ADMIN"}
        assert httpx.get(f"{suite.addresses['http']}/v1/runs", timeout=30).status_code == 200
