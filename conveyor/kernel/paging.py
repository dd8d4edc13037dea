"""Page size and opaque page token handling shared by every List RPC."""

from __future__ import annotations

import base64

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


def decode_token(token: str) -> str:
    """Page tokens are the opaque base64 of the last key seen."""
    if not token:
        return ""
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError) as exc:  # binascii.Error is a ValueError
        raise bad_token() from exc


def bad_token() -> InvalidArgument:
    """The error for a page token that no List response produced."""
    return InvalidArgument(
        "page_token is not valid",
        violations=[Violation("page_token", "not a token from a previous response", "INVALID")],
    )


def encode_token(key: str) -> str:
    """Inverse of decode_token."""
    return base64.urlsafe_b64encode(key.encode()).decode()
