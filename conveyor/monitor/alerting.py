"""Alert rules: validation and evaluation against a snapshot of facts (pure, no I/O).

The evaluator decides which (rule, subject) pairs hold now. The monitor compares that set
with the stored firing alerts: a new pair fires (and is delivered once), a vanished pair
resolves (and is delivered once), a pair that keeps holding stays one firing alert, so a
condition that persists is not re-announced on every evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

from conveyor.executor.v1 import run_pb2
from conveyor.kernel.errors import InvalidArgument, Violation

MAX_WEBHOOKS = 10
MAX_URL = 2048
MAX_THRESHOLD = 1_000_000_000
MAX_DURATION_S = 366 * 86400.0
MAX_CONSECUTIVE = 1000


class AlertKind(StrEnum):
    """What a rule watches."""

    RUN_FAILED = "RUN_FAILED"
    CONSECUTIVE_FAILURES = "CONSECUTIVE_FAILURES"
    STEP_DURATION = "STEP_DURATION"
    QUEUE_DEPTH = "QUEUE_DEPTH"
    QUEUE_AGE = "QUEUE_AGE"
    WORKER_OFFLINE = "WORKER_OFFLINE"


@dataclass(frozen=True)
class Rule:
    """An alert rule as the evaluator sees it."""

    id: str
    name: str
    kind: AlertKind
    job: str = ""
    queue: str = ""
    worker: str = ""
    threshold: int = 0
    max_duration_s: float = 0.0
    webhook_urls: tuple[str, ...] = ()
    enabled: bool = True


@dataclass(frozen=True)
class EndedRun:
    """A run that ended (newest first in Facts)."""

    job_id: str
    job_name: str
    run_id: str
    state: int  # the executor's run_pb2.RunState: SUCCEEDED or FAILED


@dataclass(frozen=True)
class RunningStep:
    """A step that is running now."""

    run_id: str
    node_id: str
    job_id: str
    job_name: str
    started_at: datetime


@dataclass(frozen=True)
class QueueFact:
    """A queue's depth and oldest age."""

    queue: str
    depth: int
    oldest_age_s: float | None


@dataclass
class Facts:
    """Everything rules are evaluated against, gathered at one moment."""

    now: datetime
    ended_runs: Sequence[EndedRun] = ()
    running_steps: Sequence[RunningStep] = ()
    queues: Sequence[QueueFact] = ()
    workers: Sequence[tuple[str, bool]] = ()
    workers_known: bool = True
    notes: list[str] = field(default_factory=list)


def validate_rule(rule: Rule) -> None:
    """Raise InvalidArgument with one violation per bad field."""
    bad: list[Violation] = []
    if not rule.name or len(rule.name) > 200:
        bad.append(Violation("rule.display_name", "1-200 characters required", "INVALID"))
    if rule.kind in (AlertKind.CONSECUTIVE_FAILURES,) and not 1 <= rule.threshold <= (
        MAX_CONSECUTIVE
    ):
        bad.append(
            Violation("rule.threshold", f"between 1 and {MAX_CONSECUTIVE} runs", "OUT_OF_RANGE")
        )
    if rule.kind == AlertKind.QUEUE_DEPTH and not 0 <= rule.threshold <= MAX_THRESHOLD:
        bad.append(
            Violation("rule.threshold", f"between 0 and {MAX_THRESHOLD} messages", "OUT_OF_RANGE")
        )
    if rule.kind in (AlertKind.STEP_DURATION, AlertKind.QUEUE_AGE) and not (
        0 < rule.max_duration_s <= MAX_DURATION_S
    ):
        bad.append(
            Violation("rule.max_duration", "must be positive and at most 366 days", "OUT_OF_RANGE")
        )
    if len(rule.job) > 200 or len(rule.queue) > 128 or len(rule.worker) > 255:
        bad.append(Violation("rule", "job, queue or worker name too long", "TOO_LONG"))
    if len(rule.webhook_urls) > MAX_WEBHOOKS:
        bad.append(Violation("rule.webhook_urls", f"at most {MAX_WEBHOOKS}", "TOO_MANY"))
    for i, url in enumerate(rule.webhook_urls):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > MAX_URL:
            bad.append(
                Violation(f"rule.webhook_urls[{i}]", "an http(s) URL is required", "INVALID_URL")
            )
    if bad:
        raise InvalidArgument("invalid alert rule", violations=bad)


def _job_matches(rule: Rule, job_id: str, job_name: str) -> bool:
    return not rule.job or rule.job in (job_id, job_name)


