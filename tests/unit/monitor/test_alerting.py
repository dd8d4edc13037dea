"""Alert rule validation, evaluation and fire/resolve reconciliation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.kernel.errors import InvalidArgument
from conveyor.monitor.alerting import (
    AlertKind,
    EndedRun,
    Facts,
    QueueFact,
    Rule,
    RunningStep,
    evaluate_rule,
    reconcile,
    slack_text,
    validate_rule,
)
from conveyor.monitor.states import run_state

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def runs(*states: str, job: str = "etl") -> list[EndedRun]:
    """Ended runs, newest first."""
    return [EndedRun("j-" + job, job, f"r{i}", run_state(s)) for i, s in enumerate(states)]


def test_run_failed_fires_per_job_until_a_later_success() -> None:
    rule = Rule("r", "failures", AlertKind.RUN_FAILED)
    facts = Facts(now=NOW, ended_runs=[*runs("FAILED", "SUCCEEDED"), *runs("SUCCEEDED", job="b")])
    assert evaluate_rule(rule, facts) == {"etl": "run r0 of job etl failed"}
    assert evaluate_rule(rule, Facts(now=NOW, ended_runs=runs("SUCCEEDED", "FAILED"))) == {}


def test_run_failed_for_one_job_ignores_others() -> None:
    rule = Rule("r", "etl fails", AlertKind.RUN_FAILED, job="other")
    assert evaluate_rule(rule, Facts(now=NOW, ended_runs=runs("FAILED"))) == {}
    by_id = Rule("r", "etl fails", AlertKind.RUN_FAILED, job="j-etl")
    assert list(evaluate_rule(by_id, Facts(now=NOW, ended_runs=runs("FAILED")))) == ["etl"]


def test_consecutive_failures_needs_the_whole_streak() -> None:
    rule = Rule("r", "streak", AlertKind.CONSECUTIVE_FAILURES, threshold=3)
    broken = Facts(now=NOW, ended_runs=runs("FAILED", "FAILED", "SUCCEEDED"))
    assert evaluate_rule(rule, broken) == {}
    fired = evaluate_rule(rule, Facts(now=NOW, ended_runs=runs("FAILED", "FAILED", "FAILED")))
    assert "failed 3 times in a row" in fired["etl"]


def test_step_duration_and_queue_and_worker_rules() -> None:
    facts = Facts(
        now=NOW,
        running_steps=[
            RunningStep("r1", "slow", "j", "etl", NOW - timedelta(seconds=120)),
            RunningStep("r1", "quick", "j", "etl", NOW - timedelta(seconds=5)),
        ],
        queues=[QueueFact("default", 12, 30.0), QueueFact("gpu", 0, None)],
        workers=[("w1@h", True), ("w2@h", False)],
    )
    slow = Rule("a", "slow", AlertKind.STEP_DURATION, max_duration_s=60)
    assert list(evaluate_rule(slow, facts)) == ["r1/slow"]
    deep = Rule("b", "deep", AlertKind.QUEUE_DEPTH, threshold=10)
    assert list(evaluate_rule(deep, facts)) == ["default"]
    at_limit = Rule("b", "deep", AlertKind.QUEUE_DEPTH, threshold=12)
    assert evaluate_rule(at_limit, facts) == {}
    old = Rule("c", "old", AlertKind.QUEUE_AGE, max_duration_s=10, queue="default")
    assert list(evaluate_rule(old, facts)) == ["default"]
    offline = Rule("d", "gone", AlertKind.WORKER_OFFLINE)
    assert list(evaluate_rule(offline, facts)) == ["w2@h"]
    only_w1 = Rule("d", "gone", AlertKind.WORKER_OFFLINE, worker="w1@h")
    assert evaluate_rule(only_w1, facts) == {}
    disabled = Rule("d", "gone", AlertKind.WORKER_OFFLINE, enabled=False)
    assert evaluate_rule(disabled, facts) == {}


def test_reconcile_fires_once_and_resolves_once() -> None:
    rule = Rule("d", "gone", AlertKind.WORKER_OFFLINE)
    down = Facts(now=NOW, workers=[("w@h", False)])
    to_fire, to_resolve = reconcile([rule], down, firing=[])
    assert [(c.rule.id, c.subject) for c in to_fire] == [("d", "w@h")] and to_resolve == []
    # Still offline and already firing: nothing new (de-duplicated).
    assert reconcile([rule], down, firing=[("a1", "d", "w@h")]) == ([], [])
    up = Facts(now=NOW, workers=[("w@h", True)])
    to_fire, to_resolve = reconcile([rule], up, firing=[("a1", "d", "w@h")])
    assert to_fire == [] and [c.alert_id for c in to_resolve] == ["a1"]


def test_reconcile_leaves_alerts_of_deleted_rules_and_unknown_workers() -> None:
    rule = Rule("d", "gone", AlertKind.WORKER_OFFLINE)
    assert reconcile([], Facts(now=NOW), firing=[("a1", "d", "w@h")]) == ([], [])
    unknown = Facts(now=NOW, workers=[], workers_known=False)
    assert reconcile([rule], unknown, firing=[("a1", "d", "w@h")]) == ([], [])


def test_validation_names_each_bad_field() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_rule(
            Rule(
                "",
                "",
                AlertKind.CONSECUTIVE_FAILURES,
                threshold=0,
                webhook_urls=("ftp://x", "https://ok.example/hook"),
            )
        )
    fields = [v.field for v in err.value.violations]
    assert fields == ["rule.display_name", "rule.threshold", "rule.webhook_urls[0]"]
    with pytest.raises(InvalidArgument):
        validate_rule(Rule("", "age", AlertKind.QUEUE_AGE, max_duration_s=0))
    validate_rule(Rule("", "age", AlertKind.QUEUE_AGE, max_duration_s=5))


def test_slack_text_names_rule_and_state() -> None:
    rule = Rule("d", "gone", AlertKind.WORKER_OFFLINE)
    assert slack_text("FIRING", rule, "w@h", "worker w@h is offline").endswith(
        "[FIRING] gone: worker w@h is offline"
    )
    assert "[RESOLVED] gone: w@h ok" in slack_text("RESOLVED", rule, "w@h", "resolved")
