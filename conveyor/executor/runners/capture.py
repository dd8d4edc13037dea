"""Capturing a step's output streams: masking, an inline head, spilling, live batches.

Bytes flow through a `ByteMasker` first, so no secret reaches the inline text,
the artifact or the live log, even when it arrives split across reads. The
masked stream then goes to a `StreamCapture`, which keeps the first
``cap`` bytes inline and, once the stream is longer, streams the whole stream
to the step's artifact sink while the step runs (the sink's bounded queue
pushes back on the pipe); memory use stays bounded however much a step prints.
`LiveOutput` batches the same bytes into whole lines for the live-log callback.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import structlog

from conveyor.executor.runners.base import (
    MASK,
    ArtifactSink,
    ArtifactWriter,
    ErrorCategory,
    Masker,
    StepContext,
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
    """Keeps the head of one stream inline; past the cap, the whole stream goes to the store.

    With a `stream_to` factory (a step's artifact sink, see `for_step`) the bytes beyond the
    cap are written to the artifact store while the step runs: the writer's bounded queue
    makes a fast step wait for the store instead of growing memory, and nothing is buffered
    on the worker's disk. Without one the stream spills to a temporary file, saved at the end.
    """

    def __init__(
        self, name: str, cap: int, *, stream_to: Callable[[], ArtifactWriter] | None = None
    ) -> None:
        self.name = name
        self.cap = max(cap, 0)
        self.size = 0
        self._head = bytearray()
        self._tail = bytearray()
        self._spill: IO[bytes] | None = None
        self._stream_to = stream_to
        self._writer: ArtifactWriter | None = None
        self._record: dict[str, Any] | None = None

    @classmethod
    def for_step(cls, name: str, ctx: StepContext) -> StreamCapture:
        """A capture of one output stream of a step, streaming to the step's artifact sink."""
        sink = ctx.artifacts
        if not hasattr(sink, "open"):
            return cls(name, ctx.inline_output_cap)

        def open_writer() -> ArtifactWriter:
            return sink.open(ctx.run_id, ctx.node_id, ctx.attempt, name)

        return cls(name, ctx.inline_output_cap, stream_to=open_writer)

    @property
    def truncated(self) -> bool:
        """Whether the stream was longer than the inline cap."""
        return self._spill is not None or self._writer is not None

    def write(self, data: bytes) -> None:
        """Append bytes to the stream (OSError when the artifact cannot be written)."""
        if not data:
            return
        self.size += len(data)
        self._tail += data
        del self._tail[:-_TAIL]
        if self._writer is not None:
            self._writer.write(data)
            return
        if self._spill is not None:
            self._spill.write(data)
            return
        room = self.cap - len(self._head)
        if len(data) <= room:
            self._head += data
            return
        self._head += data[:room]
        # The artifact holds every byte, so the head already kept inline goes first.
        if self._stream_to is not None:
            try:
                self._writer = self._stream_to()
            except Exception as exc:  # a sink is pluggable: report it as a capture failure
                raise OSError(f"could not open artifact {self.name}: {exc}") from exc
            self._writer.write(bytes(self._head))
            self._writer.write(data[room:])
            return
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
        """Finish the artifact; returns its record, or None when the stream stayed inline."""
        if self._writer is not None:
            if self._record is None:
                try:
                    self._record = self._writer.close()
                except Exception as exc:
                    raise StepError(
                        ErrorCategory.INFRA, f"could not save artifact {self.name}: {exc}"
                    ) from exc
            return self._record
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
        """Drop the temporary file, or abort an artifact that was never finished."""
        if self._spill is not None:
            self._spill.close()
        if self._writer is not None and self._record is None:
            with contextlib.suppress(Exception):
                self._writer.abort()


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
