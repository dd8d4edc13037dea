"""The token a command uses, found without importing any RPC machinery.

The root `--token` option sets it for every client of the command; `resolve_token` then falls
back to CONVEYOR_TOKEN and to the token `conveyor dev` writes.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Where `conveyor dev` (default data dir) leaves its admin token.
DEV_TOKEN_FILE = Path(".conveyor") / "token"
_session: dict[str, str | None] = {}


def set_session_token(token: str | None) -> None:
    """The token given on the command line (`--token`), for every client of this command."""
    _session["token"] = token


def resolve_token(explicit: str | None = None) -> str | None:
    """--token, else CONVEYOR_TOKEN, else ./.conveyor/token when it exists, else none."""
    for candidate in (explicit, _session.get("token"), os.environ.get("CONVEYOR_TOKEN")):
        if candidate and candidate.strip():
            return candidate.strip()
    try:
        text = DEV_TOKEN_FILE.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None
