"""The one template engine of Conveyor: sandboxed Jinja2 over workflow data.

Every string value of a node's ``data`` is a Jinja2 template rendered in an
``ImmutableSandboxedEnvironment`` with ``StrictUndefined``: a missing name or
attribute is an error, never an empty string, and attribute escapes such as
``''.__class__`` fail with a security error.

Beyond Jinja's own filters there are ``quote`` (POSIX shell quoting),
``tojson`` (plain JSON, not HTML-escaped) and ``fromjson``.

With ``quote_values=True`` every ``{{ expr }}`` output is shell-quoted (a value
already passed through ``|quote`` is not quoted twice). Commands do not rely on
it: `template_pieces` splits a command into static text and expressions, and
`conveyor.kernel.shellwords` places each value where the shell cannot parse it.

Every render runs under a `Budget`: a deadline, a cap on output size and a cap
on "steps" (loop iterations, calls, attribute reads). A budget is installed for
a step with `budget_scope`; without one, each render gets a default budget of its
own. Running out raises `BudgetExceeded` (a `TemplateError`); a cancellation
noticed while rendering raises `RenderCancelled`.

The translator uses `references` to check, before any run, that a template
only names upstream steps and declared parameters.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import operator
import re
import shlex
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.lexer import Token, TokenStream
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

__all__ = [
    "Budget",
    "BudgetExceeded",
    "Piece",
    "Reference",
    "RenderCancelled",
    "TemplateError",
    "TemplateSyntaxError",
    "budget_scope",
    "evaluate",
    "is_templated",
    "references",
    "render_expression_text",
    "render_string",
    "render_value",
    "template_pieces",
]

# Bounds for operators that can otherwise allocate unbounded memory or CPU from
# a short template, e.g. ``'x' * 10**12`` or ``9 ** 9 ** 9``.
MAX_REPEAT_LENGTH = 1_000_000
MAX_POWER_EXPONENT = 10_000


class TemplateError(Exception):
    """A template failed to parse, render or evaluate; names the expression."""

    def __init__(self, expression: str, message: str) -> None:
        super().__init__(f"{expression}: {message}")
        self.expression = expression
        self.message = message


class TemplateSyntaxError(TemplateError):
    """A template is not valid Jinja; `lineno` and `column` are 1-based."""

    def __init__(self, expression: str, message: str, *, lineno: int, column: int) -> None:
        super().__init__(expression, message)
        self.lineno = lineno
        self.column = column

    def __str__(self) -> str:
        return f"{self.expression}: line {self.lineno}, column {self.column}: {self.message}"


class BudgetExceeded(TemplateError):
    """Rendering ran out of its budget (time, output size or steps)."""


class RenderCancelled(Exception):
    """The step was cancelled while its templates were rendering."""


DEFAULT_MAX_OUTPUT = 1024 * 1024
DEFAULT_MAX_STEPS = 1_000_000
DEFAULT_MAX_S = 10.0
# How many steps pass between two looks at the clock and the cancellation flag.
_CHECK_EVERY = 512


class Budget:
    """What rendering may spend: a deadline, output characters and steps.

    A step is one loop iteration, call, filter or attribute read. The clock and
    the cancellation hook are looked at every few hundred steps and on every
    chunk of output, so even a loop with an empty body stops at the deadline.
    """

    def __init__(
        self,
        *,
        max_s: float | None = DEFAULT_MAX_S,
        max_output: int = DEFAULT_MAX_OUTPUT,
        max_steps: int = DEFAULT_MAX_STEPS,
        is_cancelled: Callable[[], bool] | None = None,
    ) -> None:
        self.started = time.monotonic()
        self.max_s = max_s
        self.deadline = None if max_s is None else self.started + max_s
        self.max_output = max_output
        self.max_steps = max_steps
        self.is_cancelled = is_cancelled
        self.steps = 0

    def elapsed(self) -> float:
        """Seconds since the budget was created."""
        return time.monotonic() - self.started

    def tick(self, count: int = 1) -> None:
        """Spend `count` steps; raises when the budget is gone."""
        self.steps += count
        if self.steps > self.max_steps:
            raise BudgetExceeded(
                "template",
                f"rendering took more than {self.max_steps} steps (loop iterations and calls)",
            )
        if self.steps % _CHECK_EVERY < count:
            self.check()

    def check(self) -> None:
        """Raise if the deadline passed or the step was cancelled."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise BudgetExceeded("template", f"rendering took longer than {self.max_s:g} s")
        if self.is_cancelled is not None and self.is_cancelled():
            raise RenderCancelled("cancelled while rendering templates")

    def size(self, length: int) -> None:
        """Refuse a value or an output longer than the output cap."""
        if length > self.max_output:
            raise BudgetExceeded(
                "template",
                f"a rendered value is {length} characters, more than the limit of "
                f"{self.max_output}",
            )


