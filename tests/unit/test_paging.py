"""Page tokens: opaque, and bound to the filters and order of the listing they came from."""

from __future__ import annotations

import base64

import pytest

from conveyor.kernel.errors import InvalidArgument
from conveyor.kernel.paging import decode_token, encode_token


def test_a_token_returns_its_key_for_the_same_listing() -> None:
    scope = ("runs", "job-1", ["FAILED"])
    assert decode_token(encode_token("2026-01-01|r9", scope=scope), scope=scope) == "2026-01-01|r9"
    assert decode_token("", scope=scope) == ""


@pytest.mark.parametrize(
    "other", [("runs", "job-2", ["FAILED"]), ("runs", "job-1", []), ("schedules", "job-1"), None]
)
def test_a_token_of_another_filter_is_refused(other: object) -> None:
    token = encode_token("k", scope=("runs", "job-1", ["FAILED"]))
    with pytest.raises(InvalidArgument) as caught:
        decode_token(token, scope=other)
    [violation] = caught.value.violations
    assert (violation.field, violation.reason) == ("page_token", "TOKEN_FILTER_MISMATCH")


@pytest.mark.parametrize(
    "token",
    [
        "not base64!",
        base64.urlsafe_b64encode(b"plain key").decode(),
        base64.urlsafe_b64encode(b'{"s": "x"}').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
    ],
)
def test_a_token_no_listing_made_is_refused(token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_token(token, scope="rules")
    assert caught.value.violations[0].reason == "INVALID"
