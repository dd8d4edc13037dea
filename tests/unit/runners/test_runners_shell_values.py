"""Shell mode: a template value never changes how /bin/sh parses the command.

Also: command splitting without a shell is linear and keeps a value in its word, and
templates render under the attempt's budget (TEMPLATE on overrun, CANCELLED on cancel).
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor.executor.runners import ErrorCategory, execute
from conveyor.kernel.shellwords import ShellScanner, ShellTemplateError, split_command
from conveyor.kernel.templating import Piece, template_pieces


def shell(command: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "n",
        "type": "action.command",
        "data": {"command": command, "shell": True, **extra},
        "timeout_s": 30,
    }


def payloads(marker: Path) -> list[str]:
    m = str(marker)
    return [
        f"; touch {m}",
        f"' ; touch {m} ; '",
        f'" ; touch {m} ; "',
        f"$(touch {m})",
        f"`touch {m}`",
        f"'$(touch {m})'",
        f"\n touch {m}\n",
        f"\\'; touch {m} #",
        f"}}; touch {m}; ${{x",
        f"EOF\ntouch {m}\nEOF",
        f"')\"; touch {m}; echo \"('",
    ]


CONTEXTS = [
    "printf '%s' {{ params.x }}",
    "printf '%s' '{{ params.x }}'",
    "printf '%s' \"{{ params.x }}\"",
    "printf '%s' x{{ params.x }}y",
    "printf '%s' \"$(printf '%s' \"{{ params.x }}\")\"",
    "printf '%s' \"`printf '%s' '{{ params.x }}'`\"",
    "printf '%s' \"${UNSET:-{{ params.x }}}\"",
    "cat <<EOF\n{{ params.x }}\nEOF",
    "# it's a comment\nprintf '%s' {{ params.x }}",
    "printf '%s' 'a'\"{{ params.x }}\"'b'",
]


@pytest.mark.parametrize("context", CONTEXTS)
def test_no_payload_runs_in_any_quoting_context(
    make_ctx: Any, tmp_path: Path, context: str
) -> None:
    marker = tmp_path / "PWNED"
    for payload in payloads(marker):
        outcome = execute(shell(context), make_ctx(params={"x": payload}))
        assert not marker.exists(), (context, payload)
        assert outcome.succeeded, outcome.error_message
        # $(...) drops trailing newlines, as the shell always does.
        assert payload.rstrip("\n") in outcome.outputs["stdout"], (context, payload)


def test_the_command_sh_sees_references_variables(make_ctx: Any) -> None:
    outcome = execute(
        shell("echo {{ params.a }} '{{ params.b }}' \"{{ params.c }}\"; env | grep TPL | sort"),
        make_ctx(params={"a": "1", "b": "2", "c": "3"}),
    )
    assert outcome.succeeded, outcome.error_message
    lines = outcome.outputs["stdout"].splitlines()
    assert lines[0] == "1 2 3"
    assert lines[1:] == ["CONVEYOR_TPL_1=1", "CONVEYOR_TPL_2=2", "CONVEYOR_TPL_3=3"]


def test_quote_filter_is_not_shown_twice(make_ctx: Any) -> None:
    outcome = execute(shell("printf '%s' {{ params.a | quote }}"), make_ctx(params={"a": "x y"}))
    assert outcome.outputs["stdout"] == "x y"


def test_statements_in_a_shell_command_are_refused(make_ctx: Any) -> None:
    outcome = execute(shell("echo {% if params.a %}yes{% endif %}"), make_ctx(params={"a": 1}))
    assert outcome.error_category == ErrorCategory.TEMPLATE
    assert "{{ 'a' if params.flag else 'b' }}" in (outcome.error_message or "")


def test_a_template_in_a_quoted_heredoc_is_refused(make_ctx: Any) -> None:
    outcome = execute(shell("cat <<'EOF'\n{{ params.a }}\nEOF"), make_ctx(params={"a": 1}))
    assert outcome.error_category == ErrorCategory.TEMPLATE
    assert "quoted here-document" in (outcome.error_message or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("echo ", '"${V}"'),
        ("echo '", "'\"${V}\"'"),
        ('echo "', "${V}"),
        ('echo "$(echo ', '"${V}"'),
        ("echo `echo '", "'\"${V}\"'"),
        ('echo "${X:-', "${V}"),
        ("echo ${X:-", '"${V}"'),
        ("cat <<E\n", "${V}"),
        ("cat <<E\nx\nE\necho ", '"${V}"'),
        ('echo "it\'s" ', '"${V}"'),
        ("echo 'a\"b' ", '"${V}"'),
        ("echo \\' ", '"${V}"'),
    ],
)
def test_scanner_follows_the_quoting(text: str, expected: str) -> None:
    scanner = ShellScanner()
    scanner.feed(text)
    assert scanner.reference("V") == expected


def test_scanner_refuses_a_value_after_a_backslash() -> None:
    scanner = ShellScanner()
    scanner.feed("echo \\")
    with pytest.raises(ShellTemplateError):
        scanner.reference("V")


@pytest.mark.parametrize(
    "text",
    ["a b  c", "a 'b c' \"d e\"", 'x\\ y "a\\"b" \'c\\d\'', "tab\there\nnl", "", "''", 'a"b"c'],
)
def test_splitting_matches_shlex(text: str) -> None:
    assert split_command([Piece(text, False)], []) == shlex.split(text)


def test_a_value_stays_in_its_word() -> None:
    pieces = template_pieces("cmd --name={{ a }} {{ b }} '{{ c }}' {{ d }}")
    values = ["x y", "'; rm -rf /", '"q"', ""]
    assert split_command(pieces, values) == ["cmd", "--name=x y", "'; rm -rf /", '"q"', ""]


def test_splitting_is_linear_in_the_value_size(make_ctx: Any) -> None:
    big = "a b " * 750_000  # 3 MB
    started = time.monotonic()
    argv = split_command(template_pieces("echo {{ x }}"), [big])
    elapsed = time.monotonic() - started
    assert argv == ["echo", big]
    # The same splitter over the author's static text of the same size, for comparison.
    started = time.monotonic()
    split_command([Piece("echo '" + big + "'", False)], [])
    assert elapsed <= max(1.0, 10 * (time.monotonic() - started))


def test_a_huge_value_fails_fast_as_template(make_ctx: Any) -> None:
    node = {"id": "n", "type": "action.command", "data": {"command": "echo {{ params.x }}"}}
    started = time.monotonic()
    outcome = execute(node, make_ctx(params={"x": "y" * 3 * 1024 * 1024}))
    assert outcome.error_category == ErrorCategory.TEMPLATE
    assert "more than the limit" in (outcome.error_message or "")
    assert time.monotonic() - started < 30


BOMB = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def test_a_template_bomb_fails_the_step_as_template(make_ctx: Any) -> None:
    node = {"id": "n", "type": "action.command", "data": {"argv": ["echo", BOMB]}, "timeout_s": 5}
    outcome = execute(node, make_ctx())
    assert outcome.error_category == ErrorCategory.TEMPLATE
    assert "steps" in (outcome.error_message or "")


def test_the_render_time_counts_in_the_node_timeout(make_ctx: Any) -> None:
    node = {"id": "n", "type": "action.command", "data": {"argv": ["echo", BOMB]}, "timeout_s": 0.2}
    outcome = execute(node, make_ctx(template_max_steps=10**12))
    assert outcome.error_category == ErrorCategory.TEMPLATE
    assert "longer than 0.2 s" in (outcome.error_message or "")


def test_cancel_interrupts_rendering(make_ctx: Any) -> None:
    node = {"id": "n", "type": "action.command", "data": {"argv": ["echo", BOMB]}}
    ctx = make_ctx(template_max_steps=10**12, template_max_s=3600, is_cancelled=lambda: True)
    outcome = execute(node, ctx)
    assert outcome.error_category == ErrorCategory.CANCELLED