_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "conveyor_template_budget", default=None
)


@contextlib.contextmanager
def budget_scope(budget: Budget) -> Iterator[Budget]:
    """Render every template of this thread under `budget` until the block ends."""
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


@contextlib.contextmanager
def _render_budget() -> Iterator[Budget]:
    """The budget in force, or a default one for this render alone."""
    current = _BUDGET.get()
    if current is not None:
        yield current
        return
    with budget_scope(Budget()) as fresh:
        yield fresh


def _budget() -> Budget:
    current = _BUDGET.get()
    # Outside a render (Jinja folds constant expressions while compiling) each check
    # gets a fresh default budget, which still bounds sizes.
    return Budget() if current is None else current


def _sized(value: Any) -> Any:
    if isinstance(value, str | bytes | list | tuple | dict):
        _budget().size(len(value))
    return value


def _budget_iter(value: Any) -> Iterator[Any]:
    budget = _budget()
    for item in value:
        budget.tick()
        yield item


def _budget_size(value: Any) -> Any:
    budget = _budget()
    budget.tick()
    return _sized(value)


# A width, precision or count this long in a format string or a padding call would
# allocate more than any budget allows before it could be checked.
_HUGE_NUMBER = re.compile(r"\d{7,}")
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _precheck_call(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse str method calls whose result would be huge, before they allocate it."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    budget = _budget()
    numbers = [a for a in (*args, *kwargs.values()) if isinstance(a, int)]
    if name in ("format", "format_map") and any(n > budget.max_output for n in numbers):
        raise BudgetExceeded("template", "a format width or precision that large is not allowed")
    if not isinstance(owner, str):
        return
    if name in _PADDING_METHODS and any(n > budget.max_output for n in numbers):
        budget.size(max(numbers))
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        old, new = args[0], args[1]
        if isinstance(new, str) and len(new) > len(old):
            hits = owner.count(old) if old else len(owner) + 1
            budget.size(len(owner) + hits * (len(new) - len(old)))


class _BudgetTransformer(NodeTransformer):
    """Rewrites a parsed template so loops and concatenations spend the budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 - visitor protocol
        self.generic_visit(node)
        node.iter = nodes.Filter(
            node.iter, "_conveyor_iter", [], [], None, None, lineno=node.lineno
        )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802 - visitor protocol
        self.generic_visit(node)
        return nodes.Filter(node, "_conveyor_size", [], [], None, None, lineno=node.lineno)


def _budgeted_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _budget().tick()
        return _sized(func(*args, **kwargs))

    # Jinja passes the environment or context to filters marked for it.
    for marker in ("jinja_pass_arg",):
        if hasattr(func, marker):
            setattr(wrapper, marker, getattr(func, marker))
    wrapper.__name__ = getattr(func, "__name__", "filter")
    wrapper.__doc__ = func.__doc__
    return wrapper


MAX_LIPSUM_PARAGRAPHS = 100


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """Jinja's ``lipsum``, limited to `MAX_LIPSUM_PARAGRAPHS` paragraphs of 1000 words."""
    if not 0 <= n <= MAX_LIPSUM_PARAGRAPHS or not 0 <= max <= 1000 or not 0 <= min <= max:
        raise BudgetExceeded(
            "lipsum", f"at most {MAX_LIPSUM_PARAGRAPHS} paragraphs of at most 1000 words"
        )
    return str(jinja2.utils.generate_lorem_ipsum(n=n, html=html, min=min, max=max))


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    if isinstance(value, str) and _HUGE_NUMBER.search(value):
        raise BudgetExceeded("template", "a format width or precision that large is not allowed")
    return jinja2.filters.do_format(value, *args, **kwargs)  # type: ignore[no-untyped-call]


def _padding_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int):
            _budget().size(width)
        return func(value, width, *args, **kwargs)

    return wrapper


