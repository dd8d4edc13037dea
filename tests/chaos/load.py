"""A mixed load for chaos tests, and the checks that it ended as it should.

Every command step appends `S <key> <pid> <time>` when it starts and `E <key> <pid> <time>`
when it ends to one marker file, keyed by run and node (and foreach item): two intervals of
one key that overlap mean a command ran concurrently with itself; a key started twice is a
re-execution (a step killed mid-way and run again).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import text

from conveyor.cli.client import gateway_channel
from conveyor.executor.v1 import executor_service_pb2, executor_service_pb2_grpc
from conveyor.kernel.protoconv import json_text
from conveyor.translator.v1 import translator_service_pb2, translator_service_pb2_grpc
from tests.chaos.stack import Stack
from tests.conftest import open_to_steps
from tests.integration import workflows as wf

MARK = 'echo "S $1 $$ $(date +%s.%N)" >> "$2"; sleep "$3"; echo "E $1 $$ $(date +%s.%N)" >> "$2"'
FLAKY = 'test -e "$4/$5" || { touch "$4/$5"; exit 3; }; ' + MARK
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def long_mode() -> bool:
    """CONVEYOR_CHAOS_LONG=1 runs the long version."""
    return os.environ.get("CONVEYOR_CHAOS_LONG", "") not in ("", "0")


def marker(node_id: str, log: Path, sleep_s: float, key: str = "", **data: Any) -> dict[str, Any]:
    """A command step that records its start and end in the marker file."""
    return wf.cmd(
        node_id,
        ["sh", "-c", MARK, "mark", key or f"{{{{ run.id }}}}:{node_id}", str(log), str(sleep_s)],
        **data,
    )


def workflows(log: Path, flags: Path) -> dict[str, str]:
    """The mixed load's workflows by name."""
    params = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "integer"}, "default": [1, 2, 3]},
            "fail": {"type": "boolean", "default": False},
        },
    }
    chain = wf.doc(
        "chaos-chain",
        [marker("a", log, 0.4), marker("b", log, 0.4), marker("c", log, 0.4)],
        [("a", "b"), ("b", "c")],
        params,
    )
    fanout = wf.doc(
        "chaos-fanout",
        [
            {"id": "start", "type": "trigger.manual", "data": {}},
            *[marker(f"p{i}", log, 0.8) for i in range(4)],
            marker("join", log, 0.2),
        ],
        [*[("start", f"p{i}") for i in range(4)], *[(f"p{i}", "join") for i in range(4)]],
        params,
    )
    flaky = wf.cmd(
        "flaky",
        [
            "sh",
            "-c",
            FLAKY,
            "flaky",
            "{{ run.id }}:flaky",
            str(log),
            "0.3",
            str(flags),
            "{{ run.id }}",
        ],
        retries={"max": 2, "backoff_s": 0.2},
    )
    retry = wf.doc("chaos-retry", [flaky, marker("after", log, 0.3)], [("flaky", "after")], params)
    foreach = wf.doc(
        "chaos-foreach",
        [
            {
                "id": "each",
                "type": "logic.foreach",
                "data": {"items": "params.items", "concurrency": 2},
            },
            {
                **marker("item", log, 0.4, key="{{ run.id }}:item:{{ index }}"),
                "parentId": "each",
            },
            marker("done", log, 0.2),
        ],
        [("each", "done")],
        params,
    )
    sub = wf.doc(
        "chaos-sub",
        [
            {"id": "child", "type": "action.subworkflow", "data": {"job": "chaos-chain"}},
            marker("after", log, 0.2),
        ],
        [("child", "after")],
        params,
    )
    approval = wf.doc(
        "chaos-approval",
        [
            {"id": "gate", "type": "action.approval", "data": {"message": "go?"}},
            marker("after", log, 0.3),
        ],
        [("gate", "after")],
        params,
    )
    branch = wf.doc(
        "chaos-branch",
        [
            {"id": "check", "type": "logic.condition", "data": {"expression": "params.fail"}},
            {"id": "stop", "type": "logic.fail", "data": {"message": "asked to fail"}},
            marker("work", log, 0.5),
        ],
        [("check", "stop", "true"), ("check", "work", "false")],
        params,
    )
    return {
        "chaos-chain": chain,
        "chaos-fanout": fanout,
        "chaos-retry": retry,
        "chaos-foreach": foreach,
        "chaos-sub": sub,
        "chaos-approval": approval,
        "chaos-branch": branch,
    }


