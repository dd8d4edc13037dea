"""Browser fixtures: a real embedded Conveyor and Debian's Chromium driven by Playwright.

The browser is the system's (`/usr/bin/chromium`, or CONVEYOR_TEST_CHROMIUM); Playwright
never downloads one. The tests are skipped when neither the package nor the browser exists.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration import harness

CHROMIUM = os.environ.get("CONVEYOR_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)


#: A secret the embedded worker knows as `secrets.E2E_KEY` (masked wherever it would show).
SECRET = "e2e-Sup3r-secret-value"


@pytest.fixture(scope="session")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The embedded suite on free ports, with its data dir."""
    data = tmp_path_factory.mktemp("dashboard")
    saved = os.environ.get("CONVEYOR_SECRET_E2E_KEY")
    os.environ["CONVEYOR_SECRET_E2E_KEY"] = SECRET  # read by the worker as it starts
    try:
        with harness.embedded(data) as addresses:
            yield {**addresses, "data_dir": data}
    finally:
        if saved is None:
            os.environ.pop("CONVEYOR_SECRET_E2E_KEY", None)
        else:
            os.environ["CONVEYOR_SECRET_E2E_KEY"] = saved


@pytest.fixture(scope="session")
def token(suite: dict[str, Any]) -> str:
    """The suite's admin token (the one `conveyor dev` writes to `<data dir>/token`)."""
    if suite.get("token"):
        return str(suite["token"])
    return (Path(suite["data_dir"]) / "token").read_text().strip()


@pytest.fixture(scope="session")
def http(suite: dict[str, Any], token: str) -> Iterator[httpx.Client]:
    """An HTTP client of the gateway, signed in as the admin."""
    with httpx.Client(
        base_url=suite["http"], headers={"authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        yield client


# Module scope: sync Playwright keeps an event loop running in the main thread while it is
# open, which would break every later test that calls asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session."""
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, suite: dict[str, Any]) -> Iterator[Any]:
    """A fresh tab (its own session storage) at a laptop's screen size."""
    context = browser.new_context(viewport={"width": 1366, "height": 820}, base_url=suite["http"])
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


def sign_in(page: Any, token: str) -> None:
    """Open the dashboard and sign in with the token."""
    page.goto("/")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation", name="Main").wait_for()


def create_job(http: httpx.Client, workflow: dict[str, Any]) -> str:
    """Save a workflow as a job; its id."""
    reply = http.post("/v1/jobs", json={"workflow": workflow, "update_existing": True})
    reply.raise_for_status()
    return str(reply.json()["job"]["job_id"])