@jinja2.pass_eval_context
def _replace_filter(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        _precheck_call(s.replace, (old, new), {})
    return jinja2.filters.do_replace(eval_ctx, s, old, new, count)


@dataclass(frozen=True)
class Reference:
    """A variable a template reads: its root name and first attribute or key, if constant."""

    root: str
    name: str | None


class _Quoted(str):
    """A string that is already shell-quoted, so the quoting finalizer leaves it alone.

    `original` is the value before quoting: a shell command passes values through the
    environment, where quoting is not needed and would show.
    """

    original: str


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _quote_filter(value: Any) -> str:
    text = _text(value)
    quoted = _Quoted(shlex.quote(text))
    quoted.original = text
    return quoted


def _tojson_filter(value: Any) -> str:
    return json.dumps(value, sort_keys=False, ensure_ascii=False)


def _fromjson_filter(value: Any) -> Any:
    return json.loads(_text(value))


def _quoting_finalize(value: Any) -> Any:
    if isinstance(value, _Quoted):
        return value
    return shlex.quote(_text(value))


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, plus bounds on repetition and exponentiation and a render budget."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        """Compile `source` with loops and concatenations rewritten to spend the budget."""
        source = _BudgetTransformer().visit(source)
        return super()._generate(source, name, filename, defer_init=defer_init)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        """Every call spends a step; str methods that would allocate too much are refused."""
        _budget().tick()
        _precheck_call(__obj, args, kwargs)
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def getitem(self, obj: Any, argument: Any) -> Any:
        """Every subscript spends a step."""
        _budget().tick()
        return super().getitem(obj, argument)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``a.b`` on a mapping reads key ``b`` first, so a step named ``get`` or ``items``
        (``steps.get.output``) is the step, not the dict method of that name."""
        _budget().tick()
        if (
            isinstance(obj, str)
            and attribute in ("format", "format_map")
            and _HUGE_NUMBER.search(obj)
        ):
            raise jinja2.exceptions.SecurityError(
                "a format width or precision that large is not allowed"
            )
        if isinstance(obj, Mapping) and isinstance(attribute, str):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        """Refuse ``*``, ``**``, ``+`` and ``%`` results that would exhaust memory or CPU."""
        _budget().tick()
        if operator_ == "+":
            return _sized(operator.add(left, right))
        if operator_ == "%":
            huge = any(
                isinstance(n, int) and n > _budget().max_output
                for n in (right if isinstance(right, tuple) else (right,))
            )
            if isinstance(left, str) and (_HUGE_NUMBER.search(left) or ("*" in left and huge)):
                raise jinja2.exceptions.SecurityError(
                    "a format width or precision that large is not allowed"
                )
            return _sized(operator.mod(left, right))
        if operator_ == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(count, int)
                    and len(seq) * count > MAX_REPEAT_LENGTH
                ):
                    raise jinja2.exceptions.SecurityError(
                        f"repetition longer than {MAX_REPEAT_LENGTH} items is not allowed"
                    )
            return operator.mul(left, right)
        if isinstance(left, int) and isinstance(right, int) and abs(right) > MAX_POWER_EXPONENT:
            raise jinja2.exceptions.SecurityError(
                f"exponents above {MAX_POWER_EXPONENT} are not allowed"
            )
        return operator.pow(left, right)


