"""Confinement of a step's processes: its own working directory, its own user.

Each attempt of a command or script step runs in a fresh directory of its own,
``<work root>/<run id>-<node>-a<attempt>-<random>``, removed when the attempt ends
(kept when it failed and ``keep_failed_workdirs`` is set). A node's ``cwd`` is a path
relative to that directory; it may not leave it: absolute paths, ``..`` above it and
symlinks pointing out of it are refused (category ``TEMPLATE``, since ``cwd`` is
usually built from a template).

With a step user, the processes of a step run as that user (and its group, with no
supplementary groups), the working directory belongs to it, and ``HOME`` is the
working directory. The worker's environment (``/proc/<worker>/environ``) and the
secrets file are then out of its reach. See `resolve_step_user` for the default.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import pwd
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import structlog

from conveyor.executor.runners.base import ErrorCategory, StepContext, StepError, StepUser

log = structlog.get_logger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_PR_SET_DUMPABLE = 4


class StepUserError(ValueError):
    """The configured step user does not exist or cannot be switched to."""


def resolve_step_user(setting: str, *, euid: int | None = None) -> StepUser | None:
    """The step user for a ``CONVEYOR_STEP_USER`` value.

    ``auto`` (the default): ``nobody`` when the worker runs as root, else none (steps run
    as the worker's own user, which cannot switch users). ``off`` or empty: none. Any
    other value: that user name or uid, which needs a root worker unless it is the
    worker's own user.
    """
    euid = os.geteuid() if euid is None else euid
    value = setting.strip()
    if value.lower() in ("", "off", "none"):
        return None
    if value.lower() == "auto":
        if euid != 0:
            return None
        value = "nobody"
    try:
        entry = pwd.getpwuid(int(value)) if value.isdigit() else pwd.getpwnam(value)
    except (KeyError, OverflowError) as exc:
        raise StepUserError(f"CONVEYOR_STEP_USER: no user {value!r} on this machine") from exc
    if entry.pw_uid == 0:
        raise StepUserError("CONVEYOR_STEP_USER: steps may not run as root; use 'off' instead")
    if euid != 0 and entry.pw_uid != euid:
        raise StepUserError(
            f"CONVEYOR_STEP_USER: the worker runs as uid {euid} and cannot switch to"
            f" {entry.pw_name!r}; run it as root or set 'off'"
        )
    if entry.pw_uid == euid:
        return None
    return StepUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def make_undumpable() -> bool:
    """``prctl(PR_SET_DUMPABLE, 0)``: processes of the same user cannot read this one's
    ``/proc/<pid>/environ`` or memory, nor ptrace it. Linux only; False elsewhere."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def protect_file(path: Path, user: StepUser | None) -> None:
    """Make `path` unreadable to the step user (drop 'other' bits, and 'group' bits when
    the step user's group could use them)."""
    if user is None:
        return
    try:
        info = path.stat()
    except OSError:
        return
    drop = stat.S_IRWXO | (stat.S_IRWXG if info.st_gid == user.gid else 0)
    if info.st_uid == user.uid:
        log.warning("the secrets file belongs to the step user", path=str(path))
        return
    if info.st_mode & drop:
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~drop)
        log.warning(
            "secrets file made unreadable to steps",
            path=str(path),
            mode=oct(stat.S_IMODE(info.st_mode) & ~drop),
        )


def _reachable(directory: str, user: StepUser) -> bool:
    """Whether `user` can search `directory` and every folder above it."""
    path = Path(directory)
    if not path.is_absolute():
        return False
    for folder in (path, *path.parents):
        try:
            info = folder.stat()
        except OSError:
            return False
        if info.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif info.st_gid == user.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


@functools.lru_cache(maxsize=16)
def step_path(path: str, user: StepUser) -> str:
    """`PATH` without the folders the step user cannot reach (e.g. under a private home)."""
    return os.pathsep.join(d for d in path.split(os.pathsep) if d and _reachable(d, user))


def default_work_root() -> Path:
    """Where attempts' directories go when the context names no root."""
    return Path(tempfile.gettempdir()) / "conveyor-steps"


_READY_ROOTS: set[Path] = set()


def _ensure_root(root: Path) -> None:
    if root in _READY_ROOTS and root.is_dir():
        return
    root.mkdir(parents=True, exist_ok=True)
    # Traversable by a step user (who needs x), listable by nobody but the worker.
    with contextlib.suppress(OSError):
        os.chmod(root, 0o711)  # noqa: S103 - traverse only, no listing
    _READY_ROOTS.add(root)


@contextlib.contextmanager
def attempt_workdir(ctx: StepContext) -> Iterator[Path]:
    """A fresh working directory for one attempt; removed afterwards (see module doc).

    The attempt counts as failed when the block raises (runners raise `StepError`).
    """
    root = Path(ctx.work_root) if ctx.work_root else default_work_root()
    run = _UNSAFE.sub("_", ctx.run_id)[:64]
    node = _UNSAFE.sub("_", ctx.node_id)[:64]
    workdir = root / f"{run}-{node}-a{ctx.attempt}-{secrets.token_hex(4)}"
    try:
        _ensure_root(root)
        workdir.mkdir(mode=0o700)
        if ctx.step_user is not None:
            os.chown(workdir, ctx.step_user.uid, ctx.step_user.gid)
    except OSError as exc:
        raise StepError(
            ErrorCategory.INFRA, f"could not create the working directory: {exc}"
        ) from exc
    failed = True
    try:
        yield workdir
        failed = False
    finally:
        if failed and ctx.keep_failed_workdirs:
            log.info("kept the working directory of a failed attempt", path=str(workdir))
        else:
            _remove(workdir)


def _remove(workdir: Path) -> None:
    """Remove a working directory; most steps leave it empty, which one rmdir removes."""
    try:
        workdir.rmdir()
    except OSError:
        shutil.rmtree(workdir, ignore_errors=True)


def resolve_cwd(node_id: str, workdir: Path, cwd: str | None, user: StepUser | None) -> Path:
    """The directory a step runs in: `cwd` under `workdir`, created if missing."""
    if not cwd:
        return workdir
    if "\0" in cwd:
        raise _cwd_error(node_id, cwd, "contains a NUL character")
    if os.path.isabs(cwd):
        raise _cwd_error(
            node_id, cwd, "must be relative to the attempt's working directory, not absolute"
        )
    base = os.path.realpath(workdir)
    target = os.path.realpath(os.path.join(base, cwd))
    if os.path.commonpath([base, target]) != base:
        raise _cwd_error(node_id, cwd, "leaves the attempt's working directory")
    path = Path(target)
    if not path.exists():
        try:
            path.mkdir(parents=True, mode=0o700)
            if user is not None:
                cursor = path
                while cursor != Path(base):
                    os.chown(cursor, user.uid, user.gid)
                    cursor = cursor.parent
        except OSError as exc:
            raise _cwd_error(node_id, cwd, f"cannot be created: {exc}") from exc
    elif not path.is_dir():
        raise _cwd_error(node_id, cwd, "is not a directory")
    return path


def _cwd_error(node_id: str, cwd: str, problem: str) -> StepError:
    return StepError(ErrorCategory.TEMPLATE, f"node {node_id!r} field data.cwd: {cwd!r} {problem}")
