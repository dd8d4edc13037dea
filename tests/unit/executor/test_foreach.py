"""logic.foreach over a fake runner: order, concurrency, scope, failure handling, limits."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

from conveyor.executor.foreach import run_foreach
from conveyor.executor.runners import ErrorCategory, StepContext, StepOutcome
from conveyor.kernel.templating import render_string


class NoArtifacts:
    def save(self, *args: Any) -> str:
        raise AssertionError("no artifacts expected")


def plan_node(node_id: str, node_type: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": node_type,
        "data": data,
        "retries": {"max": 0},
        "trigger_rule": "none_failed_min_one_success",
        "continue_on_error": False,
        "parents": [],
        "children": [],
        **extra,
    }


def link(nodes: dict[str, dict[str, Any]], source: str, target: str, handle: Any = None) -> None:
    nodes[source]["children"].append({"node": target, "handle": handle})
    nodes[target]["parents"].append({"node": source, "handle": handle})


class FakeRunner:
    """Renders data.text in scope; fails when the text is 'fail'; tracks concurrency."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.barrier: threading.Barrier | None = None

    def __call__(self, node: Mapping[str, Any], ctx: StepContext) -> StepOutcome:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if self.barrier is not None:
                self.barrier.wait(timeout=10)
            text = render_string(node["data"]["text"], ctx.scope)
            if text == "fail":
                return StepOutcome(False, {"text": text}, ErrorCategory.NONZERO_EXIT, "boom")
            return StepOutcome(True, {"text": text})
        finally:
            with self.lock:
                self.active -= 1


def ctx(items: Any = None) -> StepContext:
    return StepContext(
        run_id="r",
        node_id="loop",
        attempt=1,
        scope={"params": {"xs": items}, "steps": {"up": {"v": "U"}}},
        artifacts=NoArtifacts(),
    )


def loop_plan(
    items: Any = "params.xs", concurrency: int = 1, **body_extra: Any
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    body = {
        "a": plan_node("a", "action.command", {"text": "{{ item }}"}, **body_extra),
        "b": plan_node(
            "b", "action.command", {"text": "{{ index }}-{{ steps.a.text }}-{{ steps.up.v }}"}
        ),
    }
    link(body, "a", "b")
    loop = plan_node(
        "loop", "logic.foreach", {"items": items, "concurrency": concurrency}, body=["a", "b"]
    )
    return loop, body


def test_results_in_item_order_with_item_and_index_in_scope() -> None:
    loop, body = loop_plan()
    outcome, summary = run_foreach(loop, body, ctx(["x", "y", "z"]), runner=FakeRunner())
    assert outcome.succeeded
    assert [r["b"]["text"] for r in outcome.outputs["results"]] == ["0-x-U", "1-y-U", "2-z-U"]
    assert summary["a"]["state"] == "SUCCEEDED"


def test_concurrency_is_honoured() -> None:
    runner = FakeRunner()
    runner.barrier = threading.Barrier(3)
    loop, body = loop_plan(concurrency=3)
    del body["b"]
    loop["body"] = ["a"]
    body["a"]["children"] = []
    outcome, _ = run_foreach(loop, body, ctx(list(range(6))), runner=runner)
    assert outcome.succeeded
    assert runner.peak == 3
    assert [r["a"]["text"] for r in outcome.outputs["results"]] == [str(i) for i in range(6)]


def test_failing_item_fails_foreach_and_skips_its_successor() -> None:
    loop, body = loop_plan()
    outcome, summary = run_foreach(loop, body, ctx(["ok", "fail", "ok"]), runner=FakeRunner())
    assert not outcome.succeeded
    assert outcome.error_category == ErrorCategory.NONZERO_EXIT
    assert outcome.outputs["failed_items"] == [1]
    assert "b" not in outcome.outputs["results"][1]
    assert outcome.outputs["results"][2]["b"]["text"] == "2-ok-U"
    assert summary["a"]["state"] == "FAILED"
    assert "item 1" in summary["a"]["message"]


def test_error_edge_in_body_handles_the_failure() -> None:
    loop, body = loop_plan()
    body["b"]["parents"] = []
    body["a"]["children"] = []
    link(body, "a", "b", "error")
    outcome, _ = run_foreach(loop, body, ctx(["fail"]), runner=FakeRunner())
    assert outcome.succeeded
    assert outcome.outputs["results"][0]["b"]["text"] == "0-fail-U"


def test_continue_on_error_handles_the_failure() -> None:
    loop, body = loop_plan(continue_on_error=True)
    outcome, _ = run_foreach(loop, body, ctx(["fail", "x"]), runner=FakeRunner())
    assert outcome.succeeded


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("params.xs", "expected a list, got dict"),
        ("range(11) | list", "11 items exceed the foreach limit of 10"),
        ("params.nope.deeper", "TEMPLATE"),
    ],
)
def test_bad_items(items: str, message: str) -> None:
    loop, body = loop_plan(items=items)
    outcome, _ = run_foreach(loop, body, ctx({"a": 1}), runner=FakeRunner(), max_items=10)
    assert not outcome.succeeded
    assert message in f"{outcome.error_category}: {outcome.error_message}"