def _make_environment(*, quoting: bool) -> _Environment:
    env = _Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_quoting_finalize if quoting else None,
    )
    env.filters["quote"] = _quote_filter
    env.filters["tojson"] = _tojson_filter
    env.filters["fromjson"] = _fromjson_filter
    env.filters["format"] = _format_filter
    env.filters["replace"] = _replace_filter
    for name in ("center", "indent"):
        env.filters[name] = _padding_filter(env.filters[name])
    for name, func in list(env.filters.items()):
        env.filters[name] = _budgeted_filter(func)
    env.globals["lipsum"] = _lipsum
    env.filters["_conveyor_iter"] = _budget_iter
    env.filters["_conveyor_size"] = _budget_size
    return env


_ENV = _make_environment(quoting=False)
_QUOTING_ENV = _make_environment(quoting=True)

#: Names every template may use without declaring them (``range``, ``dict``, ``lipsum``...).
GLOBAL_NAMES: frozenset[str] = frozenset(_ENV.globals)


def is_templated(value: str) -> bool:
    """Whether a string contains Jinja markup (``{{`` or ``{%``)."""
    return "{{" in value or "{%" in value


@lru_cache(maxsize=2048)
def _template(source: str, quoting: bool) -> jinja2.Template:
    env = _QUOTING_ENV if quoting else _ENV
    return env.from_string(source)


@lru_cache(maxsize=2048)
def _expression(source: str) -> Callable[..., Any]:
    return _ENV.compile_expression(source, undefined_to_none=False)


def _error(source: str, exc: BaseException) -> TemplateError:
    if isinstance(exc, BudgetExceeded):
        return BudgetExceeded(source, exc.message)
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return TemplateSyntaxError(
            source, exc.message or "invalid template", lineno=exc.lineno, column=1
        )
    if isinstance(exc, RecursionError):
        return TemplateError(source, "template is nested too deeply")
    message = str(exc) or type(exc).__name__
    return TemplateError(source, message)


def render_string(source: str, scope: Mapping[str, Any], *, quote_values: bool = False) -> str:
    """Render a template to text; with `quote_values` every ``{{ }}`` output is shell-quoted."""
    try:
        template = _template(source, quote_values)
    except jinja2.TemplateSyntaxError as exc:
        _parse(source, expression=False)  # raises the error located by line and column
        raise _error(source, exc) from exc  # errors only compiling finds, e.g. unknown filters
    except Exception as exc:  # any failure of user-written template code
        raise _error(source, exc) from exc
    with _render_budget() as budget:
        budget.check()
        parts: list[str] = []
        length = 0
        try:
            for chunk in template.generate(scope):
                length += len(chunk)
                budget.size(length)
                budget.tick()
                parts.append(chunk)
        except RenderCancelled:
            raise
        except BudgetExceeded as exc:
            raise BudgetExceeded(source, exc.message) from exc
        except Exception as exc:  # any failure of user-written template code
            raise _error(source, exc) from exc
        return "".join(parts)


_LONE_EXPRESSION = re.compile(r"\{\{[-+]?(?P<expr>.*?)[-+]?\}\}", re.DOTALL)
_MARKUP = ("{{", "}}", "{%", "%}", "{#", "#}")


def _lone_expression(source: str) -> str | None:
    match = _LONE_EXPRESSION.fullmatch(source.strip())
    if match is None:
        return None
    inner = match.group("expr")
    if any(mark in inner for mark in _MARKUP):
        return None
    return inner.strip() or None


def render_value(value: Any, scope: Mapping[str, Any], *, quote_values: bool = False) -> Any:
    """Render every string inside dicts and lists; a lone ``{{ expr }}`` keeps its native type.

    With `quote_values` no native values are produced: every string renders as shell text.
    """
    if isinstance(value, str):
        if not is_templated(value):
            return value
        expression = None if quote_values else _lone_expression(value)
        if expression is not None:
            try:
                return _evaluate(expression, scope)
            except BudgetExceeded as exc:
                raise BudgetExceeded(value, exc.message) from exc
            except TemplateError as exc:
                raise TemplateError(value, exc.message) from exc
        return render_string(value, scope, quote_values=quote_values)
    if isinstance(value, Mapping):
        return {k: render_value(v, scope, quote_values=quote_values) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, scope, quote_values=quote_values) for v in value]
    return value


