"""The dashboard: the built single-page app, served at `/` from files inside the package.

The page is built from web/ (`npm ci && npm run build`) into conveyor/gateway/static/, which
is committed and shipped as package data, so the gateway serves it with nothing else to
install or start. The page routes with the URL fragment (`/#/runs/...`), so every other path
stays the API's.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"

# The page loads only its own scripts and styles and talks only to this origin.
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


async def _index(_: Request) -> Response:
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return JSONResponse(
            {"error": {"code": 404, "status": "NOT_FOUND", "message": "dashboard not built"}},
            status_code=404,
        )
    # Never cached: it names the current hashed asset files.
    return FileResponse(index, headers={**_SECURITY_HEADERS, "cache-control": "no-cache"})


class _Assets(StaticFiles):
    """Hashed, immutable asset files."""

    def file_response(self, *args: object, **kwargs: object) -> Response:  # type: ignore[override]
        response = super().file_response(*args, **kwargs)  # type: ignore[arg-type]
        response.headers["cache-control"] = "public, max-age=31536000, immutable"
        response.headers["x-content-type-options"] = "nosniff"
        return response


def dashboard_routes() -> list[BaseRoute]:
    """`/` answers the page; `/assets/...` its scripts and styles."""
    return [
        Route("/", _index, methods=["GET", "HEAD"]),
        Mount("/assets", app=_Assets(directory=STATIC_DIR / "assets", check_dir=False)),
    ]
