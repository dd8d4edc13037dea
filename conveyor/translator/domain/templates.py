"""Static checks of the templates in node data: size, syntax and what they refer to.

A ``command`` string of an ``action.command`` node (with or without ``shell``) may hold
only ``{{ expressions }}``, never ``{% statements %}``: its values are placed by position
(see `conveyor.kernel.shellwords`), which a statement would make ambiguous.

A template may read ``params`` (declared names), ``steps.<id>`` (nodes upstream
of it; inside a foreach body, also nodes upstream of the foreach), ``run``
(``id``, ``job``, ``trigger``, ``started_at``), ``secrets``, Jinja's globals
(``range``, ``dict``, ...) and, inside a foreach body only, ``item`` and ``index``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.kernel.shellwords import ShellScanner, ShellTemplateError
from conveyor.kernel.templating import (
    GLOBAL_NAMES,
    Reference,
    TemplateError,
    TemplateSyntaxError,
    is_templated,
    references,
    template_pieces,
)
from conveyor.shared import diagnostics as dg
from conveyor.shared import nodetypes as nt
from conveyor.shared.diagnostics import Diagnostics, pointer
from conveyor.shared.limits import Limits
from conveyor.shared.parameters import Declared
from conveyor.translator.domain.graph import Graph
from conveyor.translator.domain.nodes import Node
from conveyor.translator.domain.nodetypes import (
    EXPRESSION_FIELDS,
    UNTEMPLATED_FIELDS,
    is_trigger,
)

__all__ = ["RUN_FIELDS", "check_templates"]

RUN_FIELDS = frozenset({"id", "job", "trigger", "started_at"})
SCOPE_ROOTS = ("params", "steps", "run", "item", "index", "secrets")


@dataclass
class _Context:
    graph: Graph
    declared: Declared | None
    limits: Limits
    out: Diagnostics
    upstream: dict[str, int] | None = None

    def upstream_of(self, node_id: str) -> int | None:
        """The upstream bit set of a node, computed on first use; None if it is in a cycle."""
        if self.upstream is None:
            self.upstream = self.graph.upstream()
        return self.upstream.get(node_id)


def _reference_problem(ref: Reference, node: Node, ctx: _Context) -> str | None:
    root, name = ref.root, ref.name
    if root == "params":
        if name is None or ctx.declared is None or name in ctx.declared:
            return None
        return f"params.{name} is not declared in the workflow's parameters"
    if root == "steps":
        if name is None:
            return None
        step = ctx.graph.nodes.get(name)
        if step is None:
            return f"steps.{name} names no node of this workflow"
        mask = ctx.upstream_of(node.id)
        if mask is None or mask >> step.index & 1:
            return None
        return f"steps.{name} is not upstream of '{node.id}', so its outputs are not available"
    if root == "run":
        if name is None or name in RUN_FIELDS:
            return None
        return f"run.{name} does not exist; run has " + ", ".join(sorted(RUN_FIELDS))
    if root in ("item", "index"):
        if ctx.graph.group.get(node.id) is not None:
            return None
        return f"'{root}' is only defined inside a logic.foreach body"
    if root == "secrets" or root in GLOBAL_NAMES:
        return None
    return f"unknown variable '{root}'; templates can use " + ", ".join(SCOPE_ROOTS)


def _check_string(
    text: str, path: str, where: str, node: Node, *, expression: bool, ctx: _Context
) -> None:
    out = ctx.out
    if len(text) > ctx.limits.max_template_bytes or (
        len(text) * 4 > ctx.limits.max_template_bytes
        and len(text.encode("utf-8", "surrogatepass")) > ctx.limits.max_template_bytes
    ):
        out.error(
            dg.LIMIT_EXCEEDED,
            f"node '{node.id}' field '{where}' is longer than the template limit of "
            f"{ctx.limits.max_template_bytes} bytes",
            path,
            node_id=node.id,
        )
        return
    if expression and is_templated(text):
        # Written as {{ expr }}: check it as the template it is, for exact positions.
        expression = False
    if not expression and not is_templated(text):
        return
    try:
        found = references(text, expression=expression)
    except TemplateSyntaxError as exc:
        out.error(
            dg.TEMPLATE_SYNTAX,
            f"node '{node.id}' field '{where}' has a template error at line {exc.lineno}, "
            f"column {exc.column}: {exc.message}",
            path,
            node_id=node.id,
            line=exc.lineno,
            column=exc.column,
        )
        return
    for ref in found:
        problem = _reference_problem(ref, node, ctx)
        if problem is not None:
            out.error(
                dg.UNKNOWN_REFERENCE,
                f"node '{node.id}' field '{where}': {problem}",
                path,
                node_id=node.id,
            )


def _check_command(node: Node, ctx: _Context) -> None:
    """A command string holds expressions only; in shell mode each must be referencable."""
    value = node.raw_data.get("command")
    if not isinstance(value, str) or ("{%" not in value and "{{" not in value):
        return
    path = node.path + "/data" + pointer("command")
    try:
        pieces = template_pieces(value)
    except TemplateSyntaxError as exc:
        if "{%" in value and "statements" in exc.message:
            ctx.out.error(
                dg.TEMPLATE_SYNTAX,
                f"node '{node.id}' field 'command': template statements ({{% ... %}}) are not"
                " allowed in a command, because values are placed by position; write the"
                " choice as an expression, e.g. {{ 'a' if params.flag else 'b' }}, or use"
                " action.script with the values in env",
                path,
                node_id=node.id,
                line=exc.lineno,
                column=exc.column,
            )
        return  # other syntax errors are reported by the generic check
    except TemplateError:
        return
    if node.raw_data.get("shell") is not True:
        return
    scanner = ShellScanner()
    for piece in pieces:
        if not piece.expression:
            scanner.feed(piece.text)
            continue
        try:
            scanner.reference("V")
        except ShellTemplateError as exc:
            ctx.out.error(
                dg.TEMPLATE_SYNTAX,
                f"node '{node.id}' field 'command': {{{{ {piece.text} }}}}: {exc}",
                path,
                node_id=node.id,
            )
            return


def _warn_untemplated(node: Node, key: str, ctx: _Context) -> None:
    """A `{{ }}` in a script's text stays as written: say so, and how values get in."""
    text = node.raw_data.get(key)
    if isinstance(text, str) and "{{" in text and "}}" in text:
        ctx.out.warning(
            dg.TEMPLATE_SYNTAX,
            f"node '{node.id}' field '{key}': '{{{{ }}}}' is not rendered in a script's text "
            "and runs as written; pass values through 'env' (templated) or read parameters "
            "from CONVEYOR_PARAM_<NAME>",
            node.path + "/data" + pointer(key),
            node_id=node.id,
        )


