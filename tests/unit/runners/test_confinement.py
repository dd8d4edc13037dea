"""Confinement: a working directory per attempt, cwd inside it, a step user, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor.executor.runners import ErrorCategory, execute
from conveyor.executor.runners.base import StepUser
from conveyor.executor.runners.confine import protect_file, resolve_step_user

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="switching users needs a root worker")


def command(data: dict[str, Any]) -> dict[str, Any]:
    return {"id": "n", "type": "action.command", "data": data, "timeout_s": 60}


def nobody() -> StepUser:
    user = resolve_step_user("auto", euid=0)
    assert user is not None
    return user


@pytest.mark.parametrize(
    "cwd", ["../../etc", "/etc", "a/../../..", "{{ params.dir }}", "x/../../{{ params.dir }}"]
)
def test_cwd_cannot_leave_the_working_directory(make_ctx: Any, tmp_path: Path, cwd: str) -> None:
    ctx = make_ctx(params={"dir": "/etc"}, work_root=str(tmp_path))
    outcome = execute(command({"argv": ["pwd"], "cwd": cwd}), ctx)
    assert outcome.error_category == ErrorCategory.TEMPLATE
    assert "data.cwd" in (outcome.error_message or "")
    assert "exit_code" not in outcome.outputs


def test_a_symlink_out_of_the_working_directory_is_refused(make_ctx: Any, tmp_path: Path) -> None:
    # The first attempt leaves nothing behind, so a symlink can only come from the same
    # attempt: here the cwd path itself goes through one the template names.
    outside = tmp_path / "outside"
    outside.mkdir()
    ctx = make_ctx(params={"dir": str(outside)}, work_root=str(tmp_path / "work"))
    (tmp_path / "work").mkdir()
    link_attempt = execute(command({"argv": ["pwd"], "cwd": "{{ params.dir }}/.."}), ctx)
    assert link_attempt.error_category == ErrorCategory.TEMPLATE


def test_each_attempt_gets_a_fresh_directory_removed_afterwards(
    make_ctx: Any, tmp_path: Path
) -> None:
    ctx = make_ctx(work_root=str(tmp_path))
    node = command({"command": "sh -c 'ls -A; pwd; touch left-behind'", "output": "lines"})
    first = execute(node, ctx)
    second = execute(node, ctx)
    assert first.succeeded and second.succeeded
    assert first.outputs["output"] == [first.outputs["output"][0]]  # ls -A printed nothing
    assert first.outputs["output"][0] != second.outputs["output"][0]
    assert list(tmp_path.iterdir()) == []


def test_a_failed_attempts_directory_is_kept_only_when_asked(make_ctx: Any, tmp_path: Path) -> None:
    node = command({"command": "touch evidence; exit 3", "shell": True})
    assert execute(node, make_ctx(work_root=str(tmp_path / "a"))).succeeded is False
    assert list((tmp_path / "a").iterdir()) == []
    execute(node, make_ctx(work_root=str(tmp_path / "b"), keep_failed_workdirs=True))
    kept = list((tmp_path / "b").iterdir())
    assert len(kept) == 1 and (kept[0] / "evidence").exists()


def test_step_user_setting() -> None:
    assert resolve_step_user("auto", euid=1000) is None
    assert resolve_step_user("off", euid=0) is None
    assert nobody().name == "nobody"
    with pytest.raises(ValueError, match="no user"):
        resolve_step_user("no-such-user-here", euid=0)
    with pytest.raises(ValueError, match="root"):
        resolve_step_user("root", euid=0)
    with pytest.raises(ValueError, match="cannot switch"):
        resolve_step_user("nobody", euid=1000)


@needs_root
def test_a_step_user_cannot_read_the_workers_environment_or_secrets(
    make_ctx: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", "postgresql://u:hunter2-db@db/x")
    secrets_dir = tmp_path / "etc"
    secrets_dir.mkdir()
    os.chmod(tmp_path, 0o755)
    secrets_file = secrets_dir / "secrets.env"
    secrets_file.write_text("TOKEN=hunter2-token\n")
    secrets_file.chmod(0o644)
    user = nobody()
    protect_file(secrets_file, user)
    assert secrets_file.stat().st_mode & 0o007 == 0  # its group is not the step user's
    script = f"id -u; cat /proc/{os.getpid()}/environ; cat {secrets_file}; exit 0"
    outcome = execute(
        command({"command": script, "shell": True}),
        make_ctx(work_root=str(tmp_path / "work"), step_user=user),
    )
    assert outcome.succeeded, outcome.error_message
    assert outcome.outputs["stdout"].strip() == str(user.uid)
    assert "hunter2" not in outcome.outputs["stdout"] + outcome.outputs["stderr"]
    assert "Permission denied" in outcome.outputs["stderr"]


@needs_root
def test_scripts_and_cwd_work_for_the_step_user(make_ctx: Any, tmp_path: Path) -> None:
    node = {
        "id": "n",
        "type": "action.script",
        "data": {"interpreter": "sh", "script": "id -u; touch made; pwd", "cwd": "sub/dir"},
        "timeout_s": 60,
    }
    outcome = execute(node, make_ctx(work_root=str(tmp_path), step_user=nobody()))
    assert outcome.succeeded, outcome.error_message
    uid, where = outcome.outputs["stdout"].split()
    assert uid == str(nobody().uid) and where.endswith("/sub/dir")


WORKER = textwrap.dedent(
    """
    import sys
    from tests.unit.runners.local_sink import LocalArtifactSink
    from conveyor.executor.runners import StepContext, execute
    from conveyor.executor.runners.base import StepUser

    root, pidfile, uid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    user = StepUser("step", uid, uid) if uid >= 0 else None
    ctx = StepContext(run_id="r", node_id="n", attempt=1, scope={"params": {"f": pidfile}},
                      artifacts=LocalArtifactSink(root + "/artifacts"), work_root=root + "/w",
                      step_user=user)
    command = "sleep 300 & sh -c 'sleep 300' & echo $$ > {{ params.f }}.tmp;"
    command += " mv {{ params.f }}.tmp {{ params.f }}; wait"
    execute({"id": "n", "type": "action.command", "timeout_s": 600,
             "data": {"command": command, "shell": True}}, ctx)
    """
)


def group_members(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("as_user", [False, pytest.param(True, marks=needs_root)])
def test_no_process_of_a_step_survives_a_sigkilled_worker(tmp_path: Path, as_user: bool) -> None:
    os.chmod(tmp_path, 0o777)
    for parent in tmp_path.parents:  # the step user writes the pid file here
        parent.chmod(parent.stat().st_mode | 0o001)
    pidfile = tmp_path / "pids"
    uid = nobody().uid if as_user else -1
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path), str(pidfile), str(uid)],
        start_new_session=True,
    )
    try:
        for _ in range(600):
            if pidfile.exists():
                break
            time.sleep(0.05)
        pgid = int(pidfile.read_text())
        for _ in range(100):  # the three sleeps and the shells have started
            if len(group_members(pgid)) >= 3:
                break
            time.sleep(0.05)
        assert len(group_members(pgid)) >= 3
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        for _ in range(600):
            if not group_members(pgid):
                break
            time.sleep(0.05)
        assert group_members(pgid) == []
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


UNDUMPABLE_WORKER = textwrap.dedent(
    """
    import ctypes, os, sys, time
    from conveyor.executor.runners.confine import make_undumpable
    # Imports done (the project may lie in a folder only root can enter), become the user.
    uid, gid = int(sys.argv[2]), int(sys.argv[3])
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if sys.argv[1] == "yes":
        assert make_undumpable()
    else:  # a credential change clears the flag; a process the user started has it set
        assert ctypes.CDLL(None).prctl(4, 1, 0, 0, 0) == 0  # PR_SET_DUMPABLE
    print("ready", flush=True)
    time.sleep(60)
    """
)


@needs_root
@pytest.mark.parametrize("undumpable", [True, False])
def test_a_non_dumpable_worker_hides_its_environment_from_its_own_user(
    tmp_path: Path, undumpable: bool
) -> None:
    # Both processes run as the same unprivileged user, as a non-root worker and its steps do.
    user = nobody()
    setpriv = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--"]
    env = {**os.environ, "WORKER_ONLY_CREDENTIAL": "hunter2-same-user"}
    flag = "yes" if undumpable else "no"
    worker = subprocess.Popen(
        [sys.executable, "-c", UNDUMPABLE_WORKER, flag, str(user.uid), str(user.gid)],
        env=env,
        stdout=subprocess.PIPE,
        cwd="/",
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == b"ready"
        peek = subprocess.run(
            [*setpriv, "cat", f"/proc/{worker.pid}/environ"],
            capture_output=True,
            check=False,
            cwd="/",
        )
        leaked = b"hunter2-same-user" in peek.stdout
        assert leaked is not undumpable
    finally:
        worker.kill()
        worker.wait()
