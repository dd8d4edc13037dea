"""Structured JSON logging with structlog for every service."""

from __future__ import annotations

import contextlib
import logging
import sys
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import structlog

REQUEST_ID_HEADER = "x-request-id"
_CONTEXT_FIELDS = ("run_id", "node_id", "job_id")


def configure_logging(*, level: str = "INFO", json: bool = True) -> None:
    """Route stdlib and structlog records through one JSON (or console) renderer on stderr."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request (each /metrics scrape of the gateway) at INFO.
    for noisy in ("celery", "kombu", "amqp", "uvicorn.access", "alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def request_id_from(metadata: Sequence[tuple[str, Any]] | None) -> str:
    """The caller's x-request-id, or a new one when it sent none."""
    for key, value in metadata or ():
        if key.lower() == REQUEST_ID_HEADER and value:
            return value.decode() if isinstance(value, bytes) else str(value)
    return uuid.uuid4().hex


@contextlib.contextmanager
def rpc_log_context(method: str, request: Any, context: Any) -> Iterator[None]:
    """Bind request_id, the RPC and any run/step/job id of the request to every log line."""
    metadata = None
    if context is not None:
        with contextlib.suppress(Exception):
            metadata = context.invocation_metadata()
    fields: dict[str, Any] = {"request_id": request_id_from(metadata), "rpc": method}
    for name in _CONTEXT_FIELDS:
        value = getattr(request, name, None)
        if isinstance(value, str) and value:
            fields["step_id" if name == "node_id" else name] = value
    with _bound(fields):
        yield


@contextlib.contextmanager
def step_log_context(run_id: str, node_id: str, attempt: int, task_id: str) -> Iterator[None]:
    """Bind a step attempt's ids to every log line of the thread executing it."""
    with _bound({"run_id": run_id, "step_id": node_id, "attempt": attempt, "task_id": task_id}):
        yield


@contextlib.contextmanager
def _bound(fields: dict[str, Any]) -> Iterator[None]:
    tokens = structlog.contextvars.bind_contextvars(**fields)
    try:
        yield
    finally:
        # A stream handler may be finalised in another context, where its tokens are foreign.
        with contextlib.suppress(ValueError):
            structlog.contextvars.reset_contextvars(**tokens)
