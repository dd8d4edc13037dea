"""Egress control of action.http and action.notify: checked after resolution, per redirect."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conveyor.executor.egress import (
    EgressDenied,
    EgressPolicy,
    EgressRuleError,
    Endpoint,
    own_endpoints,
    parse_rules,
)
from conveyor.executor.runners import ErrorCategory, execute
from conveyor.kernel.settings import Settings


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if url.path == "/redirect":
            self.send_response(int(query.get("code", "302")))
            self.send_header("Location", query["to"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps(
            {
                "host": self.headers.get("Host"),
                "method": self.command,
                "auth": self.headers.get("Authorization"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def http(url: str, **data: Any) -> dict[str, Any]:
    return {"id": "n", "type": "action.http", "data": {"url": url, **data}, "timeout_s": 10}


def fake_resolver(names: dict[str, str]) -> Any:
    def resolve(host: str, port: int) -> list[str]:
        if host in names:
            return [names[host]]
        from conveyor.executor.egress import system_resolver

        return system_resolver(host, port)

    return resolve


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "127.1",
        "0x7f000001",
        "2130706433",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "169.254.169.254",
        "0.0.0.0",
        "[::]",
        "[fe80::1]",
        "[fd00:ec2::254]",
    ],
)
def test_default_denials(make_ctx: Any, port: int, host: str) -> None:
    outcome = execute(http(f"http://{host}:{port}/x"), make_ctx())
    assert outcome.error_category == ErrorCategory.CONNECTION, outcome.outputs
    assert "egress denied" in (outcome.error_message or "")
    assert "denied by default" in (outcome.error_message or "")


@pytest.mark.parametrize("host", ["0177.0.0.1", "0x7f.1", "017700000001", "127.000.000.001"])
def test_encoded_hosts_are_denied_by_the_policy(host: str) -> None:
    with pytest.raises(EgressDenied):
        EgressPolicy().check(host, 80)


def test_notify_is_checked_too(make_ctx: Any, port: int) -> None:
    node = {"id": "n", "type": "action.notify", "data": {"url": f"http://127.0.0.1:{port}/"}}
    outcome = execute(node, make_ctx())
    assert outcome.error_category == ErrorCategory.CONNECTION
    assert "egress denied" in (outcome.error_message or "")


def test_an_allowed_host_is_reached_at_the_checked_address(make_ctx: Any, port: int) -> None:
    # "svc.test" exists only in the policy's resolver: the request succeeds only if it is
    # sent to the address the policy checked, never resolved again.
    policy = EgressPolicy(
        allow=parse_rules("svc.test"), resolver=fake_resolver({"svc.test": "127.0.0.1"})
    )
    outcome = execute(http(f"http://svc.test:{port}/x"), make_ctx(egress=policy))
    assert outcome.succeeded, outcome.error_message
    assert outcome.outputs["output"]["host"] == f"svc.test:{port}"


def test_every_redirect_is_checked(make_ctx: Any, port: int) -> None:
    policy = EgressPolicy(
        allow=parse_rules("svc.test"), resolver=fake_resolver({"svc.test": "127.0.0.1"})
    )
    for target in (f"http://127.0.0.1:{port}/x", f"http://0x7f000001:{port}/x", "/x"):
        url = f"http://svc.test:{port}/redirect?to={target}"
        outcome = execute(http(url), make_ctx(egress=policy))
        if target == "/x":  # same origin, allowed by name
            assert outcome.succeeded, outcome.error_message
            continue
        assert outcome.error_category == ErrorCategory.CONNECTION, target
        assert "egress denied" in (outcome.error_message or "")


def test_redirects_drop_credentials_across_origins_and_turn_post_into_get(
    make_ctx: Any, port: int
) -> None:
    policy = EgressPolicy(
        allow=parse_rules("a.test,b.test"),
        resolver=fake_resolver({"a.test": "127.0.0.1", "b.test": "127.0.0.1"}),
    )
    url = f"http://a.test:{port}/redirect?code=302&to=http://b.test:{port}/x"
    node = http(url, method="POST", body="x", headers={"Authorization": "Bearer t"})
    outcome = execute(node, make_ctx(egress=policy))
    assert outcome.succeeded, outcome.error_message
    assert outcome.outputs["output"] == {"host": f"b.test:{port}", "method": "GET", "auth": None}


def test_rebinding_cannot_pass_a_check(make_ctx: Any, port: int) -> None:
    answers = iter(["127.0.0.1", "93.184.215.14"])

    def flipping(host: str, port: int) -> list[str]:
        return [next(answers)]

    policy = EgressPolicy(resolver=flipping)
    outcome = execute(http(f"http://rebind.test:{port}/x"), make_ctx(egress=policy))
    assert outcome.error_category == ErrorCategory.CONNECTION
    assert "loopback" in (outcome.error_message or "")


def test_own_endpoints_stay_denied_unless_their_port_is_allowed(make_ctx: Any, port: int) -> None:
    own = [Endpoint("127.0.0.1", port, "gateway service")]
    denied = EgressPolicy(allow=parse_rules("127.0.0.1"), own=own)
    outcome = execute(http(f"http://127.0.0.1:{port}/x"), make_ctx(egress=denied))
    assert "Conveyor's own gateway service" in (outcome.error_message or "")
    allowed = EgressPolicy(allow=parse_rules(f"127.0.0.1:{port}"), own=own)
    assert execute(http(f"http://127.0.0.1:{port}/x"), make_ctx(egress=allowed)).succeeded


def test_the_deny_list_wins(make_ctx: Any, port: int) -> None:
    policy = EgressPolicy(allow=parse_rules("127.0.0.0/8"), deny=parse_rules("127.0.0.1/32"))
    outcome = execute(http(f"http://127.0.0.1:{port}/x"), make_ctx(egress=policy))
    assert "CONVEYOR_EGRESS_DENY '127.0.0.1/32'" in (outcome.error_message or "")
    by_name = EgressPolicy(deny=parse_rules(".example.com"))
    with pytest.raises(EgressDenied):
        by_name.check("api.example.com", 443)


def test_own_endpoints_come_from_settings() -> None:
    settings = Settings(
        database_url="postgresql+psycopg://u:p@db.internal:5433/c",
        broker_url="redis://cache.internal/0",
        events_url="redis://cache.internal:6380/1",
        gateway_addr="0.0.0.0:50051",
        executor_metrics_port=9102,
    )
    found = {(e.host, e.port, e.label) for e in own_endpoints(settings)}
    assert ("db.internal", 5433, "database") in found
    assert ("cache.internal", 6379, "broker") in found
    assert ("cache.internal", 6380, "event bus") in found
    assert ("0.0.0.0", 50051, "gateway service") in found
    assert ("127.0.0.1", 9102, "executor metrics") in found


@pytest.mark.parametrize("text", ["a b", "10.0.0.0/8:x", "[::1", "host:99999", "/x"])
def test_bad_rules_are_refused(text: str) -> None:
    with pytest.raises(EgressRuleError):
        parse_rules(text)


def test_rules_parse() -> None:
    rules = parse_rules("api.example.com, .corp.example, 10.0.0.0/8, [fd00::1]:8443, h:80")
    assert [r.host for r in rules] == ["api.example.com", ".corp.example", None, None, "h"]
    assert [r.port for r in rules] == [None, None, None, 8443, 80]