def _check_node(node: Node, ctx: _Context) -> None:
    if node.type is None:
        return
    if node.type == nt.COMMAND:
        _check_command(node, ctx)
    data_path = node.path + "/data"
    for key in node.data:
        if (node.type, key) in UNTEMPLATED_FIELDS:
            _warn_untemplated(node, key, ctx)
            continue
        if key not in node.raw_data:
            continue
        value = node.raw_data[key]
        if (
            node.type == nt.FOREACH
            and key == "items"
            and isinstance(value, list)
            and len(value) > ctx.limits.max_foreach_items
        ):
            ctx.out.error(
                dg.LIMIT_EXCEEDED,
                f"node '{node.id}' loops over {len(value)} items, more than the limit of "
                f"{ctx.limits.max_foreach_items}",
                data_path + pointer(key),
                node_id=node.id,
            )
            continue
        expression = (node.type, key) in EXPRESSION_FIELDS and isinstance(value, str)
        stack: list[tuple[Any, str, str]] = [(value, data_path + pointer(key), key)]
        while stack:
            item, path, where = stack.pop()
            if isinstance(item, str):
                _check_string(item, path, where, node, expression=expression, ctx=ctx)
            elif isinstance(item, dict):
                stack.extend(
                    (v, path + pointer(k), f"{where}/{k}") for k, v in reversed(item.items())
                )
            elif isinstance(item, list):
                stack.extend(
                    (v, path + pointer(i), f"{where}/{i}")
                    for i, v in reversed(list(enumerate(item)))
                )


def check_templates(
    nodes: list[Node], graph: Graph, declared: Declared | None, limits: Limits, out: Diagnostics
) -> None:
    """Check every template string in the type-specific data of every typed node."""
    ctx = _Context(graph, declared, limits, out)
    for node in nodes:
        if node.type is None or is_trigger(node.type):
            continue
        _check_node(node, ctx)
