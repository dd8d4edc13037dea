"""Tables owned by the monitor: alert_rules and alerts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from conveyor.kernel.db import Base


class AlertRuleRow(Base):
    """A condition that raises alerts and the webhooks they are delivered to."""

    __tablename__ = "alert_rules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    job: Mapped[str] = mapped_column(String(200), default="")
    queue: Mapped[str] = mapped_column(String(128), default="")
    worker: Mapped[str] = mapped_column(String(255), default="")
    threshold: Mapped[int] = mapped_column(BigInteger, default=0)
    max_duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    webhook_urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    request_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str | None] = mapped_column(String(100))


class AlertRow(Base):
    """One firing of a rule for one subject; resolved_at is set when it stops holding."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_rule_subject_state", "rule_id", "subject", "state"),
        Index("ix_alerts_fired_at", "fired_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(32))
    rule_name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    last_delivery_error: Mapped[str] = mapped_column(Text, default="")
