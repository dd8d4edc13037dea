"""``action.http`` and ``action.notify``: one HTTP request per attempt.

``action.http`` takes ``method`` (default GET), ``url``, ``headers``,
``query``, ``json`` (any JSON value, rendered with native types) or ``body``
(text), ``expect_status`` (a list of codes and ranges such as ``"200-299"``;
default 200-299) and ``output``: ``json``, ``text``, or when absent ``json``
for a JSON content type and ``text`` otherwise. Redirects are followed (up to
10), as a browser or most HTTP clients would, each hop checked by the egress
policy (`conveyor.executor.egress`); credentials headers are dropped when a
redirect leaves the origin. The response body is captured like a
process's stdout: inline up to the cap, the whole body in an artifact
``body`` beyond it.

``action.notify`` POSTs ``json`` or ``body`` to ``url`` with ``headers`` and
expects a 2xx answer; its only output is ``status``.

Failures: an unexpected status is ``HTTP_STATUS`` (the outputs are still
returned), a refused or broken connection or a destination the egress policy
denies ``CONNECTION`` (the message says ``egress denied`` and names the rule),
and running past the node's timeout ``TIMEOUT``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import httpx

from conveyor.executor.egress import EgressDenied, EgressPolicy
from conveyor.executor.runners.base import (
    ErrorCategory,
    Masker,
    Renderer,
    StepContext,
    StepError,
    StepOutcome,
    invalid_field,
)
from conveyor.executor.runners.capture import ByteMasker, StreamCapture
from conveyor.executor.runners.command import node_timeout

DEFAULT_EXPECT = [(200, 299)]
OUTPUT_MODES = ("json", "text")


def parse_expect_status(node_id: str, raw: Any) -> list[tuple[int, int]]:
    """Turn ``expect_status`` (codes, ``"200"``, ``"200-299"``) into inclusive ranges."""
    if raw is None:
        return list(DEFAULT_EXPECT)
    items = raw if isinstance(raw, list) else [raw]
    ranges: list[tuple[int, int]] = []
    for item in items:
        try:
            if isinstance(item, str) and "-" in item:
                low, high = (int(part) for part in item.split("-", 1))
            else:
                low = high = int(item)
        except (TypeError, ValueError) as exc:
            raise invalid_field(
                node_id, "data.expect_status", f"{item!r} is not a status code or range"
            ) from exc
        ranges.append((low, high))
    if not ranges:
        raise invalid_field(node_id, "data.expect_status", "expected at least one status")
    return ranges


def _describe(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


MAX_REDIRECTS = 10
_REDIRECTS = (301, 302, 303, 307, 308)
# Headers that carry credentials: dropped when a redirect leaves the origin.
_CREDENTIALS = ("authorization", "cookie", "proxy-authorization")


class _Request:
    """A rendered request, ready to send."""

    def __init__(self, r: Renderer, *, default_method: str, with_query: bool) -> None:
        url = r.field_text("url")
        if not url:
            raise invalid_field(r.node_id, "data.url", "is required")
        self.url = url
        self.method = (r.field_text("method") or default_method).upper()
        self.headers = r.field_map("headers")
        self.query = r.field_map("query") if with_query else {}
        self.json: Any = None
        self.content: bytes | None = None
        if r.data.get("json") is not None:
            self.json = r.native(r.data["json"], "data.json")
        elif r.data.get("body") is not None:
            self.content = (r.field_text("body") or "").encode()

    def first(self, client: httpx.Client) -> httpx.Request:
        """The request as the node describes it (before any redirect)."""
        return client.build_request(
            self.method,
            self.url,
            params=self.query or None,
            headers=self.headers,
            json=self.json,
            content=self.content,
        )


def _pinned(request: httpx.Request, policy: EgressPolicy) -> httpx.Request:
    """`request` sent to the address the policy checked, with the name kept for Host and TLS."""
    url = request.url
    if url.scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"unsupported scheme {url.scheme!r}")
    host = url.host
    if not host:
        raise httpx.InvalidURL("the URL has no host")
    port = url.port or (443 if url.scheme == "https" else 80)
    address = policy.check(host, port)
    headers = request.headers.copy()
    headers["Host"] = url.netloc.decode("ascii").rpartition("@")[2]
    extensions = dict(request.extensions)
    if url.scheme == "https":
        extensions["sni_hostname"] = host
    return httpx.Request(
        request.method,
        url.copy_with(host=address),
        headers=headers,
        content=request.content,
        extensions=extensions,
    )


def _redirected(request: httpx.Request, response: httpx.Response) -> httpx.Request:
    """The next request of a redirect, built the way browsers and httpx do."""
    location = response.headers.get("location", "")
    url = request.url.join(location)
    method = request.method
    content: bytes | None = request.content
    headers = request.headers.copy()
    if (response.status_code == 303 and method != "HEAD") or (
        response.status_code in (301, 302) and method == "POST"
    ):
        method, content = "GET", None
        for name in ("content-length", "content-type", "transfer-encoding"):
            headers.pop(name, None)
    if (url.scheme, url.host, url.port) != (request.url.scheme, request.url.host, request.url.port):
        for name in _CREDENTIALS:
            headers.pop(name, None)
    headers.pop("host", None)
    return httpx.Request(method, url, headers=headers, content=content)


def _send(
    request: _Request, *, ctx: StepContext, masker: Masker, timeout_s: float | None
) -> tuple[httpx.Response, StreamCapture, int]:
    """Send the request (following redirects, each hop egress-checked) and read the body."""
    body = StreamCapture("body", ctx.inline_output_cap)
    started = time.monotonic()
    left = ctx.remaining(timeout_s)
    deadline = None if left is None else started + left
    byte_masker = ByteMasker(masker)
    shown = request.url
    try:
        # trust_env=False: a proxy from the environment would connect instead of the checked
        # address, so the egress policy could not hold.
        with httpx.Client(timeout=left, follow_redirects=False, trust_env=False) as client:
            logical = request.first(client)
            for hop in range(MAX_REDIRECTS + 1):
                shown = str(logical.url)
                response = client.send(_pinned(logical, ctx.egress), stream=True)
                if response.status_code not in _REDIRECTS or "location" not in response.headers:
                    break
                response.close()
                if hop == MAX_REDIRECTS:
                    raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")
                logical = _redirected(logical, response)
            try:
                for chunk in response.iter_bytes():
                    body.write(byte_masker.feed(chunk))
                    if ctx.is_cancelled():
                        raise StepError(ErrorCategory.CANCELLED, "cancelled while receiving")
                    if deadline is not None and time.monotonic() >= deadline:
                        raise httpx.ReadTimeout("the response took too long")
                body.write(byte_masker.flush())
            finally:
                response.close()
    except StepError:
        body.close()
        raise
    except EgressDenied as exc:
        body.close()
        raise StepError(
            ErrorCategory.CONNECTION, f"{request.method} {shown}: egress denied: {exc}"
        ) from exc
    except httpx.TimeoutException as exc:
        body.close()
        raise StepError(
            ErrorCategory.TIMEOUT, f"timed out after {timeout_s:g} s: {shown}: {exc}"
        ) from exc
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        body.close()
        raise invalid_field(ctx.node_id, "data.url", f"{shown}: {exc}") from exc
    except (httpx.HTTPError, OSError) as exc:
        body.close()
        raise StepError(
            ErrorCategory.CONNECTION, f"{request.method} {shown} failed: {exc}"
        ) from exc
    return response, body, round((time.monotonic() - started) * 1000)


def _is_json(response: httpx.Response) -> bool:
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return bool(kind == "application/json" or kind.endswith("+json"))


def run_http(node: Mapping[str, Any], ctx: StepContext, masker: Masker) -> StepOutcome:
    """Execute an ``action.http`` node."""
    r = Renderer(ctx.node_id, node.get("data") or {}, ctx.scope)
    request = _Request(r, default_method="GET", with_query=True)
    expect = parse_expect_status(
        ctx.node_id, r.native(r.data.get("expect_status"), "data.expect_status")
    )
    mode = r.data.get("output")
    if mode is not None and mode not in OUTPUT_MODES:
        raise invalid_field(
            ctx.node_id, "data.output", f"expected one of {', '.join(OUTPUT_MODES)}"
        )
    response, body, duration_ms = _send(
        request, ctx=ctx, masker=masker, timeout_s=node_timeout(node, ctx)
    )
    try:
        encoding = response.charset_encoding or "utf-8"
        outputs: dict[str, Any] = {
            "status": response.status_code,
            "headers": {k.lower(): v for k, v in response.headers.items()},
            "body": body.text(encoding),
            "output": None,
            "duration_ms": duration_ms,
            "body_truncated": body.truncated,
        }
        artifacts: list[dict[str, Any]] = []
        record = body.save(
            ctx.artifacts, run_id=ctx.run_id, node_id=ctx.node_id, attempt=ctx.attempt
        )
        if record is not None:
            artifacts.append(record)
            outputs["body_uri"] = record["uri"]
        parse_error: str | None = None
        if mode == "json" or (mode is None and _is_json(response)):
            if body.truncated:
                parse_error = (
                    f"response body is too large to parse as json: {body.size} bytes,"
                    f" more than the inline cap of {body.cap} bytes"
                )
            else:
                try:
                    outputs["output"] = json.loads(body.head_text(encoding))
                except json.JSONDecodeError as exc:
                    parse_error = f"response body is not valid JSON: {exc}"
        else:
            outputs["output"] = outputs["body"]
        status = response.status_code
        if not any(lo <= status <= hi for lo, hi in expect):
            raise StepError(
                ErrorCategory.HTTP_STATUS,
                f"unexpected HTTP status {status} (expected {_describe(expect)})"
                f" from {request.method} {request.url}",
                outputs=outputs,
                artifacts=artifacts,
            )
        if parse_error is not None:
            raise StepError(
                ErrorCategory.INTERNAL, parse_error, outputs=outputs, artifacts=artifacts
            )
        return StepOutcome(succeeded=True, outputs=outputs, artifacts=artifacts)
    finally:
        body.close()


def run_notify(node: Mapping[str, Any], ctx: StepContext, masker: Masker) -> StepOutcome:
    """Execute an ``action.notify`` node: POST to a webhook, expect 2xx."""
    r = Renderer(ctx.node_id, node.get("data") or {}, ctx.scope)
    request = _Request(r, default_method="POST", with_query=False)
    response, body, _ = _send(request, ctx=ctx, masker=masker, timeout_s=node_timeout(node, ctx))
    body.close()
    status = response.status_code
    if not 200 <= status <= 299:
        raise StepError(
            ErrorCategory.HTTP_STATUS,
            f"unexpected HTTP status {status} (expected 200-299)"
            f" from {request.method} {request.url}",
            outputs={"status": status},
        )
    return StepOutcome(succeeded=True, outputs={"status": status})
