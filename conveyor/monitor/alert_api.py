"""AlertService: CRUD of alert rules and the list of fired alerts."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import grpc

from conveyor.kernel import paging
from conveyor.kernel.db import Database
from conveyor.kernel.errors import InvalidArgument, Violation
from conveyor.kernel.fieldmask import update_paths
from conveyor.kernel.grpcserver import ServiceRegistration, actor, map_errors
from conveyor.kernel.ids import utcnow
from conveyor.kernel.protoconv import duration, enum_value, timestamp
from conveyor.monitor import alertstore
from conveyor.monitor.alerting import AlertKind, Rule, validate_rule
from conveyor.monitor.models import AlertRow, AlertRuleRow
from conveyor.monitor.v1 import alert_service_pb2, alert_service_pb2_grpc

SERVICE_NAME = alert_service_pb2.DESCRIPTOR.services_by_name["AlertService"].full_name
# Proto field path -> stored column, for update masks.
MASK_FIELDS = {
    "display_name": "display_name",
    "kind": "kind",
    "job": "job",
    "queue": "queue",
    "worker": "worker",
    "threshold": "threshold",
    "max_duration": "max_duration_s",
    "webhook_urls": "webhook_urls",
    "enabled": "enabled",
}


def rule_from_pb(msg: Any, *, rule_id: str = "") -> Rule:
    """Proto rule -> domain rule (kind validated here, the rest by validate_rule)."""
    if msg.kind == alert_service_pb2.ALERT_KIND_UNSPECIFIED:
        raise InvalidArgument(
            "rule.kind is required", violations=[Violation("rule.kind", "required", "REQUIRED")]
        )
    kind_name = alert_service_pb2.AlertKind.Name(msg.kind).removeprefix("ALERT_KIND_")
    return Rule(
        id=rule_id,
        name=msg.display_name,
        kind=AlertKind(kind_name),
        job=msg.job,
        queue=msg.queue,
        worker=msg.worker,
        threshold=msg.threshold,
        max_duration_s=msg.max_duration.ToTimedelta().total_seconds(),
        webhook_urls=tuple(msg.webhook_urls),
        enabled=msg.enabled,
    )


def rule_pb(row: AlertRuleRow) -> alert_service_pb2.AlertRule:
    """Stored rule -> proto."""
    return alert_service_pb2.AlertRule(
        rule_id=row.id,
        display_name=row.display_name,
        kind=enum_value(alert_service_pb2.AlertKind, f"ALERT_KIND_{row.kind}"),
        job=row.job,
        queue=row.queue,
        worker=row.worker,
        threshold=row.threshold,
        max_duration=duration(row.max_duration_s) if row.max_duration_s else None,
        webhook_urls=list(row.webhook_urls or ()),
        enabled=row.enabled,
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
        updated_by=row.updated_by or "",
    )


def alert_pb(row: AlertRow) -> alert_service_pb2.Alert:
    """Stored alert -> proto."""
    return alert_service_pb2.Alert(
        alert_id=row.id,
        rule_id=row.rule_id,
        rule_name=row.rule_name,
        subject=row.subject,
        state=enum_value(alert_service_pb2.AlertState, f"ALERT_STATE_{row.state}"),
        message=row.message,
        fire_time=timestamp(row.fired_at),
        resolve_time=timestamp(row.resolved_at),
        deliveries=row.deliveries,
        last_delivery_error=row.last_delivery_error,
    )


def _require_id(rule_id: str, field: str = "rule_id") -> None:
    if not rule_id or len(rule_id) > 64:
        raise InvalidArgument(f"{field} is required", violations=[Violation(field, "required")])


class AlertServicer(alert_service_pb2_grpc.AlertServiceServicer):  # type: ignore[misc]
    """Alert rule CRUD and alert listing; the observer evaluates the rules."""

    def __init__(self, *, db: Database) -> None:
        self._db = db

    async def _tx(self, fn: Any) -> Any:
        def work() -> Any:
            with self._db.transaction() as session:
                return fn(session)

        return await asyncio.to_thread(work)

    async def _read(self, fn: Any) -> Any:
        """Like `_tx` for a function that only reads (no write lock on SQLite)."""

        def work() -> Any:
            with self._db.read() as session:
                return fn(session)

        return await asyncio.to_thread(work)

    @map_errors
    async def CreateAlertRule(  # noqa: N802
        self,
        request: alert_service_pb2.CreateAlertRuleRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> alert_service_pb2.CreateAlertRuleResponse:
        """See the proto."""
        if len(request.request_id) > 128:
            raise InvalidArgument(
                "request_id too long", violations=[Violation("request_id", "at most 128")]
            )
        rule = rule_from_pb(request.rule)
        validate_rule(rule)
        now = utcnow()
        who = actor(context) or None

        def work(session: Any) -> Any:
            made = alertstore.create_rule(session, rule, request_id=request.request_id, now=now)
            if made.created_at == now:  # created now, not a repeated request_id
                made.updated_by = who
            return made

        row = await self._tx(work)
        return alert_service_pb2.CreateAlertRuleResponse(rule=rule_pb(row))

    @map_errors
    async def GetAlertRule(  # noqa: N802
        self,
        request: alert_service_pb2.GetAlertRuleRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> alert_service_pb2.GetAlertRuleResponse:
        """See the proto."""
        _require_id(request.rule_id)
        row = await self._read(lambda s: alertstore.get_rule(s, request.rule_id))
        return alert_service_pb2.GetAlertRuleResponse(rule=rule_pb(row))

    @map_errors
    async def ListAlertRules(  # noqa: N802
        self,
        request: alert_service_pb2.ListAlertRulesRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> alert_service_pb2.ListAlertRulesResponse:
        """See the proto."""
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token, scope="rules")
        rows = await self._read(lambda s: alertstore.list_rules(s, after=after, limit=size + 1))
        page = rows[:size]
        return alert_service_pb2.ListAlertRulesResponse(
            rules=[rule_pb(r) for r in page],
            next_page_token=paging.encode_token(page[-1].id, scope="rules")
            if len(rows) > size
            else "",
        )

    @map_errors
    async def UpdateAlertRule(  # noqa: N802
        self,
        request: alert_service_pb2.UpdateAlertRuleRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> alert_service_pb2.UpdateAlertRuleResponse:
        """See the proto. The merged rule is validated as a whole before anything is written."""
        rule_id = request.rule.rule_id
        _require_id(rule_id, "rule.rule_id")
        paths = update_paths(request.update_mask, MASK_FIELDS)
        columns = [MASK_FIELDS[p] for p in paths]
        now = utcnow()

        def work(session: Any) -> AlertRuleRow:
            current = rule_pb(alertstore.get_rule(session, rule_id))
            merged = alert_service_pb2.AlertRule()
            merged.CopyFrom(current)
            for path in paths:
                field = request.rule.DESCRIPTOR.fields_by_name[path]
                if field.message_type is not None:
                    if request.rule.HasField(path):
                        getattr(merged, path).CopyFrom(getattr(request.rule, path))
                    else:
                        merged.ClearField(path)
                elif field.is_repeated:
                    del getattr(merged, path)[:]
                    getattr(merged, path).extend(getattr(request.rule, path))
                else:
                    setattr(merged, path, getattr(request.rule, path))
            rule = rule_from_pb(merged, rule_id=rule_id)
            validate_rule(rule)
            changed = alertstore.update_rule(session, rule_id, rule, columns, now=now)
            changed.updated_by = actor(context) or None
            return changed

        row = await self._tx(work)
        return alert_service_pb2.UpdateAlertRuleResponse(rule=rule_pb(row))

    @map_errors
    async def DeleteAlertRule(  # noqa: N802
        self,
        request: alert_service_pb2.DeleteAlertRuleRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> alert_service_pb2.DeleteAlertRuleResponse:
        """See the proto."""
        _require_id(request.rule_id)
        now = utcnow()
        await self._tx(lambda s: alertstore.delete_rule(s, request.rule_id, now=now))
        return alert_service_pb2.DeleteAlertRuleResponse()

    @map_errors
    async def ListAlerts(  # noqa: N802
        self,
        request: alert_service_pb2.ListAlertsRequest,
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> alert_service_pb2.ListAlertsResponse:
        """See the proto."""
        size = paging.page_size(request.page_size)
        state = ""
        if request.state:
            try:
                name = alert_service_pb2.AlertState.Name(request.state)
            except ValueError:  # a number the enum does not define (proto3 keeps it)
                raise InvalidArgument(
                    f"state {request.state} is not an AlertState",
                    violations=[Violation("state", "unknown alert state", "INVALID")],
                ) from None
            state = name.removeprefix("ALERT_STATE_")
        scope = ("alerts", state, request.rule_id)
        token = paging.decode_token(request.page_token, scope=scope)
        after: tuple[datetime, str] | None = None
        if token:
            fired_s, _, last_id = token.partition("|")
            try:
                fired = datetime.fromisoformat(fired_s)
            except ValueError:
                raise paging.bad_token() from None
            after = (fired, last_id)
        rows = await self._read(
            lambda s: alertstore.list_alerts(
                s, state=state, rule_id=request.rule_id, after=after, limit=size + 1
            )
        )
        page = rows[:size]
        next_token = ""
        if len(rows) > size:
            last = page[-1]
            next_token = paging.encode_token(f"{last.fired_at.isoformat()}|{last.id}", scope=scope)
        return alert_service_pb2.ListAlertsResponse(
            alerts=[alert_pb(r) for r in page], next_page_token=next_token
        )


def registration(servicer: AlertServicer) -> ServiceRegistration:
    """The alert service for `start_server`."""
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: alert_service_pb2_grpc.add_AlertServiceServicer_to_server(servicer, server),
    )
