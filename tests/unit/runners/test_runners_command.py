"""action.command: argument handling, outputs, failures, limits and process control."""

from __future__ import annotations

import hashlib
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from conveyor.executor.runners import ErrorCategory, execute
from tests.unit.runners.local_sink import LocalArtifactSink

PY = sys.executable


def command(data: dict[str, Any], *, node_id: str = "n", **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "action.command", "data": data, "timeout_s": None, **extra}


def process_gone(pid: int) -> bool:
    """True when the process no longer exists or is a zombie (it holds nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rfind(")") + 2] == "Z"


# --- values never become code -------------------------------------------------


@pytest.fixture
def evil(tmp_path: Path) -> dict[str, str]:
    return {
        "semi": f"; touch {tmp_path}/pwned",
        "subst": f"$(touch {tmp_path}/pwned2)",
        "tick": f"`touch {tmp_path}/pwned3` 'quoted' \"dq\"",
    }


@pytest.mark.parametrize(
    "data",
    [
        {
            "argv": [
                "printf",
                "%s\\n",
                "{{ params.semi }}",
                "{{ params.subst }}",
                "{{ params.tick }}",
            ]
        },
        {"command": "printf '%s\\n' {{ params.semi }} {{ params.subst }} {{ params.tick }}"},
        {
            "command": "printf '%s\\n' {{ params.semi }} {{ params.subst }} {{ params.tick }}",
            "shell": True,
        },
    ],
    ids=["argv", "command", "shell"],
)
def test_parameter_values_are_single_arguments_and_never_run(
    make_ctx: Any, tmp_path: Path, evil: dict[str, str], data: dict[str, Any]
) -> None:
    outcome = execute(command({**data, "output": "lines"}), make_ctx(params=evil))

    assert outcome.succeeded, outcome.error_message
    assert outcome.outputs["output"] == [evil["semi"], evil["subst"], evil["tick"]]
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "pwned2").exists()
    assert not (tmp_path / "pwned3").exists()


def test_shell_mode_keeps_the_commands_own_pipes(make_ctx: Any) -> None:
    node = command({"command": "echo {{ params.word }} | tr a-z A-Z", "shell": True})
    outcome = execute(node, make_ctx(params={"word": "hi there"}))
    assert outcome.outputs["output"] == "HI THERE"


# --- outputs ------------------------------------------------------------------


def test_json_output_is_parsed(make_ctx: Any) -> None:
    node = command({"argv": ["echo", '{"a": [1, 2], "b": null}'], "output": "json"})
    outcome = execute(node, make_ctx())
    assert outcome.succeeded
    assert outcome.outputs["output"] == {"a": [1, 2], "b": None}


def test_invalid_json_output_fails_the_step(make_ctx: Any) -> None:
    outcome = execute(command({"argv": ["echo", "not json"], "output": "json"}), make_ctx())
    assert not outcome.succeeded
    assert outcome.error_category is ErrorCategory.INTERNAL
    assert outcome.error_message is not None
    assert outcome.error_message.startswith("stdout is not valid JSON: ")
    assert outcome.outputs["stdout"] == "not json\n"


def test_lines_output(make_ctx: Any) -> None:
    outcome = execute(
        command({"argv": ["printf", "a\\nb b\\n\\nc"], "output": "lines"}), make_ctx()
    )
    assert outcome.outputs["output"] == ["a", "b b", "", "c"]


def test_text_output_strips_exactly_one_trailing_newline(make_ctx: Any) -> None:
    outcome = execute(command({"argv": ["printf", "x\\n\\n"]}), make_ctx())
    assert outcome.outputs["stdout"] == "x\n\n"
    assert outcome.outputs["output"] == "x\n"


def test_output_without_trailing_newline_is_kept(make_ctx: Any) -> None:
    outcome = execute(command({"argv": ["printf", "no newline"]}), make_ctx())
    assert outcome.outputs["stdout"] == "no newline"
    assert outcome.outputs["output"] == "no newline"
    assert outcome.outputs["exit_code"] == 0
    assert outcome.outputs["stdout_truncated"] is False
    assert "stdout_uri" not in outcome.outputs


def test_stdin_env_and_cwd(make_ctx: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_ONLY_SETTING", "leak")
    script = (
        'read line; echo "$line|$GREETING|$CONVEYOR_RUN_ID|$CONVEYOR_STEP_ID|'
        '$CONVEYOR_ATTEMPT|${WORKER_ONLY_SETTING:-unset}|$(pwd)"'
    )
    node = command(
        {
            "argv": ["sh", "-c", script],
            "stdin": "hello {{ params.who }}\n",
            "env": {"GREETING": "hi {{ params.who }}"},
            "cwd": "sub/{{ params.who }}",
        }
    )
    outcome = execute(node, make_ctx(params={"who": "ann"}, work_root=str(tmp_path / "work")))
    head, _, cwd = outcome.outputs["output"].rpartition("|")
    assert head == "hello ann|hi ann|run-1|n|1|unset"
    # cwd is relative to the attempt's own working directory, removed afterwards.
    assert cwd.startswith(f"{tmp_path}/work/run-1-n-a1-") and cwd.endswith("/sub/ann")
    assert not Path(cwd).exists()


def test_stdin_larger_than_a_pipe_buffer_does_not_block(make_ctx: Any) -> None:
    text = "x" * 300_000
    node = command({"argv": [PY, "-c", "import sys; print(len(sys.stdin.read()))"], "stdin": text})
    assert execute(node, make_ctx()).outputs["output"] == "300000"


def test_child_closing_its_pipes_early_still_finishes(make_ctx: Any) -> None:
    code = "import os, time; print('early', flush=True); os.close(1); os.close(2); time.sleep(0.3)"
    outcome = execute(command({"argv": [PY, "-c", code]}), make_ctx())
    assert outcome.succeeded
    assert outcome.outputs["stdout"] == "early\n"


# --- failures -----------------------------------------------------------------


def test_nonzero_exit_names_the_code_and_last_stderr_line(make_ctx: Any) -> None:
    node = command({"command": "echo first >&2; echo 'it broke' >&2; exit 3", "shell": True})
    outcome = execute(node, make_ctx())
    assert not outcome.succeeded
    assert outcome.error_category is ErrorCategory.NONZERO_EXIT
    assert outcome.error_message == "exit code 3: it broke"
    assert outcome.outputs["exit_code"] == 3


def test_success_codes_accept_other_exits(make_ctx: Any) -> None:
    node = command({"argv": ["sh", "-c", "exit 3"], "success_codes": [0, 3]})
    outcome = execute(node, make_ctx())
    assert outcome.succeeded
    assert outcome.outputs["exit_code"] == 3


def test_missing_executable_is_an_infrastructure_error(make_ctx: Any) -> None:
    outcome = execute(command({"argv": ["no-such-program-xyz"]}), make_ctx())
    assert outcome.error_category is ErrorCategory.INFRA
    assert outcome.error_message is not None
    assert outcome.error_message.startswith("could not start: ")
    assert "no-such-program-xyz" in outcome.error_message


def test_template_error_names_node_field_and_expression(make_ctx: Any) -> None:
    node = command({"argv": ["echo", "{{ steps.a.output.missing }}"]}, node_id="b")
    outcome = execute(node, make_ctx(node_id="b", steps={"a": {"output": {}}}))
    assert outcome.error_category is ErrorCategory.TEMPLATE
    assert outcome.error_message == (
        "node 'b' field data.argv[1]: {{ steps.a.output.missing }}: "
        "'dict object' has no attribute 'missing'"
    )


def test_timeout_kills_the_whole_process_group(make_ctx: Any) -> None:
    node = command({"command": "sleep 100 & echo $!; sleep 100", "shell": True}, timeout_s=0.5)
    outcome = execute(node, make_ctx())
    assert outcome.error_category is ErrorCategory.TIMEOUT
    assert outcome.error_message == "timed out after 0.5 s"
    grandchild = int(outcome.outputs["stdout"])
    assert process_gone(grandchild)


def test_context_default_timeout_applies(make_ctx: Any) -> None:
    outcome = execute(command({"argv": ["sleep", "100"]}), make_ctx(default_timeout_s=0.3))
    assert outcome.error_category is ErrorCategory.TIMEOUT


def test_cancellation_kills_the_process_group(make_ctx: Any) -> None:
    started = threading.Event()

    def on_output(stream: str, text: str) -> None:
        started.set()

    node = command({"command": "sleep 100 & echo $!; sleep 100", "shell": True})
    outcome = execute(node, make_ctx(is_cancelled=started.is_set, on_output=on_output))
    assert outcome.error_category is ErrorCategory.CANCELLED
    assert process_gone(int(outcome.outputs["stdout"]))


def test_children_left_running_after_a_normal_exit_are_ended(make_ctx: Any) -> None:
    node = command({"command": "sleep 100 & echo $!", "shell": True})
    outcome = execute(node, make_ctx())
    assert outcome.succeeded
    assert process_gone(int(outcome.outputs["stdout"]))


# --- large output -------------------------------------------------------------


def test_large_stdout_is_capped_inline_and_complete_in_the_artifact(
    make_ctx: Any, sink: LocalArtifactSink
) -> None:
    # 5 MiB without a single newline, in odd-sized writes.
    code = (
        "import sys\n"
        "block = bytes(range(256)) * 4096\n"
        "for i in range(5):\n"
        "    sys.stdout.buffer.write(block[:777]); sys.stdout.buffer.write(block[777:])\n"
    )
    expected = (bytes(range(256)) * 4096) * 5
    outcome = execute(command({"argv": [PY, "-c", code]}), make_ctx())

    assert outcome.succeeded, outcome.error_message
    out = outcome.outputs
    assert out["stdout_truncated"] is True
    assert out["stdout"].endswith(
        f"\n[… output truncated at 65536 bytes; full {len(expected)} bytes in artifact stdout]"
    )
    inline = out["stdout"].split("\n[… output truncated")[0]
    assert inline == expected[:65536].decode("utf-8", errors="replace")
    with sink.read(out["stdout_uri"]) as f:
        stored = f.read()
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(expected).hexdigest()
    [artifact] = outcome.artifacts
    assert artifact == {
        "name": "stdout",
        "uri": out["stdout_uri"],
        "size": len(expected),
        "sha256": hashlib.sha256(expected).hexdigest(),
    }
    assert out["stderr_truncated"] is False


def test_parsed_output_is_never_built_from_a_truncated_stream(make_ctx: Any) -> None:
    node = command({"argv": [PY, "-c", "print('[' + '1,' * 50 + '1]')"], "output": "json"})
    outcome = execute(node, make_ctx(inline_output_cap=16))
    assert outcome.error_category is ErrorCategory.INTERNAL
    assert outcome.error_message is not None
    assert "inline cap of 16 bytes" in outcome.error_message


# --- resource usage and live output ------------------------------------------


def test_resource_usage_is_the_childs(make_ctx: Any) -> None:
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2:\n    pass\n"
    outcome = execute(command({"argv": [PY, "-c", code]}), make_ctx())
    assert outcome.usage is not None
    assert outcome.usage.cpu_user_s + outcome.usage.cpu_system_s >= 0.2
    assert outcome.usage.max_rss_kb > 0
    assert outcome.usage.wall_s > 0


def test_live_output_arrives_as_whole_lines(make_ctx: Any) -> None:
    chunks: list[tuple[str, str]] = []
    code = (
        "import sys, time\n"
        "sys.stdout.write('one\\ntw'); sys.stdout.flush(); time.sleep(0.2)\n"
        "sys.stdout.write('o\\nthree'); sys.stdout.flush()\n"
        "sys.stderr.write('warn\\n')\n"
    )
    node = command({"argv": [PY, "-c", code]})
    outcome = execute(node, make_ctx(on_output=lambda s, t: chunks.append((s, t))))
    assert outcome.succeeded
    stdout_chunks = [t for s, t in chunks if s == "stdout"]
    assert "".join(stdout_chunks) == "one\ntwo\nthree"
    # Every chunk but the final one (the unterminated last line) ends a line.
    assert all(t.endswith("\n") for t in stdout_chunks[:-1])
    assert "".join(t for s, t in chunks if s == "stderr") == "warn\n"


def test_a_failing_live_output_callback_does_not_fail_the_step(make_ctx: Any) -> None:
    def broken(stream: str, text: str) -> None:
        raise RuntimeError("log sink down")

    outcome = execute(command({"argv": ["echo", "fine"]}), make_ctx(on_output=broken))
    assert outcome.succeeded
    assert outcome.outputs["output"] == "fine"


# --- secrets ------------------------------------------------------------------


def test_secrets_are_masked_everywhere(make_ctx: Any) -> None:
    secret = "hunter2-s3cret"
    chunks: list[str] = []
    # The secret is written in two pieces with a pause, so it arrives split across reads.
    code = (
        "import sys, time, json\n"
        f"s = {secret!r}\n"
        "sys.stdout.write(json.dumps({'token': s[:5]})[:-2]); sys.stdout.flush(); time.sleep(0.1)\n"
        "sys.stdout.write(s[5:] + '\"}\\n'); sys.stdout.flush()\n"
        "sys.stderr.write('bad ' + s + '\\n'); sys.exit(2)\n"
    )
    node = command({"argv": [PY, "-c", code], "output": "json"})
    ctx = make_ctx(secrets_to_mask=[secret], on_output=lambda s, t: chunks.append(t))
    outcome = execute(node, ctx)

    assert outcome.error_category is ErrorCategory.NONZERO_EXIT
    assert outcome.outputs["stdout"] == '{"token": "***"}\n'
    assert outcome.outputs["output"] == {"token": "***"}
    assert outcome.outputs["stderr"] == "bad ***\n"
    assert outcome.error_message == "exit code 2: bad ***"
    assert secret not in "".join(chunks)
    assert "***" in "".join(chunks)


def test_secret_in_a_spilled_stream_is_masked_in_the_artifact(
    make_ctx: Any, sink: LocalArtifactSink
) -> None:
    code = "print('x' * 100 + 'topsecret' + 'y' * 100)"
    node = command({"argv": [PY, "-c", code]})
    outcome = execute(node, make_ctx(secrets_to_mask=["topsecret"], inline_output_cap=105))
    with sink.read(outcome.outputs["stdout_uri"]) as f:
        assert f.read() == ("x" * 100 + "***" + "y" * 100 + "\n").encode()
    assert "topsecret" not in outcome.outputs["stdout"]


def test_environment_is_minimal(make_ctx: Any) -> None:
    outcome = execute(command({"argv": ["env"], "output": "lines"}), make_ctx())
    names = {line.split("=", 1)[0] for line in outcome.outputs["output"]}
    allowed = {"PATH", "HOME", "LANG", "CONVEYOR_RUN_ID", "CONVEYOR_STEP_ID", "CONVEYOR_ATTEMPT"}
    assert names <= allowed
    assert {"CONVEYOR_RUN_ID", "CONVEYOR_STEP_ID", "CONVEYOR_ATTEMPT"} <= names


def test_a_group_ignoring_sigterm_is_killed(make_ctx: Any) -> None:
    # Ignored signals are inherited, so the background sleep ignores SIGTERM too.
    node = command(
        {"command": "trap '' TERM; sleep 100 & echo $!; wait", "shell": True}, timeout_s=0.2
    )
    outcome = execute(node, make_ctx())
    assert outcome.error_category is ErrorCategory.TIMEOUT
    assert outcome.outputs["exit_code"] == -9
    assert process_gone(int(outcome.outputs["stdout"]))