def test_literal_item_list_and_empty_list() -> None:
    loop, body = loop_plan(items=["{{ steps.up.v }}", 2])
    outcome, _ = run_foreach(loop, body, ctx(), runner=FakeRunner())
    assert [r["a"]["text"] for r in outcome.outputs["results"]] == ["U", "2"]
    loop, body = loop_plan(items=[])
    outcome, summary = run_foreach(loop, body, ctx(), runner=FakeRunner())
    assert outcome.succeeded
    assert outcome.outputs["results"] == []
    assert summary["a"]["state"] == "SKIPPED"


def test_results_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import conveyor.executor.foreach as foreach

    monkeypatch.setattr(foreach, "MAX_RESULTS_CHARS", 120)
    loop, body = loop_plan()
    outcome, _ = run_foreach(loop, body, ctx(["x" * 30, "y", "z"]), runner=FakeRunner())
    assert outcome.succeeded
    assert outcome.outputs["results"][0]["a"]["text"] == "x" * 30
    assert outcome.outputs["results"][1:] == [None, None]
    assert outcome.outputs["results_truncated"] is True


def test_nested_foreach_reports_its_body() -> None:
    inner_body = plan_node("leaf", "action.command", {"text": "{{ item }}"})
    inner = plan_node("inner", "logic.foreach", {"items": "item"}, body=["leaf"])
    outer = plan_node("outer", "logic.foreach", {"items": "params.xs"}, body=["inner"])
    nodes = {"inner": inner, "leaf": inner_body}
    outcome, summary = run_foreach(outer, nodes, ctx([["a", "b"], ["fail"]]), runner=FakeRunner())
    assert not outcome.succeeded
    first = outcome.outputs["results"][0]["inner"]["results"]
    assert [r["leaf"]["text"] for r in first] == ["a", "b"]
    assert summary["inner"]["state"] == "FAILED"
    assert summary["leaf"]["state"] == "FAILED"


def test_progress_hears_every_item_end_with_the_total_first() -> None:
    loop, body = loop_plan(concurrency=3)
    heard: list[tuple[int, int, int]] = []
    lock = threading.Lock()

    def progress(done: int, failed: int, total: int) -> None:
        with lock:
            heard.append((done, failed, total))

    items = ["ok", "fail", "ok", "ok", "fail"]
    outcome, _ = run_foreach(loop, body, ctx(items), runner=FakeRunner(), progress=progress)
    assert not outcome.succeeded
    assert heard[0] == (0, 0, 5)
    assert sorted(d for d, _f, _t in heard[1:]) == [1, 2, 3, 4, 5]
    assert max(heard) == (5, 2, 5)
    assert all(t == 5 for _d, _f, t in heard)