def call(fn: Any, request: Any, *, errors: list[str], timeout_s: float = 120.0) -> Any:
    """Call an RPC, retrying retryable statuses; every status seen is recorded in `errors`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return fn(request, timeout=15)
        except grpc.RpcError as err:
            code = err.code()
            errors.append(code.name)
            if code not in RETRYABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@dataclass
class Load:
    """Submits runs, approves approvals, and checks the outcome."""

    stack: Stack
    marks: Path
    flags: Path
    errors: list[str] = field(default_factory=list)
    submitted: dict[str, str] = field(default_factory=dict)  # request id -> expected state
    jobs: dict[str, str] = field(default_factory=dict)  # name -> job id
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.flags.mkdir(parents=True, exist_ok=True)
        open_to_steps(self.flags)  # the flaky step marks its first try here, as the step user
        self._channel = gateway_channel(self.stack.grpc, self.stack.token)
        self.executor = executor_service_pb2_grpc.ExecutorServiceStub(self._channel)
        self.translator = translator_service_pb2_grpc.TranslatorServiceStub(self._channel)

    def create_jobs(self) -> None:
        """Save every workflow of the mix."""
        for name, doc in workflows(self.marks, self.flags).items():
            reply = call(
                self.translator.CreateJob,
                translator_service_pb2.CreateJobRequest(workflow_json=doc, update_existing=True),
                errors=self.errors,
            )
            self.jobs[name] = reply.job.job_id

    def submit(self, index: int) -> None:
        """Start the index-th run of the mix (idempotent on its request id)."""
        names = sorted(self.jobs)
        name = names[index % len(names)]
        params: dict[str, Any] = {}
        expected = "SUCCEEDED"
        if name == "chaos-branch" and index % 2:
            params["fail"] = True
            expected = "FAILED"
        request_id = f"chaos-{index}"
        call(
            self.executor.StartRun,
            executor_service_pb2.StartRunRequest(
                job_id=self.jobs[name], parameters_json=json_text(params), request_id=request_id
            ),
            errors=self.errors,
        )
        self.submitted[request_id] = expected

    def submit_over(self, count: int, seconds: float) -> None:
        """Submit `count` runs spread over `seconds`."""
        for i in range(count):
            self.submit(i)
            time.sleep(seconds / max(count, 1))

    def start_approver(self) -> threading.Thread:
        """Approve every waiting approval, as a person would."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    with self.stack.engine.connect() as conn:
                        waiting = conn.execute(
                            text(
                                "SELECT run_id, node_id FROM job_run_steps "
                                "WHERE node_type = 'action.approval' AND state = 'WAITING'"
                            )
                        ).all()
                    for run_id, node_id in waiting:
                        self.executor.ApproveStep(
                            executor_service_pb2.ApproveStepRequest(
                                run_id=run_id,
                                node_id=node_id,
                                decision=executor_service_pb2.APPROVAL_DECISION_APPROVE,
                                approver="chaos",
                            ),
                            timeout=15,
                        )
                except Exception:
                    pass
                self._stop.wait(0.5)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread

    def wait_all(self, timeout_s: float) -> dict[str, str]:
        """Wait until every submitted run ended; returns request id -> final state."""
        deadline = time.monotonic() + timeout_s
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            with self.stack.engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT request_id, state FROM job_runs WHERE request_id LIKE 'chaos-%'")
                ).all()
            states = dict(rows)
            if all(states.get(r) in TERMINAL for r in self.submitted):
                break
            time.sleep(1)
        return states

    def close(self) -> None:
        """Stop the approver and the channel."""
        self._stop.set()
        self._channel.close()

    def report(self, states: dict[str, str], faults: int, name: str) -> dict[str, Any]:
        """Check everything and return the figures."""
        lost = [r for r in self.submitted if r not in states]
        stuck = [r for r in self.submitted if r in states and states[r] not in TERMINAL]
        wrong = [
            (r, states[r], want)
            for r, want in self.submitted.items()
            if r in states and states[r] in TERMINAL and states[r] != want
        ]
        with self.stack.engine.connect() as conn:
            total_runs = conn.execute(text("SELECT count(*) FROM job_runs")).scalar_one()
            open_steps = conn.execute(
                text(
                    "SELECT count(*) FROM job_run_steps s JOIN job_runs r ON r.id = s.run_id "
                    "WHERE r.state IN ('SUCCEEDED','FAILED','CANCELLED') "
                    "AND s.state IN ('QUEUED','RUNNING','WAITING','PENDING')"
                )
            ).scalar_one()
            bad_children = conn.execute(
                text(
                    "SELECT count(*) FROM job_runs WHERE parent_run_id IS NOT NULL "
                    "AND state <> 'SUCCEEDED'"
                )
            ).scalar_one()
        overlaps, reexecuted, executions = check_marks(self.marks)
        recovery = recovery_times(self.stack)
        internal = [e for e in self.errors if e not in {c.name for c in RETRYABLE}]
        figures = {
            "test": name,
            "faults_injected": faults,
            "runs": len(self.submitted),
            "runs_incl_children": int(total_runs),
            "lost": len(lost),
            "stuck": len(stuck),
            "wrong_final_state": len(wrong),
            "open_steps_in_ended_runs": int(open_steps),
            "failed_child_runs": int(bad_children),
            "command_executions": executions,
            "re_executions": reexecuted,
            "concurrent_duplicate_executions": len(overlaps),
            "retryable_rpc_errors": len(self.errors) - len(internal),
            "non_retryable_rpc_errors": internal,
            **recovery,
        }
        print(json.dumps(figures))
        out = os.environ.get("CONVEYOR_CHAOS_REPORT")
        if out:
            with Path(out).open("a") as fh:
                fh.write(json.dumps(figures) + "\n")
        assert not lost, f"runs lost: {lost}"
        assert not stuck, f"runs not ended: {stuck}"
        assert not wrong, f"wrong final states: {wrong}"
        assert open_steps == 0
        assert bad_children == 0
        assert not overlaps, f"commands ran concurrently with themselves: {overlaps[:5]}"
        assert not internal, f"non-retryable errors answered: {internal}"
        return figures


