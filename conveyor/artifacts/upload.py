"""One upload's path into a backend: a bounded queue drained by one thread, hashing on the way.

The event loop offers chunks without blocking (it waits while the queue is full), so the
service holds at most `QUEUE_CHUNKS` chunks per upload besides what the backend buffers.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

from conveyor.artifacts.backends import ObjectStore

QUEUE_CHUNKS = 8
END = object()


class UploadSink(threading.Thread):
    """Feeds one upload's chunks from a bounded queue into the backend, hashing as it goes."""

    def __init__(self, backend: ObjectStore, key: str, content_type: str) -> None:
        super().__init__(name="conveyor-artifact-upload", daemon=True)
        self.backend, self.key, self.content_type = backend, key, content_type
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.digest = hashlib.sha256()
        self.size = 0
        self.error: BaseException | None = None
        self.done = threading.Event()

    def _chunks(self) -> Iterator[bytes]:
        while True:
            item = self.queue.get()
            if item is END:
                return
            if isinstance(item, BaseException):
                raise item
            self.digest.update(item)
            self.size += len(item)
            yield item

    def run(self) -> None:
        try:
            self.backend.put(self.key, self._chunks(), content_type=self.content_type)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    async def offer(self, item: Any) -> None:
        """Queue an item without blocking the event loop (waits while the queue is full)."""
        while not self.done.is_set():
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                await asyncio.sleep(0.002)

    async def finish(self) -> None:
        """Wait for the backend to have stored everything (or failed)."""
        while not self.done.is_set():
            await asyncio.to_thread(self.done.wait, 1.0)