def _run_rules(rule: Rule, runs: Sequence[EndedRun]) -> dict[str, str]:
    by_job: dict[str, list[EndedRun]] = {}
    for run in runs:
        if _job_matches(rule, run.job_id, run.job_name):
            by_job.setdefault(run.job_name, []).append(run)
    firing: dict[str, str] = {}
    for job, history in by_job.items():
        if rule.kind == AlertKind.RUN_FAILED and history[0].state == run_pb2.RUN_STATE_FAILED:
            firing[job] = f"run {history[0].run_id} of job {job} failed"
        elif rule.kind == AlertKind.CONSECUTIVE_FAILURES:
            streak = 0
            for run in history:
                if run.state != run_pb2.RUN_STATE_FAILED:
                    break
                streak += 1
            if streak >= rule.threshold:
                firing[job] = (
                    f"job {job} failed {streak} times in a row (latest run {history[0].run_id})"
                )
    return firing


def evaluate_rule(rule: Rule, facts: Facts) -> dict[str, str]:
    """The subjects for which a rule holds now, each with a message."""
    if not rule.enabled:
        return {}
    if rule.kind in (AlertKind.RUN_FAILED, AlertKind.CONSECUTIVE_FAILURES):
        return _run_rules(rule, facts.ended_runs)
    firing: dict[str, str] = {}
    if rule.kind == AlertKind.STEP_DURATION:
        for step in facts.running_steps:
            age = (facts.now - step.started_at).total_seconds()
            if _job_matches(rule, step.job_id, step.job_name) and age > rule.max_duration_s:
                firing[f"{step.run_id}/{step.node_id}"] = (
                    f"step {step.node_id} of run {step.run_id} (job {step.job_name}) has been "
                    f"running for {age:.0f}s, over {rule.max_duration_s:g}s"
                )
    elif rule.kind in (AlertKind.QUEUE_DEPTH, AlertKind.QUEUE_AGE):
        for q in facts.queues:
            if rule.queue and rule.queue != q.queue:
                continue
            if rule.kind == AlertKind.QUEUE_DEPTH and q.depth > rule.threshold:
                firing[q.queue] = f"queue {q.queue} holds {q.depth} messages, over {rule.threshold}"
            waited = q.oldest_age_s
            if (
                rule.kind == AlertKind.QUEUE_AGE
                and waited is not None
                and waited > rule.max_duration_s
            ):
                firing[q.queue] = (
                    f"oldest step in queue {q.queue} has waited {waited:.0f}s, "
                    f"over {rule.max_duration_s:g}s"
                )
    elif rule.kind == AlertKind.WORKER_OFFLINE:
        for hostname, online in facts.workers:
            if not online and (not rule.worker or rule.worker == hostname):
                firing[hostname] = f"worker {hostname} is offline (no heartbeat)"
    return firing


@dataclass(frozen=True)
class Change:
    """An alert to fire (alert_id empty) or resolve."""

    rule: Rule
    subject: str
    message: str
    alert_id: str = ""


def reconcile(
    rules: Iterable[Rule], facts: Facts, firing: Iterable[tuple[str, str, str]]
) -> tuple[list[Change], list[Change]]:
    """(to fire, to resolve) given what holds now and the stored firing (alert, rule, subject).

    Rules whose facts were unavailable this round (worker events not yet known) keep their
    alerts as they are.
    """
    rules = list(rules)
    by_id = {r.id: r for r in rules}
    holding = {(r.id, s): (r, m) for r in rules for s, m in evaluate_rule(r, facts).items()}
    stored = {(rule_id, subject): alert_id for alert_id, rule_id, subject in firing}
    to_fire = [
        Change(rule=r, subject=s, message=m)
        for (rid, s), (r, m) in sorted(holding.items())
        if (rid, s) not in stored
    ]
    to_resolve = []
    for (rid, subject), alert_id in sorted(stored.items()):
        rule = by_id.get(rid)
        if rule is None or (rid, subject) in holding:
            continue
        if rule.kind == AlertKind.WORKER_OFFLINE and not facts.workers_known:
            continue
        to_resolve.append(Change(rule=rule, subject=subject, message="resolved", alert_id=alert_id))
    return to_fire, to_resolve


def slack_text(state: str, rule: Rule, subject: str, message: str) -> str:
    """The human line for a webhook's Slack-compatible `text` field."""
    icon = ":rotating_light:" if state == "FIRING" else ":white_check_mark:"
    return f"{icon} [{state}] {rule.name}: {message if state == 'FIRING' else subject + ' ok'}"
