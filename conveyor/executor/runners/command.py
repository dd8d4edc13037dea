"""``action.command``: run a program, without a shell unless one is asked for.

Three ways to say what runs:

- ``argv``: a list; each element is rendered on its own and is one argument,
  whatever characters a value contains.
- ``command``: a string split like a POSIX shell would split it, but run
  without a shell. The author's text is split in one linear pass and each
  template value is inserted into the word it stands in, so a value with
  spaces or quotes stays in its argument and cannot add arguments.
- ``command`` with ``shell: true``: the string runs under ``/bin/sh -c``;
  each template value travels in an environment variable that the command
  references with the quoting of its position (see `conveyor.kernel.shellwords`), so pipes and
  redirections written in the command work while a value is never parsed
  by the shell.

The parsed ``output`` (``json`` or ``lines``) is never built from a partial
stream: when stdout is longer than the inline cap, the step fails and names
the cap. ``text`` output is the inline stdout, ending with the truncation
marker when there was more.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conveyor.executor.runners.base import (
    ErrorCategory,
    Masker,
    Renderer,
    StepContext,
    StepError,
    StepOutcome,
    invalid_field,
)
from conveyor.executor.runners.confine import attempt_workdir, resolve_cwd, step_path
from conveyor.executor.runners.declared import upload_declared
from conveyor.executor.runners.process import ProcessResult, run_process
from conveyor.kernel.shellwords import ShellTemplateError, SplitError, shell_command
from conveyor.kernel.shellwords import split_command as split_pieces

OUTPUT_MODES = ("text", "json", "lines")
# Only what programs commonly need to behave; the worker's own settings
# (credentials, broker URLs) never leak into a step.
INHERITED_ENV = ("PATH", "HOME", "LANG")


def node_timeout(node: Mapping[str, Any], ctx: StepContext) -> float | None:
    """The node's timeout in seconds, else the context's default (None: no limit)."""
    value = node.get("timeout_s")
    if value is None:
        return ctx.default_timeout_s
    return float(value)


def base_env(ctx: StepContext) -> dict[str, str]:
    """The minimal environment every step process starts from."""
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    if ctx.step_user is not None and "PATH" in env:
        env["PATH"] = step_path(env["PATH"], ctx.step_user)
    env.update(
        CONVEYOR_RUN_ID=ctx.run_id,
        CONVEYOR_STEP_ID=ctx.node_id,
        CONVEYOR_ATTEMPT=str(ctx.attempt),
    )
    return env


def _argv(r: Renderer) -> tuple[list[str], dict[str, str]]:
    """The argv to run and the variables that carry a shell command's template values."""
    data = r.data
    if data.get("argv") is not None:
        raw = data["argv"]
        if not isinstance(raw, list) or not raw:
            raise invalid_field(r.node_id, "data.argv", "expected a non-empty list")
        return [r.text(item, f"data.argv[{i}]") for i, item in enumerate(raw)], {}
    shell = data.get("shell", False)
    if not isinstance(shell, bool):
        raise invalid_field(r.node_id, "data.shell", "expected true or false")
    raw_command = data.get("command")
    if raw_command is None or (isinstance(raw_command, str) and not raw_command.strip()):
        raise invalid_field(r.node_id, "data", "either argv or command is required")
    if not isinstance(raw_command, str):
        raise invalid_field(r.node_id, "data.command", "expected a string")
    pieces, values = r.pieces(raw_command, "data.command")
    if shell:
        try:
            text, variables = shell_command(pieces, values)
        except ShellTemplateError as exc:
            raise r.template_failure("data.command", raw_command, str(exc)) from exc
        return ["/bin/sh", "-c", text], variables
    try:
        argv = split_pieces(pieces, values)
    except SplitError as exc:
        raise invalid_field(r.node_id, "data.command", f"cannot be split: {exc}") from exc
    if not argv:
        raise invalid_field(r.node_id, "data.command", "is empty")
    return argv, {}


def run_command(node: Mapping[str, Any], ctx: StepContext, masker: Masker) -> StepOutcome:
    """Execute an ``action.command`` node."""
    r = Renderer(ctx.node_id, node.get("data") or {}, ctx.scope)
    argv, variables = _argv(r)
    env = base_env(ctx)
    env.update(r.field_map("env"))
    env.update(variables)  # after the node's env: a template value is never overridden
    return run_process_step(argv, env=env, node=node, ctx=ctx, masker=masker, renderer=r)


def _success_codes(r: Renderer) -> set[int]:
    raw = r.data.get("success_codes")
    if raw is None:
        return {0}
    values = r.native(raw, "data.success_codes")
    if not isinstance(values, list) or not values:
        raise invalid_field(r.node_id, "data.success_codes", "expected a list of exit codes")
    try:
        return {int(v) for v in values}
    except (TypeError, ValueError) as exc:
        raise invalid_field(
            r.node_id, "data.success_codes", "expected a list of exit codes"
        ) from exc


