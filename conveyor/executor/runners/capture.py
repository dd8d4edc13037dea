"""Capturing a step's output streams: masking, an inline head, spilling, live batches.

Bytes flow through a `ByteMasker` first, so no secret reaches the inline text,
the artifact or the live log, even when it arrives split across reads. The
masked stream then goes to a `StreamCapture`, which keeps the first
``cap`` bytes inline and, once the stream is longer, writes the whole stream
to a temporary file that is handed to the artifact sink when the step ends;
memory use stays bounded however much a step prints. `LiveOutput` batches the
same bytes into whole lines for the live-log callback.
"""

from __future__ import annotations

import codecs
import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import structlog

from conveyor.executor.runners.base import (
    MASK,
    ArtifactSink,
    ErrorCategory,
    Masker,
    StepError,
)

log = structlog.get_logger(__name__)

_MASK_BYTES = MASK.encode()
_CHUNK = 64 * 1024
_TAIL = 4096


class ByteMasker:
    """Masks secrets in a byte stream that arrives in arbitrary pieces.

    Holds back only the shortest suffix that could still grow into a secret, so
    ordinary output passes through without delay.
    """

    def __init__(self, masker: Masker) -> None:
        self._pattern = masker.bytes_pattern
        secrets = masker.secret_bytes
        self._prefixes = {s[:i] for s in secrets for i in range(1, len(s))}
        self._hold = max((len(s) for s in secrets), default=1) - 1
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        """Masked bytes that are safe to pass on; may return less than was fed."""
        if self._pattern is None:
            return data
        buf = self._carry + data
        keep = 0
        for size in range(min(self._hold, len(buf)), 0, -1):
            if buf[-size:] in self._prefixes:
                keep = size
                break
        cut = len(buf) - keep
        out: list[bytes] = []
        pos = 0
        for match in self._pattern.finditer(buf):
            if match.start() >= cut:
                break
            out.append(buf[pos : match.start()])
            out.append(_MASK_BYTES)
            pos = match.end()
        cut = max(cut, pos)
        out.append(buf[pos:cut])
        self._carry = buf[cut:]
        return b"".join(out)

    def flush(self) -> bytes:
        """Whatever is still held back, masked; call once at the end of the stream."""
        if self._pattern is None:
            return b""
        rest, self._carry = self._carry, b""
        return self._pattern.sub(_MASK_BYTES, rest)


class StreamCapture:
    """Keeps the head of one stream inline; past the cap, the whole stream goes to a file."""

    def __init__(self, name: str, cap: int) -> None:
        self.name = name
        self.cap = max(cap, 0)
        self.size = 0
        self._head = bytearray()
        self._tail = bytearray()
        self._spill: IO[bytes] | None = None

    @property
    def truncated(self) -> bool:
        """Whether the stream was longer than the inline cap."""
        return self._spill is not None

    def write(self, data: bytes) -> None:
        """Append bytes to the stream."""
        if not data:
            return
        self.size += len(data)
        self._tail += data
        del self._tail[:-_TAIL]
        if self._spill is not None:
            self._spill.write(data)
            return
        room = self.cap - len(self._head)
        if len(data) <= room:
            self._head += data
            return
        self._head += data[:room]
        # The artifact holds every byte, so the head already kept inline goes first.
        # The file outlives this call; close() releases it.
        self._spill = tempfile.TemporaryFile(prefix="conveyor-output-")  # noqa: SIM115
        self._spill.write(self._head)
        self._spill.write(data[room:])

    def head_text(self, encoding: str = "utf-8") -> str:
        """The inline part, decoded, without any truncation marker."""
        return self._head.decode(encoding, errors="replace")

    def text(self, encoding: str = "utf-8") -> str:
        """The inline part, ending with a marker line when the stream was truncated."""
        text = self.head_text(encoding)
        if self.truncated:
            text += (
                f"\n[… output truncated at {self.cap} bytes;"
                f" full {self.size} bytes in artifact {self.name}]"
            )
        return text

    def last_line(self) -> str:
        """The last non-blank line of the stream (from its end, even when truncated)."""
        for line in reversed(self._tail.decode("utf-8", errors="replace").splitlines()):
            if line.strip():
                return line.strip()
        return ""

    def save(
        self, sink: ArtifactSink, *, run_id: str, node_id: str, attempt: int
    ) -> dict[str, Any] | None:
        """Hand a spilled stream to the sink; returns the artifact record, or None if inline."""
        if self._spill is None:
            return None
        spill = self._spill
        spill.flush()
        spill.seek(0)
        digest = hashlib.sha256()
        size = 0

        def chunks() -> Iterator[bytes]:
            nonlocal size
            while block := spill.read(_CHUNK):
                digest.update(block)
                size += len(block)
                yield block

        try:
            uri = sink.save(run_id, node_id, attempt, self.name, chunks())
        except Exception as exc:  # a sink is pluggable: any failure is infrastructure
            raise StepError(
                ErrorCategory.INFRA, f"could not save artifact {self.name}: {exc}"
            ) from exc
        return {"name": self.name, "uri": uri, "size": size, "sha256": digest.hexdigest()}

    def close(self) -> None:
        """Drop the temporary file, if any."""
        if self._spill is not None:
            self._spill.close()


class LiveOutput:
    """Batches one stream into chunks of whole lines for the live-log callback.

    A batch goes out at most every `interval` seconds, or as soon as
    `max_batch` bytes are waiting (then also a partial line, so output without
    newlines still streams).
    """

    def __init__(
        self,
        stream: str,
        callback: Callable[[str, str], None] | None,
        *,
        mask: Callable[[str], str],
        interval: float = 0.05,
        max_batch: int = 64 * 1024,
    ) -> None:
        self.stream = stream
        self._callback = callback
        self._mask = mask
        self._interval = interval
        self._max_batch = max_batch
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = bytearray()
        self._last = time.monotonic()

    def feed(self, data: bytes) -> None:
        """Add bytes; sends a batch when one is due."""
        if self._callback is None:
            return
        self._pending += data
        if len(self._pending) < self._max_batch:
            self.tick()
            return
        # Full batches go out now, each at most max_batch bytes, cut after a newline if any.
        while len(self._pending) >= self._max_batch:
            end = self._pending.rfind(b"\n", 0, self._max_batch) + 1
            self._emit(end or self._max_batch)

    def tick(self) -> None:
        """Send the complete lines waiting, if the interval has passed."""
        if self._callback is None or not self._pending:
            return
        if time.monotonic() - self._last >= self._interval:
            self._emit(self._pending.rfind(b"\n") + 1)

    def close(self) -> None:
        """Send everything still waiting; the stream has ended."""
        if self._callback is None:
            return
        self._emit(len(self._pending))
        self._send(self._decoder.decode(b"", final=True))

    def _emit(self, end: int) -> None:
        if end <= 0:
            return
        chunk = bytes(self._pending[:end])
        del self._pending[:end]
        self._last = time.monotonic()
        self._send(self._decoder.decode(chunk))

    def _send(self, text: str) -> None:
        if not text or self._callback is None:
            return
        try:
            self._callback(self.stream, self._mask(text))
        except Exception:  # a broken log sink must not break the step
            log.exception("live output callback failed", stream=self.stream)
