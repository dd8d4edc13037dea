"""action.http and action.notify against a local HTTP server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conveyor.executor.egress import EgressPolicy, parse_rules
from conveyor.executor.runners import ErrorCategory, execute

# The test server listens on loopback, which steps may not reach by default.
LOCAL = EgressPolicy(allow=parse_rules("127.0.0.1"))


@pytest.fixture
def make_ctx(make_ctx: Any) -> Any:
    def make(**options: Any) -> Any:
        options.setdefault("egress", LOCAL)
        return make_ctx(**options)

    return make


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        if url.path.startswith("/status/"):
            self._reply(int(url.path.rsplit("/", 1)[1]), b'{"error": "nope"}')
        elif url.path == "/slow":
            time.sleep(1.0)
            self._reply(200, b"{}")
        elif url.path == "/text":
            self._reply(200, b"plain words", "text/plain; charset=utf-8")
        else:
            echo = {
                "method": self.command,
                "query": {k: v[0] for k, v in parse_qs(url.query).items()},
                "header": self.headers.get("X-Token"),
                "body": body,
            }
            self._reply(200, json.dumps(echo).encode())


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def http(timeout_s: float | None = None, **data: Any) -> dict[str, Any]:
    return {"id": "h", "type": "action.http", "data": data, "timeout_s": timeout_s}


def test_json_request_and_output(make_ctx: Any, server: str) -> None:
    node = http(
        method="post",
        url=server + "/echo",
        query={"page": "{{ params.page }}"},
        headers={"X-Token": "t-{{ params.page }}"},
        json={"count": "{{ params.page }}", "tags": ["a"]},
        output="json",
    )
    outcome = execute(node, make_ctx(params={"page": 2}))
    assert outcome.succeeded, outcome.error_message
    assert outcome.outputs["status"] == 200
    assert outcome.outputs["headers"]["content-type"] == "application/json"
    out = outcome.outputs["output"]
    assert out["method"] == "POST"
    assert out["query"] == {"page": "2"}
    assert out["header"] == "t-2"
    # A lone {{ expr }} keeps its native type inside the JSON body.
    assert json.loads(out["body"]) == {"count": 2, "tags": ["a"]}


def test_text_body_and_default_output_by_content_type(make_ctx: Any, server: str) -> None:
    outcome = execute(http(url=server + "/text"), make_ctx())
    assert outcome.outputs["body"] == "plain words"
    assert outcome.outputs["output"] == "plain words"


def test_unexpected_status_is_http_status(make_ctx: Any, server: str) -> None:
    outcome = execute(http(url=server + "/status/404"), make_ctx())
    assert outcome.error_category is ErrorCategory.HTTP_STATUS
    assert outcome.error_message is not None
    assert "404" in outcome.error_message
    assert outcome.outputs["status"] == 404
    assert outcome.outputs["output"] == {"error": "nope"}


def test_expect_status_ranges(make_ctx: Any, server: str) -> None:
    node = http(url=server + "/status/404", expect_status=[200, "400-499"])
    assert execute(node, make_ctx()).succeeded


def test_refused_connection(make_ctx: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome = execute(http(url=f"http://127.0.0.1:{port}/"), make_ctx())
    assert outcome.error_category is ErrorCategory.CONNECTION


def test_timeout(make_ctx: Any, server: str) -> None:
    outcome = execute(http(timeout_s=0.2, url=server + "/slow"), make_ctx())
    assert outcome.error_category is ErrorCategory.TIMEOUT


def test_secret_in_url_is_masked_in_the_error(make_ctx: Any, server: str) -> None:
    node = http(url=server + "/status/500?key={{ params.key }}")
    outcome = execute(node, make_ctx(params={"key": "k-123456"}, secrets_to_mask=["k-123456"]))
    assert outcome.error_message is not None
    assert "k-123456" not in outcome.error_message
    assert "key=***" in outcome.error_message


def test_notify_posts_and_reports_status(make_ctx: Any, server: str) -> None:
    node = {
        "id": "n",
        "type": "action.notify",
        "data": {"url": server + "/hook", "json": {"text": "run {{ run.id }} done"}},
        "timeout_s": None,
    }
    outcome = execute(node, make_ctx())
    assert outcome.succeeded
    assert outcome.outputs == {"status": 200}


def test_notify_failure_status(make_ctx: Any, server: str) -> None:
    node = {
        "id": "n",
        "type": "action.notify",
        "data": {"url": server + "/status/503", "body": "x"},
    }
    outcome = execute(node, make_ctx())
    assert outcome.error_category is ErrorCategory.HTTP_STATUS
    assert outcome.outputs == {"status": 503}