def _output_mode(r: Renderer) -> str:
    mode = r.data.get("output") or "text"
    if mode not in OUTPUT_MODES:
        raise invalid_field(r.node_id, "data.output", f"expected one of {', '.join(OUTPUT_MODES)}")
    return str(mode)


def run_process_step(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    node: Mapping[str, Any],
    ctx: StepContext,
    masker: Masker,
    renderer: Renderer,
    script: tuple[str, str] | None = None,
) -> StepOutcome:
    """Run a process for a command-like node and turn how it ended into the step's outcome.

    The process runs in a fresh working directory of the attempt (see `confine`). With
    `script` (text, file suffix) the text is written there and its path appended to argv.
    """
    r = renderer
    cwd = r.field_text("cwd")
    stdin = r.field_text("stdin")
    success = _success_codes(r)
    mode = _output_mode(r)
    timeout_s = node_timeout(node, ctx)
    with attempt_workdir(ctx) as workdir:
        where = resolve_cwd(ctx.node_id, workdir, cwd, ctx.step_user)
        args = list(argv)
        if script is not None:
            args.append(_write_script(workdir, where, script, ctx))
        if ctx.step_user is not None:
            env = {**env, "HOME": str(workdir)}
        result = run_process(
            args,
            env=env,
            cwd=str(where),
            stdin=None if stdin is None else stdin.encode(),
            timeout_s=ctx.remaining(timeout_s),
            ctx=ctx,
            masker=masker,
        )
        try:
            outcome = _outcome(result, ctx=ctx, success=success, mode=mode, timeout_s=timeout_s)
        finally:
            result.stdout.close()
            result.stderr.close()
        # Declared files are taken before the attempt's working directory goes away.
        return upload_declared(node, ctx, outcome, root=where)


def _write_script(workdir: Path, cwd: Path, script: tuple[str, str], ctx: StepContext) -> str:
    """Write the script into the working directory; its path relative to `cwd`.

    Relative, because a step user may not be able to traverse the directories above the
    working directory, only the working directory itself.
    """
    text, suffix = script
    path = workdir / f".conveyor-script{suffix}"
    try:
        path.write_text(text, encoding="utf-8")
        path.chmod(0o500)
        if ctx.step_user is not None:
            os.chown(path, ctx.step_user.uid, ctx.step_user.gid)
    except OSError as exc:
        raise StepError(ErrorCategory.INFRA, f"could not write the script: {exc}") from exc
    return os.path.relpath(path, cwd)


def _outcome(
    result: ProcessResult,
    *,
    ctx: StepContext,
    success: set[int],
    mode: str,
    timeout_s: float | None,
) -> StepOutcome:
    outputs: dict[str, Any] = {
        "exit_code": result.returncode,
        "stdout": result.stdout.text(),
        "stderr": result.stderr.text(),
        "output": None,
        "duration_ms": result.duration_ms,
        "stdout_truncated": result.stdout.truncated,
        "stderr_truncated": result.stderr.truncated,
    }
    artifacts: list[dict[str, Any]] = []
    for capture in (result.stdout, result.stderr):
        record = capture.save(
            ctx.artifacts, run_id=ctx.run_id, node_id=ctx.node_id, attempt=ctx.attempt
        )
        if record is not None:
            artifacts.append(record)
            outputs[f"{capture.name}_uri"] = record["uri"]

    def fail(category: ErrorCategory, message: str) -> StepError:
        return StepError(
            category, message, outputs=outputs, usage=result.usage, artifacts=artifacts
        )

    if result.cancelled:
        raise fail(ErrorCategory.CANCELLED, "cancelled while running")
    if result.timed_out:
        raise fail(ErrorCategory.TIMEOUT, f"timed out after {timeout_s:g} s")
    if result.returncode is None:
        raise fail(ErrorCategory.INFRA, "the exit status of the process was lost")
    try:
        outputs["output"] = _parse(result, mode)
        parse_error = None
    except ValueError as exc:
        parse_error = str(exc)
    if result.returncode not in success:
        message = f"exit code {result.returncode}"
        if result.returncode < 0:
            message += f" (killed by signal {_signal_name(-result.returncode)})"
        last = result.stderr.last_line()
        if last:
            message += f": {last}"
        raise fail(ErrorCategory.NONZERO_EXIT, message)
    if parse_error is not None:
        raise fail(ErrorCategory.INTERNAL, parse_error)
    return StepOutcome(succeeded=True, outputs=outputs, usage=result.usage, artifacts=artifacts)


def _parse(result: ProcessResult, mode: str) -> Any:
    stdout = result.stdout
    if mode == "text":
        text = stdout.text()
        return text[:-1] if text.endswith("\n") else text
    if stdout.truncated:
        raise ValueError(
            f"stdout is too large to parse as {mode}: {stdout.size} bytes,"
            f" more than the inline cap of {stdout.cap} bytes"
        )
    text = stdout.head_text()
    if mode == "lines":
        return text.splitlines()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"stdout is not valid JSON: {exc}") from exc


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