@dataclass(frozen=True)
class Piece:
    """A part of a template: static text, or the source of one ``{{ expression }}``."""

    text: str
    expression: bool


_MAX_PIECES = 10_000


@lru_cache(maxsize=1024)
def _pieces(source: str) -> tuple[Piece, ...]:
    found: list[Piece] = []
    expr: list[str] | None = None
    try:
        for lineno, kind, value in _ENV.lexer.tokeniter(source, None):
            if kind == "block_begin":
                raise TemplateSyntaxError(
                    source,
                    "template statements ({% ... %}) are not allowed here; write the choice as"
                    " an expression, e.g. {{ 'a' if params.flag else 'b' }}",
                    lineno=lineno,
                    column=1,
                )
            if kind == "variable_begin":
                expr = []
            elif kind == "variable_end":
                text = "".join(expr or []).strip()
                if not text:
                    raise TemplateSyntaxError(
                        source, "empty expression {{ }}", lineno=lineno, column=1
                    )
                found.append(Piece(text, True))
                expr = None
            elif expr is not None:
                expr.append(value)
            elif kind == "data":
                found.append(Piece(value, False))
            if len(found) > _MAX_PIECES:
                raise TemplateError(source, f"more than {_MAX_PIECES} template expressions")
        if expr is not None:
            raise TemplateSyntaxError(
                source, "unexpected end of template, expected '}}'", lineno=1, column=1
            )
    except jinja2.TemplateSyntaxError:
        _parse(source, expression=False)  # raises the error located by line and column
        raise
    for piece in found:
        if piece.expression:
            _expression(piece.text)  # a syntax error inside one expression fails now
    return tuple(found)


def template_pieces(source: str) -> tuple[Piece, ...]:
    """Split a template into static text and expressions, in order.

    Comments and whitespace control are applied as Jinja would; ``{% raw %}`` content is
    static text. Statements (``{% if %}``, ``{% for %}``...) are refused with a
    `TemplateSyntaxError`, as is an expression that does not parse.
    """
    try:
        return _pieces(source)
    except TemplateError:
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise _error(source, exc) from exc


def render_expression_text(expression: str, scope: Mapping[str, Any]) -> str:
    """Evaluate one expression and give the text ``{{ expression }}`` would render.

    A value passed through ``|quote`` gives its unquoted text.
    """
    value = _evaluate(expression, scope)
    if isinstance(value, _Quoted):
        return value.original
    text = _text(value)
    _budget().size(len(text))
    return text


def _check_defined(source: str, value: Any) -> None:
    items: list[Any] = [value]
    if isinstance(value, list | tuple):
        items.extend(value)
    elif isinstance(value, dict):
        items.extend(value.values())
    for item in items:
        if isinstance(item, jinja2.Undefined):
            try:
                item._fail_with_undefined_error()
            except Exception as exc:
                raise _error(source, exc) from exc


def _evaluate(expression: str, scope: Mapping[str, Any]) -> Any:
    with _render_budget() as budget:
        budget.check()
        try:
            result = _sized(_expression(expression)(**scope))
        except RenderCancelled:
            raise
        except BudgetExceeded as exc:
            raise BudgetExceeded(expression, exc.message) from exc
        except Exception as exc:  # any failure of user-written template code
            raise _error(expression, exc) from exc
    _check_defined(expression, result)
    return result


def evaluate(expression: str, scope: Mapping[str, Any]) -> Any:
    """Evaluate a bare Jinja expression such as ``steps.ping.exit_code == 0``."""
    return _evaluate(expression, scope)


