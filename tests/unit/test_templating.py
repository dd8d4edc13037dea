"""The sandboxed template engine shared by the translator and the step runners."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.kernel.templating import (
    Budget,
    BudgetExceeded,
    Reference,
    RenderCancelled,
    TemplateError,
    TemplateSyntaxError,
    budget_scope,
    evaluate,
    is_templated,
    references,
    render_string,
    render_value,
    template_pieces,
)

SCOPE = {
    "params": {"host": "r1.example.net", "ports": [22, 830], "evil": "'; touch /tmp/x"},
    "steps": {"ping": {"exit_code": 0, "output": {"rtt": 1.5}}},
    "run": {"id": "run-1"},
}


class TestRendering:
    def test_renders_params_and_step_outputs(self) -> None:
        text = render_string("ssh {{ params.host }} rtt={{ steps.ping.output.rtt }}", SCOPE)
        assert text == "ssh r1.example.net rtt=1.5"

    def test_plain_text_is_returned_unchanged(self) -> None:
        assert render_value("no markup here", SCOPE) == "no markup here"
        assert not is_templated("a { b } c")
        assert is_templated("{{ x }}")
        assert is_templated("{% if x %}y{% endif %}")

    def test_extra_filters(self) -> None:
        assert render_string("{{ params.ports|tojson }}", SCOPE) == "[22, 830]"
        assert render_string("{{ {'k': 'é'}|tojson }}", SCOPE) == '{"k": "é"}'
        assert render_string("{{ ('[1, 2]'|fromjson)[1] }}", SCOPE) == "2"
        assert render_string("{{ 'a b'|quote }}", SCOPE) == "'a b'"

    def test_undefined_names_raise_naming_the_expression(self) -> None:
        with pytest.raises(TemplateError) as info:
            render_string("x {{ steps.ping.output.missing }}", SCOPE)
        assert info.value.expression == "x {{ steps.ping.output.missing }}"
        assert "missing" in info.value.message
        assert "steps.ping.output.missing" in str(info.value)

    def test_runtime_errors_become_template_errors(self) -> None:
        with pytest.raises(TemplateError, match="division by zero"):
            render_string("{{ 1 / 0 }}", SCOPE)
        with pytest.raises(TemplateError):
            render_string("{{ 'not json'|fromjson }}", SCOPE)

    def test_unknown_filter_is_a_template_error(self) -> None:
        with pytest.raises(TemplateError, match="shout"):
            render_string("{{ 'x' | shout }}", SCOPE)
        with pytest.raises(TemplateSyntaxError, match="shout"):
            references("{{ 'x' | shout }}")

    def test_syntax_error_in_render_has_line_and_column(self) -> None:
        with pytest.raises(TemplateSyntaxError) as info:
            render_string("ok\n  {{ params.host( }}", SCOPE)
        assert (info.value.lineno, info.value.column) == (2, 19)


class TestNativeValues:
    def test_lone_expression_keeps_its_type(self) -> None:
        rendered = render_value(
            {"ports": "{{ params.ports }}", "code": " {{ steps.ping.exit_code }} "}, SCOPE
        )
        assert rendered == {"ports": [22, 830], "code": 0}

    def test_mixed_text_renders_to_string(self) -> None:
        assert render_value(["port {{ params.ports[0] }}", 7], SCOPE) == ["port 22", 7]

    def test_two_expressions_render_to_string(self) -> None:
        assert render_value("{{ params.ports[0] }}{{ params.ports[1] }}", SCOPE) == "22830"

    def test_native_undefined_raises(self) -> None:
        with pytest.raises(TemplateError, match="nope"):
            render_value("{{ steps.nope }}", SCOPE)

    def test_evaluate_bare_expression(self) -> None:
        assert evaluate("steps.ping.exit_code == 0", SCOPE) is True
        assert evaluate("params.ports | length", SCOPE) == 2
        with pytest.raises(TemplateError, match="missing"):
            evaluate("steps.ping.missing", SCOPE)
        with pytest.raises(TemplateError):
            evaluate("steps.ping ==", SCOPE)


class TestShellQuoting:
    def test_every_value_is_one_quoted_word(self) -> None:
        command = render_string("echo {{ params.evil }}", SCOPE, quote_values=True)
        assert shlex.split(command) == ["echo", "'; touch /tmp/x"]

    def test_quoted_value_runs_nothing_in_a_shell(self, tmp_path: Path) -> None:
        target = tmp_path / "pwned"
        scope = {"params": {"evil": f"$(touch {target}); touch {target}"}}
        command = render_string("echo {{ params.evil }}", scope, quote_values=True)
        result = subprocess.run(
            ["/bin/sh", "-c", command], capture_output=True, text=True, check=True
        )
        assert not target.exists()
        assert result.stdout.strip() == scope["params"]["evil"]

    def test_explicit_quote_filter_is_not_quoted_twice(self) -> None:
        command = render_string("echo {{ params.evil|quote }}", SCOPE, quote_values=True)
        assert shlex.split(command) == ["echo", "'; touch /tmp/x"]

    def test_render_value_with_quoting_gives_strings(self) -> None:
        assert render_value("{{ params.ports[0] }}", SCOPE, quote_values=True) == "22"
        assert render_value("{{ params.evil }}", SCOPE, quote_values=True) == shlex.quote(
            "'; touch /tmp/x"
        )


class TestSandbox:
    @pytest.mark.parametrize(
        "source",
        [
            "{{ ''.__class__ }}",
            "{{ ''.__class__.__mro__ }}",
            "{{ params|attr('__class__') }}",
            "{{ '{x.__class__}'.format_map({'x': 1}) }}",
            "{{ '{0.__class__}'.format(1) }}",
            "{{ params.ports.append(1) }}",
            "{{ 'x' * 100000000 }}",
            "{{ 2 ** 1000000 }}",
            "{{ range(10 ** 9) | list }}",
        ],
    )
    def test_escapes_and_resource_bombs_raise(self, source: str) -> None:
        with pytest.raises(TemplateError):
            render_string(source, SCOPE)

    def test_deeply_nested_expression_is_an_error_not_a_crash(self) -> None:
        source = "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"
        with pytest.raises(TemplateError):
            render_string(source, SCOPE)


class TestReferences:
    def test_roots_and_first_names(self) -> None:
        found = references("{{ steps.a.output }} {{ params['host'] }} {{ item }}")
        assert found == [
            Reference("steps", "a"),
            Reference("params", "host"),
            Reference("item", None),
        ]

    def test_locally_bound_names_are_not_references(self) -> None:
        source = (
            "{% set n = 3 %}{% for row in steps.b.output %}{{ row }}{{ loop.index }}"
            "{% endfor %}{{ n }}{% macro m(arg) %}{{ arg }}{% endmacro %}{{ m(params.q) }}"
        )
        assert references(source) == [Reference("steps", "b"), Reference("params", "q")]

    def test_dynamic_subscript_has_no_name(self) -> None:
        assert references("{{ steps[params.k].x }}") == [
            Reference("steps", None),
            Reference("params", "k"),
        ]

    def test_bare_expression(self) -> None:
        found = references("steps.ping.exit_code == 0 and index > 1", expression=True)
        assert found == [Reference("steps", "ping"), Reference("index", None)]

    @pytest.mark.parametrize(
        ("source", "expression", "line", "column"),
        [
            ("line one\n  {{ a.b( }}", False, 2, 11),
            ("{{ a }} {% if %}", False, 1, 15),
            ("x\n{{ 'open }}", False, 2, 4),
            ("{{ x }}\n\n  {% endif %}", False, 3, 6),
            ("a b", True, 1, 3),
            ("a ==", True, 1, 5),
        ],
    )
    def test_syntax_errors_carry_line_and_column(
        self, source: str, expression: bool, line: int, column: int
    ) -> None:
        with pytest.raises(TemplateSyntaxError) as info:
            references(source, expression=expression)
        assert (info.value.lineno, info.value.column) == (line, column)
        assert info.value.expression == source


def test_module_imports_without_grpc_or_sqlalchemy() -> None:
    code = (
        "import sys, conveyor.kernel.templating; "
        "assert 'grpc' not in sys.modules and 'sqlalchemy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mapping_keys_win_over_dict_methods() -> None:
    scope = {"steps": {"get": {"output": {"env": "prod"}}, "items": {"n": 2}}}
    assert render_value("{{ steps.get.output.env }}", scope) == "prod"
    assert render_value("{{ steps.items.n }}", scope) == 2
    assert render_value("{{ steps.keys() | list | length }}", scope) == 2


class TestBudget:
    """Rendering is bounded in steps, size and time, and notices cancellation."""

    @pytest.mark.parametrize(
        "source",
        [
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "{% for c in 'x' * 100000 %}{% for d in 'y' * 100000 %}{{ '' }}{% endfor %}"
            "{% endfor %}",
            "{% set ns = namespace(a='x') %}{% for i in range(64) %}"
            "{% set ns.a = ns.a ~ ns.a %}{% endfor %}{{ ns.a | length }}",
            "{{ ('x' * 1000000) | replace('x', 'xxxxxxxxxx') }}",
            "{{ ('x' * 1000000).replace('x', 'xxxxxxxxxx') }}",
            "{{ '%999999999d' % 1 }}",
            "{{ '%*d' % (999999999, 1) }}",
            "{{ '{:>999999999}'.format(1) }}",
            "{{ '{:>{}}'.format(1, 999999999) }}",
            "{{ '%999999999d' | format(1) }}",
            "{{ 'a'.center(10 ** 9) }}",
            "{{ 'a' | center(10 ** 9) }}",
            "{{ 'a b' | indent(10 ** 9) }}",
            "{{ lipsum(10 ** 6) }}",
            "{{ ('x' * 900000) + ('x' * 900000) }}",
        ],
    )
    def test_bombs_fail_fast_as_template_errors(self, source: str) -> None:
        with pytest.raises(TemplateError):
            render_string(source, {})

    def test_steps_are_counted(self) -> None:
        source = "{% for i in range(100) %}{{ i }}{% endfor %}"
        with budget_scope(Budget(max_steps=50)), pytest.raises(BudgetExceeded) as info:
            render_string(source, {})
        assert "more than 50 steps" in info.value.message
        with budget_scope(Budget(max_steps=10_000)):
            assert render_string(source, {}).startswith("0123")

    def test_output_size_is_capped(self) -> None:
        with budget_scope(Budget(max_output=2000)), pytest.raises(BudgetExceeded) as info:
            render_string("{{ x }}", {"x": "y" * 3000})
        assert "more than the limit of 2000" in info.value.message
        with budget_scope(Budget(max_output=2000)), pytest.raises(BudgetExceeded):
            render_value("{{ x }}", {"x": list(range(3000))})

    def test_deadline_stops_an_empty_loop(self) -> None:
        source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
        with (
            budget_scope(Budget(max_s=0.05, max_steps=10**12)),
            pytest.raises(BudgetExceeded) as info,
        ):
            render_string(source, {})
        assert "longer than 0.05 s" in info.value.message

    def test_cancellation_interrupts_rendering(self) -> None:
        source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
        calls = [0]

        def cancelled() -> bool:
            calls[0] += 1
            return calls[0] > 3

        with (
            budget_scope(Budget(max_s=None, max_steps=10**12, is_cancelled=cancelled)),
            pytest.raises(RenderCancelled),
        ):
            render_string(source, {})

    def test_ordinary_templates_are_unaffected(self) -> None:
        scope = {"params": {"items": ["a", "b"]}}
        source = "{% for x in params['items'] %}{{ loop.index }}={{ x|upper }};{% endfor %}"
        assert render_string(source, scope) == "1=A;2=B;"
        assert render_value("{{ params['items'] | length }}", scope) == 2


class TestPieces:
    def test_splits_text_and_expressions(self) -> None:
        pieces = template_pieces("a {{- x -}} b {# c #}{% raw %}{{ y }}{% endraw %}'{{ z }}'")
        assert [(p.text, p.expression) for p in pieces] == [
            ("a", False),
            ("x", True),
            ("b ", False),
            ("{{ y }}", False),
            ("'", False),
            ("z", True),
            ("'", False),
        ]

    @pytest.mark.parametrize(
        ("source", "message"),
        [
            ("echo {% if x %}a{% endif %}", "statements"),
            ("echo {{ x", "expected '}}'"),
            ("echo {{ }}", "empty expression"),
            ("echo {{ x + }}", ""),
            ("echo {{ x | nofilter }}", "nofilter"),
        ],
    )
    def test_refuses_statements_and_broken_expressions(self, source: str, message: str) -> None:
        with pytest.raises(TemplateSyntaxError) as info:
            template_pieces(source)
        assert message in info.value.message
