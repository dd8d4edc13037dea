"""No orphans: a small guard process kills the steps of a worker that died.

Each worker process starts one guard (on its first step), a tiny Python process in a
session of its own that reads the worker's notes on a pipe: ``+<pgid>`` when a step's
process group starts, ``-<pgid>`` when it ended. When the worker dies, however it dies
(SIGKILL included), the kernel closes its end of the pipe; the guard reads end-of-file
and SIGKILLs every process group still registered, then exits. Steps therefore never
outlive their worker, and a retry never runs beside a previous attempt's processes.

Cost per step: two short writes to a pipe. The guard itself is started once per worker
process (an isolated interpreter that imports nothing of Conveyor).

Limits: a step's process that leaves its process group (``setsid``, ``setpgid``) is not
tracked; nor is a step started in the instant between its fork and its registration
(microseconds) if the worker dies right then.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from typing import IO

import structlog

log = structlog.get_logger(__name__)

# The guard's program: only the standard library, nothing of Conveyor.
GUARD_CODE = """
import os, signal, sys
groups = set()
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
for line in sys.stdin.buffer:
    line = line.strip()
    if len(line) < 2:
        continue
    try:
        pgid = int(line[1:])
    except ValueError:
        continue
    if line[:1] == b"+":
        groups.add(pgid)
    else:
        groups.discard(pgid)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class Guard:
    """The guard of this process; `register` and `unregister` a step's process group."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = 0
        self._groups: set[int] = set()

    def _pipe(self) -> IO[bytes] | None:
        proc = self._proc
        if proc is not None and self._pid == os.getpid() and proc.poll() is None:
            return proc.stdin
        if self._pid != os.getpid():
            self._groups.clear()  # a forked child: the parent's steps are not ours
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", GUARD_CODE],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            log.warning("could not start the step guard", error=str(exc))
            return None
        self._proc, self._pid = proc, os.getpid()
        assert proc.stdin is not None
        for pgid in self._groups:  # a restarted guard takes over the running steps
            self._write(proc.stdin, f"+{pgid}\n")
        return proc.stdin

    @staticmethod
    def _write(pipe: IO[bytes], note: str) -> bool:
        try:
            pipe.write(note.encode())
            pipe.flush()
        except (OSError, ValueError):
            return False
        return True

    def _note(self, note: str) -> None:
        with self._lock:
            for _ in range(2):  # once more with a fresh guard if the old one is gone
                pipe = self._pipe()
                if pipe is None or self._write(pipe, note):
                    return
                self._proc = None

    def register(self, pgid: int) -> None:
        """Kill group `pgid` if this process dies before `unregister`."""
        with self._lock:
            self._groups.add(pgid)
        self._note(f"+{pgid}\n")

    def unregister(self, pgid: int) -> None:
        """The group has ended (or was killed): forget it."""
        with self._lock:
            self._groups.discard(pgid)
        self._note(f"-{pgid}\n")

    def _after_fork_in_child(self) -> None:
        # The child must not keep the parent's guard pipe open (the guard would miss
        # the parent's death) nor write to it.
        proc = self._proc
        self._proc = None
        self._lock = threading.Lock()
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()  # the child's copy of the descriptor only


GUARD = Guard()
os.register_at_fork(after_in_child=GUARD._after_fork_in_child)
