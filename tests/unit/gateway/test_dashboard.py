"""The gateway serves the built dashboard at `/` and leaves every other path to the API."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from conveyor.auth.authn import Authenticator
from conveyor.gateway.dashboard import STATIC_DIR
from conveyor.gateway.forward import Forwarder
from conveyor.gateway.http import build_http_app


def _client() -> TestClient:
    open_access = Authenticator(None, open_access=True)
    return TestClient(build_http_app(forwarder=Forwarder(routes={}), authenticator=open_access))


def test_index_is_served_uncached_with_a_strict_policy() -> None:
    with _client() as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert '<div id="root">' in response.text


def test_assets_named_by_the_index_are_served_immutable() -> None:
    index = (STATIC_DIR / "index.html").read_text()
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', index)
    assert assets, "the index names its bundle"
    with _client() as client:
        for path in assets:
            response = client.get(path)
            assert response.status_code == 200, path
            assert "immutable" in response.headers["cache-control"]


def test_api_paths_still_answer_json() -> None:
    with _client() as client:
        missing_asset = client.get("/assets/nope.js")
        api = client.get("/v1/runs")
    assert missing_asset.status_code == 404
    assert api.status_code == 404
    assert api.json()["error"]["status"] == "NOT_FOUND"
