"""Running one OS process for a step: capture, timeout, cancellation, resource usage.

The child starts in its own session, so it leads a fresh process group: a
timeout or a cancellation signals the whole group (SIGTERM, then SIGKILL after
a grace period), which reaches anything the step started in the background
too. When the child exits by itself, whatever it left running in its group
is ended the same way, so no step leaves processes behind on a worker. Each
group is registered with the worker's guard (`guard`), which kills it if the
worker dies first. With a step user (`StepContext.step_user`) the child runs as
that user, its group and no supplementary groups.

Each output pipe is drained by its own thread, so a child never blocks on a
full pipe, and the child is reaped with ``wait4`` to read the kernel's
accounting of that child alone (CPU time, peak memory). Those threads are
kept idle for the next step: starting three threads per step cost more
than running a short command.
"""

from __future__ import annotations

import abc
import contextlib
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from conveyor.executor.runners.base import (
    ErrorCategory,
    Masker,
    ResourceUsage,
    StepContext,
    StepError,
    StepUser,
)
from conveyor.executor.runners.capture import ByteMasker, LiveOutput, StreamCapture
from conveyor.executor.runners.guard import GUARD

POLL_S = 0.2
KILL_GRACE_S = 2.0
_READ_SIZE = 64 * 1024
# How long to keep reading after the process group is gone: only a process that
# left the group (setsid) can still hold a pipe open by then.
_DRAIN_S = 2.0


