"""action.script: script text is never rendered; values arrive through the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conveyor.executor.runners import ErrorCategory, execute


def script(interpreter: str, text: str, **data: Any) -> dict[str, Any]:
    return {
        "id": "s",
        "type": "action.script",
        "data": {"interpreter": interpreter, "script": text, **data},
        "timeout_s": None,
    }


def test_bash_script_reads_parameters_from_the_environment(make_ctx: Any, tmp_path: Path) -> None:
    evil = f"$(touch {tmp_path}/pwned); rm -rf nothing"
    node = script("bash", 'printf "%s|%s" "$CONVEYOR_PARAM_HOST" "$CONVEYOR_PARAM_MAX_COUNT"')
    outcome = execute(node, make_ctx(params={"host": evil, "max-count": 3}))
    assert outcome.succeeded, outcome.error_message
    assert outcome.outputs["output"] == f"{evil}|3"
    assert not (tmp_path / "pwned").exists()


def test_script_text_is_not_rendered(make_ctx: Any) -> None:
    node = script("sh", "echo '{{ params.x }}'")
    outcome = execute(node, make_ctx(params={"x": "value"}))
    assert outcome.outputs["output"] == "{{ params.x }}"


def test_python_script_gets_json_for_structured_params_and_rendered_env(make_ctx: Any) -> None:
    code = (
        "import json, os\n"
        "hosts = json.loads(os.environ['CONVEYOR_PARAM_HOSTS'])\n"
        "print(json.dumps({'n': len(hosts), 'prev': os.environ['PREV']}))\n"
    )
    node = script("python3", code, env={"PREV": "{{ steps.a.output }}"}, output="json")
    ctx = make_ctx(params={"hosts": ["a", "b"]}, steps={"a": {"output": "ok"}})
    outcome = execute(node, ctx)
    assert outcome.outputs["output"] == {"n": 2, "prev": "ok"}


def test_script_failure_and_stdin(make_ctx: Any) -> None:
    node = script("sh", 'read x; echo "got $x" >&2; exit 4', stdin="{{ params.v }}\n")
    outcome = execute(node, make_ctx(params={"v": "in"}))
    assert outcome.error_category is ErrorCategory.NONZERO_EXIT
    assert outcome.error_message == "exit code 4: got in"


def test_unknown_interpreter_is_rejected(make_ctx: Any) -> None:
    outcome = execute(script("perl", "print 1"), make_ctx())
    assert outcome.error_category is ErrorCategory.INTERNAL
    assert outcome.error_message is not None
    assert "data.interpreter" in outcome.error_message
