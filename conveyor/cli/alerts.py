"""`conveyor alerts …`: alert rules and the alerts they raised."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import grpc
import typer
from google.protobuf import duration_pb2, field_mask_pb2, json_format
from rich.console import Console

from conveyor.cli.client import gateway_channel, resolve_token
from conveyor.monitor.v1 import alert_service_pb2, alert_service_pb2_grpc

T = TypeVar("T")
DEFAULT_ADDR = "127.0.0.1:50051"
KINDS = ["run-failed", "consecutive-failures", "step-duration", "queue-depth", "queue-age",
         "worker-offline"]  # fmt: skip

alerts_app = typer.Typer(no_args_is_help=True, help="Alert rules and fired alerts.")
rules_app = typer.Typer(no_args_is_help=True, help="Create, show, change and delete rules.")
alerts_app.add_typer(rules_app, name="rules")
out = Console()

ServerOpt = Annotated[
    str | None,
    typer.Option("--server", envvar="CONVEYOR_ADDR", help="Gateway address."),
]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="text or json")]
NameOpt = Annotated[str | None, typer.Option("--name", help="Unique display name.")]
KindOpt = Annotated[str | None, typer.Option("--kind", help=" | ".join(KINDS))]
JobOpt = Annotated[str | None, typer.Option(help="Job id or name (empty = all jobs).")]
QueueOpt = Annotated[str | None, typer.Option(help="Queue (empty = all queues).")]
WorkerOpt = Annotated[str | None, typer.Option(help="Worker hostname (empty = all).")]
ThresholdOpt = Annotated[int | None, typer.Option(help="N failures, or queue depth limit.")]
SecondsOpt = Annotated[
    float | None, typer.Option("--max-seconds", help="Step duration or queue age limit.")
]
WebhookOpt = Annotated[list[str] | None, typer.Option("--webhook", help="Webhook URL (repeat).")]
EnabledOpt = Annotated[bool | None, typer.Option("--enabled/--disabled", help="Evaluate it.")]


def _stub(server: str | None) -> Any:
    channel = gateway_channel(server or DEFAULT_ADDR, resolve_token())
    return alert_service_pb2_grpc.AlertServiceStub(channel)


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except grpc.RpcError as exc:
        from conveyor.cli.rpc import fail_rpc

        raise fail_rpc(exc) from None


def _kind(name: str) -> int:
    if name not in KINDS:
        raise typer.BadParameter(f"kind must be one of {', '.join(KINDS)}", param_hint="--kind")
    return int(alert_service_pb2.AlertKind.Value("ALERT_KIND_" + name.upper().replace("-", "_")))


def _print_rule(rule: Any, output: str) -> None:
    data = json_format.MessageToDict(rule, preserving_proto_field_name=True)
    if output == "json":
        print(json.dumps(data, indent=2))
        return
    kind = alert_service_pb2.AlertKind.Name(rule.kind).removeprefix("ALERT_KIND_").lower()
    state = "enabled" if rule.enabled else "disabled"
    out.print(f"{rule.rule_id}  {kind:<22} {state:<8}  {rule.display_name}", markup=False)


def _rule(
    *,
    name: str | None,
    kind: str | None,
    job: str | None,
    queue: str | None,
    worker: str | None,
    threshold: int | None,
    max_seconds: float | None,
    webhooks: list[str] | None,
    enabled: bool | None,
) -> tuple[Any, list[str]]:
    """The rule message and the proto field names that were given."""
    rule = alert_service_pb2.AlertRule()
    given: list[str] = []
    for field, value in (
        ("display_name", name),
        ("job", job),
        ("queue", queue),
        ("worker", worker),
        ("threshold", threshold),
        ("enabled", enabled),
    ):
        if value is not None:
            setattr(rule, field, value)
            given.append(field)
    if kind is not None:
        rule.kind = _kind(kind)  # type: ignore[assignment]
        given.append("kind")
    if max_seconds is not None:
        rule.max_duration.CopyFrom(
            duration_pb2.Duration(seconds=int(max_seconds), nanos=int(max_seconds % 1 * 1e9))
        )
        given.append("max_duration")
    if webhooks is not None:
        rule.webhook_urls.extend(webhooks)
        given.append("webhook_urls")
    return rule, given


@rules_app.command("create")
def create(
    name: NameOpt = None,
    kind: KindOpt = None,
    job: JobOpt = None,
    queue: QueueOpt = None,
    worker: WorkerOpt = None,
    threshold: ThresholdOpt = None,
    max_seconds: SecondsOpt = None,
    webhook: WebhookOpt = None,
    output: OutputOpt = "text",
    server: ServerOpt = None,
) -> None:
    """Create a rule, e.g. `--name 'etl failing' --kind run-failed --job etl --webhook URL`."""
    rule, _ = _rule(
        name=name or "",
        kind=kind or "",
        job=job,
        queue=queue,
        worker=worker,
        threshold=threshold,
        max_seconds=max_seconds,
        webhooks=webhook,
        enabled=True,
    )
    reply = _call(
        lambda: _stub(server).CreateAlertRule(
            alert_service_pb2.CreateAlertRuleRequest(rule=rule), timeout=30
        )
    )
    _print_rule(reply.rule, output)


@rules_app.command("list")
def list_rules(output: OutputOpt = "text", server: ServerOpt = None) -> None:
    """List rules."""
    reply = _call(
        lambda: _stub(server).ListAlertRules(
            alert_service_pb2.ListAlertRulesRequest(page_size=500), timeout=30
        )
    )
    if output == "json":
        rules = [
            json_format.MessageToDict(r, preserving_proto_field_name=True) for r in reply.rules
        ]
        print(json.dumps(rules, indent=2))
        return
    for r in reply.rules:
        _print_rule(r, "text")


@rules_app.command("show")
def show(rule_id: str, server: ServerOpt = None) -> None:
    """Show one rule as JSON."""
    reply = _call(
        lambda: _stub(server).GetAlertRule(
            alert_service_pb2.GetAlertRuleRequest(rule_id=rule_id), timeout=30
        )
    )
    _print_rule(reply.rule, "json")


@rules_app.command("update")
def update(
    rule_id: str,
    name: NameOpt = None,
    kind: KindOpt = None,
    job: JobOpt = None,
    queue: QueueOpt = None,
    worker: WorkerOpt = None,
    threshold: ThresholdOpt = None,
    max_seconds: SecondsOpt = None,
    webhook: WebhookOpt = None,
    enabled: EnabledOpt = None,
    output: OutputOpt = "text",
    server: ServerOpt = None,
) -> None:
    """Change only the given fields of a rule."""
    rule, given = _rule(
        name=name,
        kind=kind,
        job=job,
        queue=queue,
        worker=worker,
        threshold=threshold,
        max_seconds=max_seconds,
        webhooks=webhook,
        enabled=enabled,
    )
    if not given:
        raise typer.BadParameter("nothing to change: pass at least one option")
    rule.rule_id = rule_id
    reply = _call(
        lambda: _stub(server).UpdateAlertRule(
            alert_service_pb2.UpdateAlertRuleRequest(
                rule=rule, update_mask=field_mask_pb2.FieldMask(paths=given)
            ),
            timeout=30,
        )
    )
    _print_rule(reply.rule, output)


@rules_app.command("delete")
def delete(rule_id: str, server: ServerOpt = None) -> None:
    """Delete a rule (its firing alerts resolve)."""
    _call(
        lambda: _stub(server).DeleteAlertRule(
            alert_service_pb2.DeleteAlertRuleRequest(rule_id=rule_id), timeout=30
        )
    )
    out.print(f"deleted {rule_id}")


@alerts_app.command("list")
def list_alerts(
    state: Annotated[str, typer.Option(help="firing, resolved or empty for all.")] = "",
    limit: Annotated[int, typer.Option(help="At most this many (1-500).")] = 50,
    output: OutputOpt = "text",
    server: ServerOpt = None,
) -> None:
    """List fired alerts, newest first."""
    if state and state not in ("firing", "resolved"):
        raise typer.BadParameter("state must be firing or resolved", param_hint="--state")
    value: Any = alert_service_pb2.AlertState.Value(f"ALERT_STATE_{state.upper()}") if state else 0
    reply = _call(
        lambda: _stub(server).ListAlerts(
            alert_service_pb2.ListAlertsRequest(page_size=limit, state=value), timeout=30
        )
    )
    if output == "json":
        data = [
            json_format.MessageToDict(a, preserving_proto_field_name=True) for a in reply.alerts
        ]
        print(json.dumps(data, indent=2))
        return
    for a in reply.alerts:
        when = a.fire_time.ToDatetime().isoformat(timespec="seconds")
        st = alert_service_pb2.AlertState.Name(a.state).removeprefix("ALERT_STATE_").lower()
        out.print(f"{when}  {st:<8}  {a.rule_name}: {a.message}", markup=False)