class _ThreadCache:
    """Daemon threads for the pipes and the reaping of steps, kept a while when idle.

    Each running step holds two or three of them for its whole run, so there is no bound
    but the steps themselves; a thread idle for `idle_s` ends. Daemon threads, unlike
    `concurrent.futures`' (which the interpreter joins at exit), never hold up a worker's
    exit while a step's child still runs.
    """

    def __init__(self, idle_s: float = 30.0) -> None:
        self._idle_s = idle_s
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, task: Callable[[], None]) -> None:
        """Run `task` on an idle thread, or on a new one when none is idle."""
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
            self._tasks.put(task)
        if spawn:
            threading.Thread(target=self._serve, name="conveyor-step-io", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                task = self._tasks.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    # Still counted idle and nothing queued: no task can be waiting for
                    # this thread, so it may end.
                    if self._idle > 0 and self._tasks.empty():
                        self._idle -= 1
                        return
                continue
            # The tasks record their own failures (`_Reader.error`, `_Reaper.status`).
            with contextlib.suppress(Exception):
                task()
            with self._lock:
                self._idle += 1


_THREADS = _ThreadCache()


@dataclass
class ProcessResult:
    """How a process ended and what it wrote."""

    returncode: int | None
    stdout: StreamCapture
    stderr: StreamCapture
    usage: ResourceUsage
    duration_ms: int
    timed_out: bool
    cancelled: bool


class _PoolTask(abc.ABC):
    """Work run on a cached thread, with the start/join of a thread."""

    def __init__(self) -> None:
        self.finished = threading.Event()

    @abc.abstractmethod
    def run(self) -> None:
        """The work."""

    def start(self) -> None:
        """Run `run` on a cached thread."""
        _THREADS.submit(self._run_and_mark)

    def join(self, timeout: float | None = None) -> None:
        """Wait until `run` returned (or `timeout` seconds passed)."""
        self.finished.wait(timeout)

    def _run_and_mark(self) -> None:
        try:
            self.run()
        finally:
            self.finished.set()


class _Reader(_PoolTask):
    """Drains one pipe through the masker into its capture and the live log."""

    def __init__(
        self, pipe: IO[bytes], masker: ByteMasker, capture: StreamCapture, live: LiveOutput
    ) -> None:
        super().__init__()
        self.pipe = pipe
        self.masker = masker
        self.capture = capture
        self.live = live
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        fd = self.pipe.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        try:
            while not self.stop.is_set():
                # A short poll lets batched live output go out while the child is quiet.
                if not poller.poll(50):
                    self.live.tick()
                    continue
                data = os.read(fd, _READ_SIZE)
                if not data:
                    break
                self._take(self.masker.feed(data))
        except OSError as exc:
            self.error = exc
        finally:
            self._take(self.masker.flush())
            self.live.close()

    def _take(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            self.capture.write(data)
        except OSError as exc:  # e.g. no space left for the spill file; keep draining
            self.error = exc
        self.live.feed(data)


def _feed_stdin(pipe: IO[bytes], data: bytes) -> None:
    # The child may exit without reading its input; that is its business.
    with contextlib.suppress(OSError):
        pipe.write(data)
    with contextlib.suppress(OSError):
        pipe.close()


def _group_alive(pgid: int) -> bool:
    """Whether the group has a member that is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc"):
        return True
    # Orphaned zombies stay in the group until someone reaps them, which not every
    # init does; they hold nothing, so they do not count.
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, reaped: threading.Event, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while True:
        if reaped.is_set() and not _group_alive(pgid):
            return True
        if time.monotonic() >= end:
            return False
        reaped.wait(0.05)


def terminate_group(pgid: int, reaped: threading.Event) -> None:
    """SIGTERM the group, give it `KILL_GRACE_S` to go, then SIGKILL what is left."""
    _signal_group(pgid, signal.SIGTERM)
    if _wait_group_gone(pgid, reaped, KILL_GRACE_S):
        return
    _signal_group(pgid, signal.SIGKILL)
    _wait_group_gone(pgid, reaped, KILL_GRACE_S)


class _Reaper(_PoolTask):
    """Waits for the child with ``wait4`` so its own resource usage can be read."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid
        self.done = threading.Event()
        self.status: int | None = None
        self.rusage: Any = None
        self.ended_at = 0.0

    def run(self) -> None:
        try:
            _, self.status, self.rusage = os.wait4(self.pid, 0)
        except ChildProcessError:
            # Someone else reaped it (SIGCHLD ignored); the exit status is lost.
            pass
        finally:
            self.ended_at = time.monotonic()
            self.done.set()


#: What Linux accepts for one argument or environment string (MAX_ARG_STRLEN), and a
#: bound for all of them together, below the usual ARG_MAX.
MAX_ARG_BYTES = 128 * 1024 - 1
MAX_ARGS_TOTAL_BYTES = 1024 * 1024


def _check_sizes(argv: Sequence[str], env: Mapping[str, str]) -> None:
    total = 0
    items = [(f"argument {i}", a) for i, a in enumerate(argv)]
    items += [(f"environment variable {k}", f"{k}={v}") for k, v in env.items()]
    for what, text in items:
        size = len(text.encode("utf-8", "surrogateescape"))
        total += size + 1
        if size > MAX_ARG_BYTES:
            raise StepError(
                ErrorCategory.INTERNAL,
                f"could not start: {what} is {size} bytes, more than the {MAX_ARG_BYTES} bytes"
                " the system allows for one; pass large values on stdin or in a file",
            )
    if total > MAX_ARGS_TOTAL_BYTES:
        raise StepError(
            ErrorCategory.INTERNAL,
            f"could not start: arguments and environment take {total} bytes, more than"
            f" {MAX_ARGS_TOTAL_BYTES}; pass large values on stdin or in a file",
        )


SETPRIV = shutil.which("setpriv")
# Used when util-linux's setpriv is missing: the same switch in a short Python program.
_SWITCH_USER = (
    "import os, sys; os.setgroups([]); os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[1]));"
    " os.execvp(sys.argv[3], sys.argv[3:])"
)


def _as_user(
    argv: list[str], user: StepUser, *, env: Mapping[str, str], cwd: str | None
) -> list[str]:
    """`argv` wrapped to run as `user`, with its group and no supplementary groups.

    The switch happens in the exec'd wrapper, not between fork and exec: Python can then
    start the child with vfork, which a process with gRPC threads needs (a plain fork
    runs gRPC's fork handlers, which may abort the child).
    """
    program = argv[0]
    if "/" not in program:
        found = shutil.which(program, path=env.get("PATH", os.defpath))
        if found is None:
            raise StepError(
                ErrorCategory.INFRA,
                f"could not start: [Errno 2] No such file or directory: {program!r}",
            )
    elif not os.path.exists(os.path.join(cwd or "", program)):
        raise StepError(
            ErrorCategory.INFRA,
            f"could not start: [Errno 2] No such file or directory: {program!r}",
        )
    if SETPRIV is not None:
        return [
            SETPRIV,
            f"--reuid={user.uid}",
            f"--regid={user.gid}",
            "--clear-groups",
            "--",
            *argv,
        ]
    return [sys.executable, "-I", "-c", _SWITCH_USER, str(user.uid), str(user.gid), *argv]


def _start(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    with_stdin: bool,
    user: StepUser | None = None,
) -> subprocess.Popen[bytes]:
    _check_sizes(argv, env)
    command = list(argv)
    if user is not None:
        command = _as_user(command, user, env=env, cwd=cwd)
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if with_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise StepError(ErrorCategory.INFRA, f"could not start: {exc}") from exc
    except ValueError as exc:  # e.g. a NUL byte in an argument or the environment
        raise StepError(ErrorCategory.INTERNAL, f"could not start: {exc}") from exc
    GUARD.register(proc.pid)  # the group dies with this worker, even by SIGKILL
    return proc


def _supervise(reaper: _Reaper, *, deadline: float | None, ctx: StepContext) -> tuple[bool, bool]:
    """Wait for the child, polling for cancellation; returns (timed_out, cancelled)."""
    while True:
        wait = POLL_S if deadline is None else max(0.0, min(POLL_S, deadline - time.monotonic()))
        if reaper.done.wait(wait):
            return False, False
        if ctx.is_cancelled():
            return False, True
        if deadline is not None and time.monotonic() >= deadline:
            return True, False


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    stdin: bytes | None,
    timeout_s: float | None,
    ctx: StepContext,
    masker: Masker,
) -> ProcessResult:
    """Run `argv` to the end (or until timeout or cancellation) and capture its output."""
    stdout = StreamCapture.for_step("stdout", ctx)
    stderr = StreamCapture.for_step("stderr", ctx)
    started = time.monotonic()
    proc = _start(argv, env=env, cwd=cwd, with_stdin=stdin is not None, user=ctx.step_user)
    assert proc.stdout is not None and proc.stderr is not None
    pgid = proc.pid
    readers = [
        _Reader(
            pipe,
            ByteMasker(masker),
            capture,
            LiveOutput(capture.name, ctx.on_output, mask=masker.text),
        )
        for pipe, capture in ((proc.stdout, stdout), (proc.stderr, stderr))
    ]
    reaper = _Reaper(proc.pid)
    reaper.start()
    for reader in readers:
        reader.start()
    if stdin is not None and proc.stdin is not None:
        threading.Thread(
            target=_feed_stdin, args=(proc.stdin, stdin), name="conveyor-stdin", daemon=True
        ).start()
    timed_out = cancelled = False
    try:
        deadline = None if timeout_s is None else started + timeout_s
        timed_out, cancelled = _supervise(reaper, deadline=deadline, ctx=ctx)
    finally:
        # Also reached when a hook raises: the group never outlives the step.
        if not reaper.done.is_set() or _group_alive(pgid):
            terminate_group(pgid, reaper.done)
        reaper.done.wait()
        GUARD.unregister(pgid)
        _finish_readers(readers)
        proc.stdout.close()
        proc.stderr.close()
    if reaper.status is not None:
        # Popen did not reap the child itself; tell it, so it never waits again.
        proc.returncode = os.waitstatus_to_exitcode(reaper.status)
    for reader in readers:
        if reader.error is not None:
            raise StepError(
                ErrorCategory.INFRA, f"could not capture {reader.capture.name}: {reader.error}"
            )
    wall = reaper.ended_at - started
    ru = reaper.rusage
    usage = ResourceUsage(
        wall_s=wall,
        cpu_user_s=float(ru.ru_utime) if ru is not None else 0.0,
        cpu_system_s=float(ru.ru_stime) if ru is not None else 0.0,
        max_rss_kb=int(ru.ru_maxrss) if ru is not None else 0,
    )
    return ProcessResult(
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
        usage=usage,
        duration_ms=round(wall * 1000),
        timed_out=timed_out,
        cancelled=cancelled,
    )


def _finish_readers(readers: list[_Reader]) -> None:
    end = time.monotonic() + _DRAIN_S
    for reader in readers:
        reader.join(max(0.0, end - time.monotonic()))
    for reader in readers:
        reader.stop.set()
        reader.join()
