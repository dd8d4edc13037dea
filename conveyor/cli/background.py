"""Run an embedded suite on its own event loop in a background thread (for CLI and tests)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from conveyor.kernel.settings import Settings
from conveyor.suite import Suite, start_embedded


class BackgroundSuite:
    """Starts `start_embedded` in a thread; `stop()` shuts it down and joins the thread."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.settings = settings
        self._kwargs = kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="conveyor-suite", daemon=True
        )
        self.suite: Suite | None = None

    def start(self) -> Suite:
        """Start the loop and the suite; returns once every service listens."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_embedded(self.settings, **self._kwargs), self._loop
        )
        self.suite = future.result(timeout=120)
        return self.suite

    def stop(self) -> None:
        """Stop the suite and the loop."""
        if self.suite is not None:
            asyncio.run_coroutine_threadsafe(self.suite.stop(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> Suite:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
