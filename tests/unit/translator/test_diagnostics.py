"""Each diagnostic code, triggered by the smallest document that shows it."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.translator.domain import CODES, Diagnostic, compile_workflow, validate_workflow

from ._docs import edge, node, workflow


def _errors(document: Any) -> list[Diagnostic]:
    result = compile_workflow(document)
    assert result.plan is None
    assert not result.ok
    return [d for d in result.diagnostics if d.severity == "error"]


def _one(document: Any, code: str) -> Diagnostic:
    errors = _errors(document)
    assert [d.code for d in errors] == [code], errors
    return errors[0]


class TestDocument:
    @pytest.mark.parametrize("document", ["[1, 2]", "42", b"null", ["a"], 3])
    def test_not_an_object(self, document: Any) -> None:
        found = _one(document, "INVALID_DOCUMENT")
        assert "object" in found.message

    def test_wrong_schema(self) -> None:
        found = _one(workflow([node("a")], schema="conveyor/v2"), "INVALID_DOCUMENT")
        assert found.path == "/schema"
        assert "conveyor/v1" in found.message

    def test_malformed_json_names_line_and_column(self) -> None:
        found = _one('{"schema": "conveyor/v1",\n "name": }', "INVALID_DOCUMENT")
        assert (found.line, found.column) == (2, 10)
        assert "line 2, column 10" in found.message

    def test_nan_is_not_json(self) -> None:
        text = '{"schema":"conveyor/v1","name":"w","nodes":[{"id":"a","type":"action.sleep",'
        text += '"data":{"seconds":NaN}}]}'
        _one(text, "INVALID_DOCUMENT")

    def test_missing_name_and_nodes(self) -> None:
        errors = _errors({"schema": "conveyor/v1"})
        assert {(d.code, d.path) for d in errors} == {
            ("MISSING_FIELD", "/name"),
            ("MISSING_FIELD", "/nodes"),
            ("NO_ENTRY_NODE", "/nodes"),
        }

    @pytest.mark.parametrize("name", ["", "has space", "-lead", "x" * 201, 7])
    def test_invalid_name(self, name: Any) -> None:
        assert _one(workflow([node("a")], name=name), "INVALID_FIELD").path == "/name"

    def test_unknown_defaults_key(self) -> None:
        found = _one(workflow([node("a")], defaults={"timeout": 3}), "INVALID_FIELD")
        assert found.path == "/defaults/timeout"


class TestNodes:
    def test_missing_required_data_field(self) -> None:
        found = _one(workflow([node("f", "logic.fail")]), "MISSING_FIELD")
        assert (found.node_id, found.path) == ("f", "/nodes/0/data/message")

    def test_command_needs_exactly_one_of_argv_or_command(self) -> None:
        both = node("a", argv=["ls"], command="ls")
        assert _one(workflow([both]), "INVALID_FIELD").path == "/nodes/0/data"
        neither = {"id": "a", "type": "action.command", "data": {}}
        assert "exactly one" in _one(workflow([neither]), "INVALID_FIELD").message

    @pytest.mark.parametrize(
        ("data", "path"),
        [
            ({"argv": ["ls"], "shell": True}, "/nodes/0/data/shell"),
            ({"argv": []}, "/nodes/0/data/argv"),
            ({"argv": ["ls", 3]}, "/nodes/0/data/argv"),
            ({"argv": ["ls"], "output": "xml"}, "/nodes/0/data/output"),
            ({"command": "echo 'open"}, "/nodes/0/data/command"),
            ({"argv": ["ls"], "timeout_s": 0}, "/nodes/0/data/timeout_s"),
            ({"argv": ["ls"], "timeout_s": True}, "/nodes/0/data/timeout_s"),
            ({"argv": ["ls"], "retries": {"max": 101}}, "/nodes/0/data/retries/max"),
            (
                {"argv": ["ls"], "retries": {"on": ["TIMEOUT", "OOPS"]}},
                "/nodes/0/data/retries/on/1",
            ),
            ({"argv": ["ls"], "retries": {"factor": 0.5}}, "/nodes/0/data/retries/factor"),
            ({"argv": ["ls"], "retries": {"tries": 2}}, "/nodes/0/data/retries/tries"),
            ({"argv": ["ls"], "trigger_rule": "any"}, "/nodes/0/data/trigger_rule"),
            ({"argv": ["ls"], "continue_on_error": "yes"}, "/nodes/0/data/continue_on_error"),
            ({"argv": ["ls"], "env": {"A": 1}}, "/nodes/0/data/env"),
            ({"argv": ["ls"], "success_codes": [0, 256]}, "/nodes/0/data/success_codes"),
        ],
    )
    def test_invalid_command_fields(self, data: dict[str, Any], path: str) -> None:
        doc = workflow([{"id": "a", "type": "action.command", "data": data}])
        found = _one(doc, "INVALID_FIELD")
        assert (found.path, found.node_id) == (path, "a")

    @pytest.mark.parametrize(
        ("node_type", "data", "field"),
        [
            ("action.script", {"interpreter": "perl", "script": "x"}, "interpreter"),
            ("action.http", {"method": "FETCH", "url": "https://x"}, "method"),
            ("action.http", {"method": "GET", "url": "ftp://x"}, "url"),
            (
                "action.http",
                {"method": "GET", "url": "https://x", "expect_status": "2xx"},
                "expect_status",
            ),
            ("action.sleep", {"seconds": -1}, "seconds"),
            ("action.sleep", {"seconds": "5"}, "seconds"),
            ("action.notify", {"url": "https://x", "json": {}, "body": "b"}, "body"),
            ("action.subworkflow", {"job": "", "wait": True}, "job"),
            ("logic.switch", {"value": "params.x", "cases": ["a", "a"]}, "cases"),
            ("logic.switch", {"value": "params.x", "cases": ["default"]}, "cases"),
            ("logic.foreach", {"items": "params.xs", "concurrency": 0}, "concurrency"),
        ],
    )
    def test_invalid_fields_of_each_type(
        self, node_type: str, data: dict[str, Any], field: str
    ) -> None:
        found = _one(workflow([node("a", node_type, **data)]), "INVALID_FIELD")
        assert found.path == f"/nodes/0/data/{field}"
        assert field in found.message and "'a'" in found.message

    def test_unknown_node_type(self) -> None:
        found = _one(workflow([node("a", "action.teleport")]), "UNKNOWN_NODE_TYPE")
        assert (found.node_id, found.path) == ("a", "/nodes/0/type")
        assert "action.teleport" in found.message

    def test_duplicate_node_id(self) -> None:
        found = _one(workflow([node("a"), node("a")]), "DUPLICATE_NODE_ID")
        assert (found.path, found.node_id) == ("/nodes/1/id", "a")
        assert "nodes 0 and 1" in found.message

    @pytest.mark.parametrize("node_id", ["has space", "x" * 65, "", 12])
    def test_invalid_node_id(self, node_id: Any) -> None:
        doc = workflow([{"id": node_id, "type": "trigger.manual"}, node("ok")])
        assert _one(doc, "INVALID_FIELD").path == "/nodes/0/id"

    def test_unknown_data_field_is_a_warning_and_dropped(self) -> None:
        result = compile_workflow(workflow([node("a", arg=["ls"])]))
        assert result.ok
        [warning] = result.diagnostics
        assert (warning.code, warning.severity, warning.path) == (
            "INVALID_FIELD",
            "warning",
            "/nodes/0/data/arg",
        )
        assert result.plan is not None
        assert "arg" not in result.plan["nodes"]["a"]["data"]


class TestEdges:
    def test_dangling_edge(self) -> None:
        found = _one(workflow([node("a")], [edge("a", "ghost", id="e1")]), "DANGLING_EDGE")
        assert (found.edge_id, found.path) == ("e1", "/edges/0/target")
        assert "ghost" in found.message

    def test_edge_without_source(self) -> None:
        found = _one(workflow([node("a")], [{"target": "a"}]), "MISSING_FIELD")
        assert found.path == "/edges/0/source"

    @pytest.mark.parametrize(
        ("source", "handle"),
        [
            (node("c", "logic.condition", expression="true"), None),
            (node("c", "logic.condition", expression="true"), "yes"),
            (node("c", "logic.switch", value="params.x", cases=["a"]), "b"),
            (node("c", "logic.fail", message="no"), "error"),
            (node("c"), "true"),
        ],
    )
    def test_invalid_handle(self, source: dict[str, Any], handle: str | None) -> None:
        doc = workflow([source, node("d")], [edge("c", "d", handle, id="e")])
        found = _one(doc, "INVALID_HANDLE")
        assert (found.edge_id, found.node_id, found.path) == ("e", "c", "/edges/0/sourceHandle")

    def test_valid_handles(self) -> None:
        doc = workflow(
            [
                node("c", "logic.condition", expression="1 == 1"),
                node("s", "logic.switch", value="'x'", cases=["x"]),
                node("t"),
                node("f"),
                node("x"),
                node("d"),
                node("err"),
            ],
            [
                edge("c", "s", "true"),
                edge("c", "f", "false"),
                edge("s", "x", "x"),
                edge("s", "d", "default"),
                edge("x", "err", "error"),
                edge("t", "d"),
            ],
        )
        assert compile_workflow(doc).ok

    def test_cycle_message_names_nodes_in_order(self) -> None:
        doc = workflow(
            [node("start"), node("a"), node("b"), node("c")],
            [edge("start", "a"), edge("b", "c"), edge("a", "b"), edge("c", "a", id="back")],
        )
        found = _one(doc, "CYCLE")
        assert found.message == "cycle: a -> b -> c -> a"
        assert (found.node_id, found.path) == ("a", "/edges/2")

    def test_self_loop(self) -> None:
        doc = workflow([node("s"), node("a")], [edge("s", "a"), edge("a", "a")])
        assert _one(doc, "CYCLE").message == "cycle: a -> a"

    def test_no_entry_node(self) -> None:
        doc = workflow([node("a"), node("b")], [edge("a", "b"), edge("b", "a")])
        assert {d.code for d in _errors(doc)} == {"CYCLE", "NO_ENTRY_NODE"}

    def test_empty_workflow_has_no_entry(self) -> None:
        assert "no nodes" in _one(workflow([]), "NO_ENTRY_NODE").message

    def test_unreachable_node_is_a_warning(self) -> None:
        doc = workflow([node("t", "trigger.manual"), node("a"), node("lost")], [edge("t", "a")])
        result = compile_workflow(doc)
        assert result.ok and result.plan is not None
        [warning] = result.diagnostics
        assert (warning.code, warning.severity, warning.node_id) == (
            "UNREACHABLE_NODE",
            "warning",
            "lost",
        )

    def test_without_triggers_nothing_is_unreachable(self) -> None:
        assert validate_workflow(workflow([node("a"), node("b")])) == []

    def test_trigger_takes_no_incoming_edge(self) -> None:
        doc = workflow([node("a"), node("t", "trigger.manual")], [edge("a", "t")])
        assert _one(doc, "INVALID_FIELD").path == "/edges/0/target"


class TestTemplates:
    def test_syntax_error_has_line_and_column(self) -> None:
        doc = workflow([node("a", argv=["echo", "ok\n  {{ params.x( }}"])])
        found = _one(doc, "TEMPLATE_SYNTAX")
        assert (found.path, found.line, found.column, found.node_id) == (
            "/nodes/0/data/argv/1",
            2,
            16,
            "a",
        )

    def test_bare_expression_syntax(self) -> None:
        doc = workflow([node("c", "logic.condition", expression="steps.x ==")])
        found = _one(doc, "TEMPLATE_SYNTAX")
        assert (found.path, found.line, found.column) == ("/nodes/0/data/expression", 1, 11)

    def test_unknown_filter(self) -> None:
        doc = workflow([node("a", argv=["{{ 'x' | shout }}"])])
        assert "shout" in _one(doc, "TEMPLATE_SYNTAX").message

    def test_step_not_upstream(self) -> None:
        doc = workflow(
            [node("a"), node("b", argv=["{{ steps.c.stdout }}"]), node("c")],
            [edge("a", "b"), edge("a", "c")],
        )
        found = _one(doc, "UNKNOWN_REFERENCE")
        assert (found.node_id, found.path) == ("b", "/nodes/1/data/argv/0")
        assert "steps.c" in found.message and "upstream" in found.message

    def test_unknown_step(self) -> None:
        doc = workflow([node("a", argv=["{{ steps.ghost.stdout }}"])])
        assert "ghost" in _one(doc, "UNKNOWN_REFERENCE").message

    def test_undeclared_parameter(self) -> None:
        schema = {"type": "object", "properties": {"host": {}}, "additionalProperties": True}
        doc = workflow(
            [node("a", argv=["{{ params.host }}", "{{ params['port'] }}"])], parameters=schema
        )
        found = _one(doc, "UNKNOWN_REFERENCE")
        assert found.path == "/nodes/0/data/argv/1" and "params.port" in found.message

    @pytest.mark.parametrize(
        "text", ["{{ item }}", "{{ index + 1 }}", "{{ foo }}", "{{ run.nope }}"]
    )
    def test_out_of_scope_names(self, text: str) -> None:
        _one(workflow([node("a", argv=[text])]), "UNKNOWN_REFERENCE")

    def test_allowed_names(self) -> None:
        text = (
            "{{ run.id }} {{ secrets.TOKEN }} {{ range(3) | list }} {{ dict(a=1) }}"
            "{% for x in [1] %}{{ x }}{{ loop.index }}{% endfor %}{% set y = 2 %}{{ y }}"
        )
        assert validate_workflow(workflow([node("a", argv=[text])])) == []

    def test_script_text_is_not_a_template(self) -> None:
        doc = workflow([node("s", "action.script", interpreter="bash", script="echo ${{ x }")])
        assert compile_workflow(doc).ok

    def test_a_template_in_script_text_is_a_warning(self) -> None:
        doc = workflow(
            [node("s", "action.script", interpreter="python3", script="print('{{ params.x }}')")]
        )
        result = compile_workflow(doc)
        assert result.ok
        [warning] = result.diagnostics
        assert (warning.severity, warning.code, warning.node_id) == (
            "warning",
            "TEMPLATE_SYNTAX",
            "s",
        )
        assert warning.path == "/nodes/0/data/script"
        assert "env" in warning.message and "CONVEYOR_PARAM_" in warning.message

    def test_template_too_long(self) -> None:
        found = _one(workflow([node("a", stdin="x" * (64 * 1024 + 1))]), "LIMIT_EXCEEDED")
        assert found.path == "/nodes/0/data/stdin"


class TestParametersSchema:
    @pytest.mark.parametrize(
        "schema",
        [
            {"type": "object", "properties": {"a": {"type": "nope"}}},
            {"type": "string"},
            True,
            {"type": "object", "properties": {"a": {"pattern": "("}}},
        ],
    )
    def test_invalid_schema(self, schema: Any) -> None:
        found = _one(workflow([node("a")], parameters=schema), "INVALID_PARAMETERS_SCHEMA")
        assert found.path == "/parameters"


def test_codes_are_the_documented_set() -> None:
    assert {
        "INVALID_DOCUMENT",
        "MISSING_FIELD",
        "INVALID_FIELD",
        "UNKNOWN_NODE_TYPE",
        "DUPLICATE_NODE_ID",
        "DANGLING_EDGE",
        "CYCLE",
        "NO_ENTRY_NODE",
        "INVALID_HANDLE",
        "TEMPLATE_SYNTAX",
        "UNKNOWN_REFERENCE",
        "INVALID_PARAMETERS_SCHEMA",
        "LIMIT_EXCEEDED",
        "UNREACHABLE_NODE",
    } == CODES


def test_all_problems_are_reported_at_once() -> None:
    doc = workflow(
        [
            node("a"),
            node("a"),
            node("b", "action.bogus"),
            node("c", "logic.condition", expression="steps.a.exit_code == 0"),
            node("d", argv=["{{ params.missing }}"]),
        ],
        [edge("a", "c"), edge("c", "d"), edge("a", "ghost")],
        parameters={"type": "object", "properties": {"host": {"type": "string"}}},
    )
    errors = _errors(doc)
    assert [(d.code, d.path) for d in errors] == [
        ("DUPLICATE_NODE_ID", "/nodes/1/id"),
        ("UNKNOWN_NODE_TYPE", "/nodes/2/type"),
        ("INVALID_HANDLE", "/edges/1/sourceHandle"),
        ("DANGLING_EDGE", "/edges/2/target"),
        ("UNKNOWN_REFERENCE", "/nodes/4/data/argv/0"),
    ]


class TestWaitingNodesInForeach:
    @pytest.mark.parametrize(
        ("node_type", "data"),
        [("action.approval", {}), ("action.subworkflow", {"job": "other"})],
    )
    def test_cannot_sit_in_a_foreach_body(self, node_type: str, data: dict[str, Any]) -> None:
        inner = {**node("inner", node_type, **data), "parentId": "loop"}
        document = workflow([node("loop", "logic.foreach", items="[1, 2]"), inner])
        found = _one(document, "INVALID_FIELD")
        assert found.node_id == "inner"
        assert found.path.endswith("/parentId")
        assert "cannot sit inside foreach 'loop'" in found.message


class TestShellCommands:
    """Commands hold expressions only; shell commands only where a value can be referenced."""

    @staticmethod
    def _command(data: dict[str, Any]) -> Any:
        return workflow([node("a", **data)])

    def test_statements_are_refused_with_the_safe_form(self) -> None:
        found = _one(
            self._command({"command": "echo {% if true %}x{% endif %}", "shell": True}),
            "TEMPLATE_SYNTAX",
        )
        assert "{{ 'a' if params.flag else 'b' }}" in found.message
        assert found.path.endswith("/data/command")

    def test_a_template_in_a_quoted_heredoc_is_refused(self) -> None:
        found = _one(
            self._command({"command": "cat <<'E'\n{{ run.id }}\nE", "shell": True}),
            "TEMPLATE_SYNTAX",
        )
        assert "quoted here-document" in found.message

    @pytest.mark.parametrize(
        "command",
        [
            "echo '{{ run.id }}'",
            'echo "{{ run.id }}"',
            "echo {{ run.id }}",
            "echo $(echo {{ run.id }})",
        ],
    )
    def test_quoted_templates_are_fine(self, command: str) -> None:
        result = compile_workflow(self._command({"command": command, "shell": True}))
        assert result.ok, result.diagnostics