class _Located:
    """Feeds the parser while remembering where in the source each token starts.

    Jinja's tokens carry only a line number; the column of a syntax error is
    recovered from the offset of the token the parser stopped at, or of the
    text the lexer could not read.
    """

    def __init__(self, source: str, state: str | None) -> None:
        self.source = source
        self.state = state
        self.offset = 0
        self.lexer_failed_at: int | None = None
        # Tokens are kept alive alongside their offsets so that ids are never reused.
        self.tokens: dict[int, tuple[Token, int]] = {}

    def _raw(self) -> Iterator[tuple[int, str, str]]:
        pos = 0
        try:
            for lineno, kind, value in _ENV.lexer.tokeniter(self.source, None, None, self.state):
                found = self.source.find(value, pos) if value else -1
                if found >= 0:
                    pos = found
                self.offset = pos
                pos += len(value) if found >= 0 else 0
                yield lineno, kind, value
        except jinja2.TemplateSyntaxError as exc:
            at = _LEXER_POSITION.search(exc.message or "")
            self.lexer_failed_at = int(at.group(1)) if at else pos
            raise
        self.offset = len(self.source)

    def _wrapped(self) -> Iterator[Token]:
        for token in _ENV.lexer.wrap(self._raw(), None, None):
            self.tokens[id(token)] = (token, self.offset)
            yield token

    def parser(self) -> Parser:
        """A parser reading the tracked token stream."""
        stream = TokenStream(self._wrapped(), None, None)
        parser = Parser(_ENV, self.source, state=self.state)
        parser.stream = stream
        return parser

    def position(self, current: Token | None) -> tuple[int, int]:
        """1-based line and column of the failure: the lexer's, or the current token's."""
        offset = self.offset
        if self.lexer_failed_at is not None:
            offset = self.lexer_failed_at
        elif current is not None:
            token, token_offset = self.tokens.get(id(current), (None, offset))
            if token is current:
                offset = token_offset
        offset = max(0, min(offset, len(self.source)))
        line_start = self.source.rfind("\n", 0, offset) + 1
        return self.source.count("\n", 0, offset) + 1, offset - line_start + 1


_LEXER_POSITION = re.compile(r" at (\d+)$")


def _parse(source: str, *, expression: bool) -> nodes.Template:
    located = _Located(source, "variable" if expression else None)
    parser: Parser | None = None
    try:
        parser = located.parser()
        if expression:
            expr = parser.parse_expression()
            if not parser.stream.eos:
                parser.fail("unexpected text after the expression", parser.stream.current.lineno)
            tree = nodes.Template([nodes.Output([expr], lineno=1)], lineno=1)
        else:
            tree = parser.parse()
        tree.set_environment(_ENV)
    except jinja2.TemplateSyntaxError as exc:
        current = parser.stream.current if parser is not None else None
        line, column = located.position(current)
        if exc.lineno and line != exc.lineno:
            line, column = exc.lineno, 1
        raise TemplateSyntaxError(
            source, exc.message or "invalid template", lineno=line, column=column
        ) from exc
    except RecursionError as exc:
        raise TemplateSyntaxError(
            source, "template is nested too deeply", lineno=1, column=1
        ) from exc
    return tree


def _plain_parse(source: str, *, expression: bool) -> nodes.Template:
    """Parse without position tracking; on any syntax error, re-parse to locate it."""
    try:
        if not expression:
            return _ENV.parse(source)
        parser = Parser(_ENV, source, state="variable")
        expr = parser.parse_expression()
        if parser.stream.eos:
            tree = nodes.Template([nodes.Output([expr], lineno=1)], lineno=1)
            tree.set_environment(_ENV)
            return tree
    except (jinja2.TemplateSyntaxError, RecursionError):
        pass
    return _parse(source, expression=expression)


def _subscript(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def references(source: str, *, expression: bool = False) -> list[Reference]:
    """The variables a template (or, with `expression`, a bare expression) reads, in order.

    ``steps.a.output`` gives ``Reference("steps", "a")``, ``params['host']`` gives
    ``Reference("params", "host")`` and ``item`` gives ``Reference("item", None)``.
    Names bound by ``{% set %}``, ``{% for %}`` or macro arguments are not references.
    Raises `TemplateSyntaxError` when the text is not valid Jinja (including an
    unknown filter or test).
    """
    return list(_references(source, expression))


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH = (
    rf"(?P<root>{_NAME})(?P<first>\.{_NAME}|\[\s*(?:'[^'\\\n]*'|\"[^\"\\\n]*\"|\d+)\s*\])?"
    rf"(?:\.{_NAME}|\[\s*(?:'[^'\\\n]*'|\"[^\"\\\n]*\"|\d+)\s*\])*"
)
_SIMPLE_OUTPUT = re.compile(r"\{\{-?\s*" + _PATH + r"\s*-?\}\}")
_SIMPLE_EXPRESSION = re.compile(r"\s*" + _PATH + r"\s*")
_NOT_NAMES = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "elif", "true", "false", "none"}
    | {"True", "False", "None"}
)


