"""Output beyond the inline cap streams to the artifact writer while it is produced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor.executor.runners.base import StepError
from conveyor.executor.runners.capture import StreamCapture
from conveyor.executor.runners.declared import find_files
from conveyor.translator.domain import compile_workflow


class FakeWriter:
    def __init__(self) -> None:
        self.received = 0
        self.closed = self.aborted = False
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.received += len(data)
        if len(self.chunks) < 4:
            self.chunks.append(data)

    def close(self) -> dict[str, Any]:
        self.closed = True
        return {"name": "stdout", "uri": "artifact://x", "size": self.received, "sha256": ""}

    def abort(self) -> None:
        self.aborted = True


def test_stream_capture_hands_bytes_on_as_they_come() -> None:
    writer = FakeWriter()
    capture = StreamCapture("stdout", 10, stream_to=lambda: writer)
    capture.write(b"0123456789")
    assert writer.received == 0 and not capture.truncated
    capture.write(b"abcdef")
    # The head goes first, then the rest: the writer has everything so far.
    assert writer.chunks == [b"0123456789", b"abcdef"]
    for _ in range(1000):
        capture.write(b"x" * 1000)
        assert writer.received == capture.size  # nothing held back in the capture
    assert capture.head_text() == "0123456789"
    record = capture.save(None, run_id="r", node_id="n", attempt=1)  # type: ignore[arg-type]
    assert record is not None and record["size"] == 16 + 1_000_000 and writer.closed
    capture.close()
    assert not writer.aborted


def test_unfinished_stream_is_aborted() -> None:
    writer = FakeWriter()
    capture = StreamCapture("stdout", 1, stream_to=lambda: writer)
    capture.write(b"abc")
    capture.close()
    assert writer.aborted


def test_writer_failure_is_infra() -> None:
    class Broken(FakeWriter):
        def close(self) -> dict[str, Any]:
            raise OSError("store down")

    capture = StreamCapture("stdout", 1, stream_to=Broken)
    capture.write(b"abc")
    with pytest.raises(StepError, match="could not save artifact stdout"):
        capture.save(None, run_id="r", node_id="n", attempt=1)  # type: ignore[arg-type]


def test_find_files_nested_missing_and_escaping(tmp_path: Path) -> None:
    root = tmp_path / "w"
    (root / "out" / "deep").mkdir(parents=True)
    (root / "out" / "a.txt").write_text("a")
    (root / "out" / "deep" / "b.txt").write_text("b")
    (tmp_path / "secret").write_text("s")
    (root / "out" / "link.txt").symlink_to(tmp_path / "secret")
    files, warnings = find_files(root, ["out/**/*.txt", "none/*", "out/a.txt"], limit=10)
    assert [p.relative_to(root).as_posix() for p in files] == ["out/a.txt", "out/deep/b.txt"]
    assert "out/link.txt leaves the working directory" in warnings
    assert "pattern 'none/*' matched no file" in warnings
    files, warnings = find_files(root, ["out/**/*.txt"], limit=1)
    assert len(files) == 1 and any("more than 1 files" in w for w in warnings)


def _doc(patterns: Any) -> str:
    import json

    return json.dumps(
        {
            "schema": "conveyor/v1",
            "name": "declared",
            "nodes": [
                {
                    "id": "a",
                    "type": "action.command",
                    "position": {"x": 0, "y": 0},
                    "data": {"argv": ["true"], "artifacts": patterns},
                }
            ],
            "edges": [],
        }
    )


@pytest.mark.parametrize(
    "patterns", [["../up/*"], ["/etc/*"], ["ok", "a/../../b"], ["bad\x01"], "not-a-list", [1]]
)
def test_translator_refuses_patterns_leaving_the_working_directory(patterns: Any) -> None:
    result = compile_workflow(_doc(patterns))
    assert not result.ok
    (problem,) = [d for d in result.diagnostics if d.severity == "error"]
    assert (problem.code, problem.path) == ("INVALID_FIELD", "/nodes/0/data/artifacts")


def test_translator_accepts_patterns() -> None:
    result = compile_workflow(_doc(["out/*.tar.gz", "report.html", "logs/**/*.log"]))
    assert result.ok, result.diagnostics
    assert result.plan is not None
