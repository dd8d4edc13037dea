"""Why a step failed: the error categories every service uses, and which are retried by
default. The names are those of the executor's contract enum `ErrorCategory` without its
`ERROR_CATEGORY_` prefix; `tests/unit/test_node_types.py` holds the two together."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ErrorCategory(StrEnum):
    """Why a step failed; retry policies (``retries.on``) select on these."""

    TIMEOUT = "TIMEOUT"
    NONZERO_EXIT = "NONZERO_EXIT"
    WORKER_LOST = "WORKER_LOST"
    TEMPLATE = "TEMPLATE"
    HTTP_STATUS = "HTTP_STATUS"
    CONNECTION = "CONNECTION"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    INFRA = "INFRA"
    INTERNAL = "INTERNAL"


#: What a node retries when its `retries.on` is not given: all but a template error, a
#: rejection and a cancellation (retrying those gives the same answer or undoes a decision).
DEFAULT_RETRY_ON: Final = tuple(
    c.value
    for c in ErrorCategory
    if c not in {ErrorCategory.TEMPLATE, ErrorCategory.REJECTED, ErrorCategory.CANCELLED}
)
