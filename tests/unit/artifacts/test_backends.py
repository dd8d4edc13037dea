"""The local-folder backend and the chunk reader feeding minio's multipart upload."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from conveyor.artifacts.backends import FileStore, _ChunkReader, open_store, parse_s3_url
from conveyor.artifacts.domain import object_key
from conveyor.kernel.settings import Settings


def test_file_store_roundtrip_ranges_and_delete(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "root")
    key = object_key("r", "n", 1)
    store.put(key, iter([b"hello ", b"world"]), content_type="text/plain")
    assert b"".join(store.read(key, 0, 11)) == b"hello world"
    assert b"".join(store.read(key, 6, 3)) == b"wor"
    assert store.presign(key, timedelta(minutes=1)) == ""
    store.delete(key)
    store.delete(key)  # idempotent
    assert list((tmp_path / "root").iterdir()) == []


def test_file_store_failed_put_leaves_nothing(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    key = object_key("r", "n", 1)

    def chunks():  # type: ignore[no-untyped-def]
        yield b"part"
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        store.put(key, chunks(), content_type="x/y")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("key", ["../outside", "runs/a/b/1/../../../../etc", "/etc/passwd"])
def test_file_store_refuses_foreign_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="service-made"):
        FileStore(tmp_path).path(key)


def test_chunk_reader_returns_exact_parts() -> None:
    reader = _ChunkReader(iter([b"abc", b"defgh", b"", b"ij"]))
    assert reader.read(4) == b"abcd"
    assert reader.read(5) == b"efghi"
    assert reader.read(5) == b"j"
    assert reader.read(5) == b""


def test_s3_urls() -> None:
    loc = parse_s3_url("s3://bucket/pre/fix?endpoint=http://127.0.0.1:9000")
    assert (loc.bucket, loc.endpoint, loc.secure, loc.prefix) == (
        "bucket",
        "127.0.0.1:9000",
        False,
        "pre/fix",
    )
    assert parse_s3_url("s3://b").secure is True
    for bad in ("s3://", "http://b", "s3://b?endpoint=ftp://x"):
        with pytest.raises(ValueError):
            parse_s3_url(bad)


def test_open_store_by_url(tmp_path: Path) -> None:
    store = open_store(Settings(artifacts_url=(tmp_path / "a").as_uri()))
    assert isinstance(store, FileStore)
    assert store.root == (tmp_path / "a").resolve()
    with pytest.raises(ValueError, match="file:// or s3://"):
        open_store(Settings(artifacts_url="ftp://x"))
