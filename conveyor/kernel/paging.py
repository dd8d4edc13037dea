"""Page size and opaque page token handling shared by every List RPC."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from conveyor.kernel.errors import InvalidArgument, Violation

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int) -> int:
    """0 means the default (50); negative or above 500 is INVALID_ARGUMENT."""
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    if requested < 0 or requested > MAX_PAGE_SIZE:
        raise InvalidArgument(
            f"page_size must be between 0 and {MAX_PAGE_SIZE}",
            violations=[Violation("page_size", f"got {requested}", "OUT_OF_RANGE")],
        )
    return requested


def decode_token(token: str, *, scope: Any = None) -> str:
    """The last key a previous page ended on; "" for no token.

    A token is bound to the request it came from: `scope` is what the List call filters and
    orders by (the same value its `encode_token` got). A token made for another filter or
    order, or by no List response at all, is INVALID_ARGUMENT rather than a page of another
    listing.
    """
    if not token:
        return ""
    try:
        raw = base64.b64decode(token.encode(), altchars=b"-_", validate=True)
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:  # binascii.Error, JSONDecodeError
        raise bad_token() from exc
    if not isinstance(body, dict) or not isinstance(body.get("k"), str):
        raise bad_token()
    if body.get("s") != _digest(scope):
        raise InvalidArgument(
            "page_token belongs to a listing with other filters or order",
            violations=[
                Violation(
                    "page_token",
                    "made for other filters or order: repeat the first request's filters, or"
                    " start again without a token",
                    "TOKEN_FILTER_MISMATCH",
                )
            ],
        )
    return str(body["k"])


def bad_token() -> InvalidArgument:
    """The error for a page token that no List response produced."""
    return InvalidArgument(
        "page_token is not valid",
        violations=[Violation("page_token", "not a token from a previous response", "INVALID")],
    )


def encode_token(key: str, *, scope: Any = None) -> str:
    """An opaque token for the page after `key`, bound to `scope` (see decode_token)."""
    body = json.dumps({"k": key, "s": _digest(scope)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode()


def _digest(scope: Any) -> str:
    text = json.dumps(scope, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
