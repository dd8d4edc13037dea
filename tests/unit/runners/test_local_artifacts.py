"""LocalArtifactSink: layout, atomic writes and refusing paths outside its root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.artifacts.local import LocalArtifactSink


def test_save_and_open_round_trip(tmp_path: Path) -> None:
    sink = LocalArtifactSink(tmp_path)
    uri = sink.save("r1", "fetch", 2, "stdout", iter([b"hello ", b"world"]))
    assert uri.startswith("file://")
    assert (tmp_path / "r1" / "fetch" / "2" / "stdout").read_bytes() == b"hello world"
    with sink.read(uri) as f:
        assert f.read() == b"hello world"


def test_failed_save_leaves_nothing(tmp_path: Path) -> None:
    sink = LocalArtifactSink(tmp_path)
    sink.save("r1", "n", 1, "out", [b"old"])

    def broken() -> Iterator[bytes]:
        yield b"partial"
        raise OSError("stream broke")

    with pytest.raises(OSError, match="stream broke"):
        sink.save("r1", "n", 1, "out", broken())
    folder = tmp_path / "r1" / "n" / "1"
    assert sorted(p.name for p in folder.iterdir()) == ["out"]
    assert (folder / "out").read_bytes() == b"old"


@pytest.mark.parametrize("name", ["..", "a/b", ""])
def test_path_parts_cannot_escape(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid artifact path part"):
        LocalArtifactSink(tmp_path / "root").save("r", "n", 1, name, [b"x"])


def test_open_refuses_files_outside_the_root(tmp_path: Path) -> None:
    (tmp_path / "other").write_bytes(b"private")
    sink = LocalArtifactSink(tmp_path / "root")
    with pytest.raises(ValueError, match="outside"):
        sink.read((tmp_path / "other").as_uri())
    with pytest.raises(ValueError, match="not a local artifact"):
        sink.read("s3://bucket/key")
