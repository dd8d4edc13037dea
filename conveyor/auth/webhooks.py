"""Signed webhook deliveries: per-job secrets (`webhook_secrets`, owned by the gateway) and the
signature check of `POST /v1/hooks/{job}`.

A delivery carries `X-Conveyor-Timestamp` (Unix seconds), `X-Conveyor-Delivery` (its id) and
`X-Conveyor-Signature: sha256=<hex>`, the HMAC-SHA256 under the job's secret of
`<timestamp>.<raw body>`. The timestamp is signed with the body, so an old delivery cannot be
replayed with a fresh one; older than five minutes (or as far in the future) is refused, and a
redelivered id starts no second run (it is the StartRun request id).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

from sqlalchemy import DateTime, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from conveyor.kernel.db import Base
from conveyor.kernel.ids import utcnow

MAX_SKEW_S = 300
MAX_DELIVERY_ID = 100
SIGNATURE_HEADER = "x-conveyor-signature"
TIMESTAMP_HEADER = "x-conveyor-timestamp"
DELIVERY_HEADER = "x-conveyor-delivery"
_DELIVERY = re.compile(r"[A-Za-z0-9._:-]{1,100}")


class WebhookSecretRow(Base):
    """The current signing secret of one job's webhook."""

    __tablename__ = "webhook_secrets"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def rotate_secret(session: Session, job_id: str) -> str:
    """A new secret for the job, replacing any previous one."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    row = session.get(WebhookSecretRow, job_id)
    if row is None:
        session.add(WebhookSecretRow(job_id=job_id, secret=secret, created_at=utcnow()))
    else:
        row.secret, row.created_at = secret, utcnow()
    return secret


def secret_of(session: Session, job_id: str) -> str | None:
    """The job's secret; None when it has none."""
    return session.scalar(select(WebhookSecretRow.secret).where(WebhookSecretRow.job_id == job_id))


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value of a delivery."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def check(
    secret: str | None,
    *,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
) -> str | None:
    """Why a delivery is refused (None when it is good). Constant time in the signature."""
    if not timestamp or not signature:
        return f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required"
    try:
        sent = int(timestamp)
    except ValueError:
        return f"{TIMESTAMP_HEADER} must be Unix seconds"
    if abs(now - sent) > MAX_SKEW_S:
        return f"{TIMESTAMP_HEADER} is more than {MAX_SKEW_S} seconds away from now"
    expected = sign(secret or "", timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()) or secret is None:
        return "the signature does not match"
    return None


def delivery_ok(delivery: str | None) -> bool:
    """Whether a delivery id is usable as (part of) a request id."""
    return bool(delivery) and _DELIVERY.fullmatch(delivery or "") is not None
