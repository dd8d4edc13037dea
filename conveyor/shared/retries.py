"""A node's retry settings when its `retries` leaves them out: the format's defaults, which
the translator writes into compiled plans and the engine falls back to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from conveyor.shared.categories import DEFAULT_RETRY_ON

MAX: Final = 0
BACKOFF_S: Final = 1.0
FACTOR: Final = 2.0
MAX_BACKOFF_S: Final = 300.0
JITTER: Final = False

RETRY_DEFAULTS: Final[Mapping[str, Any]] = {
    "max": MAX,
    "backoff_s": BACKOFF_S,
    "factor": FACTOR,
    "max_backoff_s": MAX_BACKOFF_S,
    "jitter": JITTER,
    "on": list(DEFAULT_RETRY_ON),
}