def _simple_reference(match: re.Match[str]) -> Reference | None:
    root = match.group("root")
    if root in _NOT_NAMES:
        return None
    first = match.group("first")
    if first is None:
        return Reference(root, None)
    if first.startswith("."):
        return Reference(root, first[1:])
    key = first[1:-1].strip()
    return Reference(root, key[1:-1] if key[:1] in ("'", '"') else None)


def _simple_references(source: str, expression: bool) -> tuple[Reference, ...] | None:
    """References of the common case (only ``{{ a.b['c'] }}`` paths) without parsing."""
    if expression:
        match = _SIMPLE_EXPRESSION.fullmatch(source)
        ref = _simple_reference(match) if match else None
        return (ref,) if ref is not None else None
    found: dict[Reference, None] = {}
    position = 0
    for match in _SIMPLE_OUTPUT.finditer(source):
        gap = source[position : match.start()]
        ref = _simple_reference(match)
        if ref is None or any(mark in gap for mark in ("{{", "{%", "{#")):
            return None
        found.setdefault(ref)
        position = match.end()
    tail = source[position:]
    if any(mark in tail for mark in ("{{", "{%", "{#")):
        return None
    return tuple(found)


def _unknown_callable(source: str, node: nodes.Filter | nodes.Test) -> TemplateSyntaxError:
    kind = "filter" if isinstance(node, nodes.Filter) else "test"
    lineno = node.lineno or 1
    lines = source.split("\n")
    line = lines[lineno - 1] if lineno <= len(lines) else ""
    return TemplateSyntaxError(
        source,
        f"no {kind} named '{node.name}'",
        lineno=lineno,
        column=max(line.find(node.name) + 1, 1),
    )


def _binds(node: nodes.Node) -> Iterator[str]:
    """Names a node binds: set and loop targets, macro and call arguments, imports."""
    if isinstance(node, nodes.Name) and node.ctx in ("store", "param"):
        yield node.name
    elif isinstance(node, nodes.For):
        yield "loop"
    elif isinstance(node, nodes.Macro | nodes.CallBlock):
        if isinstance(node, nodes.Macro):
            yield node.name
        yield from ("caller", "varargs", "kwargs")
    elif isinstance(node, nodes.Import):
        yield node.target
    elif isinstance(node, nodes.FromImport):
        yield from (n if isinstance(n, str) else n[1] for n in node.names)


@lru_cache(maxsize=4096)
def _references(source: str, expression: bool) -> tuple[Reference, ...]:
    simple = _simple_references(source, expression)
    if simple is not None:
        return simple
    tree = _plain_parse(source, expression=expression)
    # Deliberately simple scoping: a name bound anywhere counts as bound everywhere, so
    # a template reading a name before setting it is not reported (it still fails to render).
    bound: set[str] = set()
    candidates: dict[Reference, None] = {}
    covered: set[int] = set()
    stack: list[nodes.Node] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            target = node.node
            if isinstance(target, nodes.Name) and target.ctx == "load":
                candidates.setdefault(Reference(target.name, _subscript(node)))
                covered.add(id(target))
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            if id(node) not in covered:
                candidates.setdefault(Reference(node.name, None))
        elif isinstance(node, nodes.Filter | nodes.Test) and node.name not in (
            _ENV.filters if isinstance(node, nodes.Filter) else _ENV.tests
        ):
            # Jinja only finds unknown filters and tests when compiling: find them now.
            raise _unknown_callable(source, node)
        bound.update(_binds(node))
        stack.extend(reversed(list(node.iter_child_nodes())))
    return tuple(ref for ref in candidates if ref.root not in bound)