def check_marks(path: Path) -> tuple[list[str], int, int]:
    """(keys whose executions overlapped, keys executed more than once, executions)."""
    starts: dict[tuple[str, str], float] = {}
    ends: dict[tuple[str, str], float] = {}
    by_key: dict[str, list[tuple[str, str]]] = defaultdict(list)
    if not path.exists():
        return [], 0, 0
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        kind, key, pid, at = parts
        if kind == "S":
            starts[(key, pid)] = float(at)
            by_key[key].append((key, pid))
        else:
            ends[(key, pid)] = float(at)
    overlaps = []
    for key, runs in by_key.items():
        spans = sorted((starts[r], ends.get(r, starts[r])) for r in runs)
        if any(b[0] < a[1] for a, b in itertools.pairwise(spans)):
            overlaps.append(key)
    reexecuted = sum(1 for runs in by_key.values() if len(runs) > 1)
    return overlaps, reexecuted, len(starts)


def recovery_times(stack: Stack) -> dict[str, Any]:
    """Kill -> WORKER_LOST and kill -> next attempt start, over every attempt lost in a kill."""
    killed = {f"{name}@chaos": at for name, at in stack.kills if name.startswith("chaos")}
    with stack.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT e.worker, e.ended_at, n.started_at FROM job_executions e "
                "LEFT JOIN job_executions n ON n.run_id = e.run_id AND n.node_id = e.node_id "
                "AND n.attempt = e.attempt + 1 WHERE e.error_category = 'WORKER_LOST'"
            )
        ).all()
    detect: list[float] = []
    restart: list[float] = []
    for worker, ended, nxt in rows:
        at = killed.get(worker)
        if at is None or ended is None:
            continue
        detect.append(ended.timestamp() - at)
        if nxt is not None:
            restart.append(nxt.timestamp() - at)

    def summary(values: list[float]) -> dict[str, float | None]:
        if not values:
            return {"p50": None, "max": None}
        return {"p50": round(statistics.median(values), 2), "max": round(max(values), 2)}

    return {
        "lost_attempts": len(detect),
        "kill_to_worker_lost_s": summary(detect),
        "kill_to_next_attempt_s": summary(restart),
    }


def kill_workers(stack: Stack, kills: int, interval_s: float, rng: random.Random) -> int:
    """kill -9 a random worker every `interval_s` (±30 %), starting a replacement each time."""
    done = 0
    for _ in range(kills):
        time.sleep(interval_s * rng.uniform(0.7, 1.3))
        alive = stack.workers()
        if not alive:
            stack.start_worker()
            continue
        stack.kill(rng.choice(alive))
        stack.start_worker()
        done += 1
    return done


def utc(ts: float) -> datetime:
    """A POSIX time as an aware datetime."""
    return datetime.fromtimestamp(ts, UTC)
