"""Storage of alert rules and alerts (the run and step facts come from the executor)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conveyor.kernel.errors import AlreadyExists, FailedPrecondition, NotFound
from conveyor.kernel.ids import new_id
from conveyor.monitor.alerting import AlertKind, Rule
from conveyor.monitor.models import AlertRow, AlertRuleRow

FIRING, RESOLVED = "FIRING", "RESOLVED"
MAX_RULES = 1000
ALERT_RETENTION = timedelta(days=30)
EDITABLE = (
    "display_name",
    "kind",
    "job",
    "queue",
    "worker",
    "threshold",
    "max_duration_s",
    "webhook_urls",
    "enabled",
)


def to_rule(row: AlertRuleRow) -> Rule:
    """Row -> domain rule."""
    return Rule(
        id=row.id,
        name=row.display_name,
        kind=AlertKind(row.kind),
        job=row.job,
        queue=row.queue,
        worker=row.worker,
        threshold=row.threshold,
        max_duration_s=row.max_duration_s,
        webhook_urls=tuple(row.webhook_urls or ()),
        enabled=row.enabled,
    )


def _fields(rule: Rule) -> dict[str, Any]:
    return {
        "display_name": rule.name,
        "kind": rule.kind.value,
        "job": rule.job,
        "queue": rule.queue,
        "worker": rule.worker,
        "threshold": rule.threshold,
        "max_duration_s": rule.max_duration_s,
        "webhook_urls": list(rule.webhook_urls),
        "enabled": rule.enabled,
    }


def create_rule(session: Session, rule: Rule, *, request_id: str, now: datetime) -> AlertRuleRow:
    """Insert a rule; a repeated request_id returns the first rule."""
    if request_id:
        existing = session.scalar(select(AlertRuleRow).where(AlertRuleRow.request_id == request_id))
        if existing is not None:
            return existing
    if (session.scalar(select(func.count()).select_from(AlertRuleRow)) or 0) >= MAX_RULES:
        raise FailedPrecondition(
            f"at most {MAX_RULES} alert rules; delete one first", reason="TOO_MANY_RULES"
        )
    row = AlertRuleRow(
        id=new_id(), request_id=request_id or None, created_at=now, updated_at=now, **_fields(rule)
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(
            f"an alert rule named {rule.name!r} exists", metadata={"display_name": rule.name}
        ) from exc
    return row


def get_rule(session: Session, rule_id: str) -> AlertRuleRow:
    """A rule or NotFound."""
    row = session.get(AlertRuleRow, rule_id)
    if row is None:
        raise NotFound(f"alert rule {rule_id!r} not found", metadata={"rule_id": rule_id})
    return row


def list_rules(session: Session, *, after: str, limit: int) -> list[AlertRuleRow]:
    """Rules by id after a key."""
    return list(
        session.scalars(
            select(AlertRuleRow)
            .where(AlertRuleRow.id > after)
            .order_by(AlertRuleRow.id)
            .limit(limit)
        )
    )


def update_rule(
    session: Session, rule_id: str, rule: Rule, paths: list[str], *, now: datetime
) -> AlertRuleRow:
    """Apply the named fields of rule to the stored one."""
    row = get_rule(session, rule_id)
    values = _fields(rule)
    for path in paths:
        setattr(row, path, values[path])
    row.updated_at = now
    if not row.enabled:
        _resolve_all(session, rule_id, now=now)
    try:
        session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"an alert rule named {row.display_name!r} exists") from exc
    return row


def delete_rule(session: Session, rule_id: str, *, now: datetime) -> None:
    """Delete a rule and resolve its firing alerts."""
    get_rule(session, rule_id)
    _resolve_all(session, rule_id, now=now)
    session.execute(delete(AlertRuleRow).where(AlertRuleRow.id == rule_id))


def _resolve_all(session: Session, rule_id: str, *, now: datetime) -> None:
    """Resolve a rule's firing alerts (it was disabled or deleted; no webhook is called)."""
    for alert in session.scalars(
        select(AlertRow).where(AlertRow.rule_id == rule_id, AlertRow.state == FIRING)
    ):
        alert.state, alert.resolved_at = RESOLVED, now


def rule_enabled(session: Session, rule_id: str) -> bool:
    """True when the rule exists and is enabled (checked again right before firing)."""
    row = session.get(AlertRuleRow, rule_id)
    return row is not None and row.enabled


def enabled_rules(session: Session) -> list[Rule]:
    """Every enabled rule (bounded)."""
    rows = session.scalars(
        select(AlertRuleRow).where(AlertRuleRow.enabled.is_(True)).limit(MAX_RULES)
    )
    return [to_rule(r) for r in rows]


def firing_alerts(session: Session) -> list[tuple[str, str, str]]:
    """(alert_id, rule_id, subject) of alerts firing now."""
    rows = session.execute(
        select(AlertRow.id, AlertRow.rule_id, AlertRow.subject).where(AlertRow.state == FIRING)
    )
    return [(str(a), str(r), str(s)) for a, r, s in rows]


def fire(session: Session, rule: Rule, subject: str, message: str, *, now: datetime) -> AlertRow:
    """Record a new firing alert."""
    row = AlertRow(
        id=new_id(),
        rule_id=rule.id,
        rule_name=rule.name,
        subject=subject[:255],
        state=FIRING,
        message=message,
        fired_at=now,
        deliveries=0,
        last_delivery_error="",
    )
    session.add(row)
    return row


def resolve(session: Session, alert_id: str, *, now: datetime) -> AlertRow | None:
    """Mark an alert resolved."""
    row = session.get(AlertRow, alert_id)
    if row is not None and row.state == FIRING:
        row.state, row.resolved_at = RESOLVED, now
    return row


def record_delivery(session: Session, alert_id: str, error: str) -> None:
    """Count a delivery attempt's outcome on the alert."""
    row = session.get(AlertRow, alert_id)
    if row is None:
        return
    if error:
        row.last_delivery_error = error[:2000]
    else:
        row.deliveries += 1
        row.last_delivery_error = ""


def prune(session: Session, *, now: datetime) -> int:
    """Delete alerts resolved longer ago than the retention period."""
    result = session.execute(
        delete(AlertRow).where(
            AlertRow.state == RESOLVED, AlertRow.resolved_at < now - ALERT_RETENTION
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def list_alerts(
    session: Session,
    *,
    state: str,
    rule_id: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[AlertRow]:
    """Alerts newest first, filtered; keyset paging after (fired_at, id) of the last seen."""
    query = select(AlertRow)
    if state:
        query = query.where(AlertRow.state == state)
    if rule_id:
        query = query.where(AlertRow.rule_id == rule_id)
    if after is not None:
        fired, last_id = after
        query = query.where(
            (AlertRow.fired_at < fired) | ((AlertRow.fired_at == fired) & (AlertRow.id > last_id))
        )
    return list(session.scalars(query.order_by(AlertRow.fired_at.desc(), AlertRow.id).limit(limit)))
