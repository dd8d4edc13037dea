"""Masking of secrets split across reads."""

from __future__ import annotations

import pytest

from conveyor.executor.runners.base import Masker
from conveyor.executor.runners.capture import ByteMasker

TEXT = b"user=admin pass=hunter2 token=abcabd again hunter2hunter2 tail abc"
SECRETS = ["hunter2", "abcabd", "ab"]


def masked_in_pieces(pieces: list[bytes]) -> bytes:
    masker = ByteMasker(Masker(SECRETS))
    out = b"".join(masker.feed(p) for p in pieces)
    return out + masker.flush()


def test_whole_stream_masking() -> None:
    assert masked_in_pieces([TEXT]) == (b"user=admin pass=*** token=*** again ****** tail ***c")


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_any_split_gives_the_same_result(size: int) -> None:
    pieces = [TEXT[i : i + size] for i in range(0, len(TEXT), size)]
    assert masked_in_pieces(pieces) == masked_in_pieces([TEXT])


def test_nothing_is_held_back_when_no_secret_could_start() -> None:
    masker = ByteMasker(Masker(["hunter2"]))
    assert masker.feed(b"line one\n") == b"line one\n"
    assert masker.feed(b"ends with hun") == b"ends with "
    assert masker.feed(b"gry\n") == b"hungry\n"
