"""Types every step runner shares: the context it is given, the outcome it returns.

Also home to the helpers that make runners behave alike: rendering a field of a
node's ``data`` with errors that name the node, the field and the expression,
and masking secret values out of everything a step reports.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.executor.egress import EgressPolicy
from conveyor.executor.runners.rendered import note
from conveyor.kernel.templating import (
    DEFAULT_MAX_OUTPUT,
    DEFAULT_MAX_S,
    DEFAULT_MAX_STEPS,
    Piece,
    TemplateError,
    evaluate,
    render_expression_text,
    render_string,
    render_value,
    template_pieces,
)
from conveyor.shared.categories import ErrorCategory as ErrorCategory

MASK = "***"


class ArtifactWriter(Protocol):
    """An artifact being written while its bytes arrive."""

    def write(self, data: bytes) -> None:
        """Append bytes (may block while the store catches up); OSError when it failed."""
        ...

    def close(self) -> dict[str, Any]:
        """Finish; the artifact record (``name``, ``uri``, ``size``, ``sha256``, …)."""
        ...

    def abort(self) -> None:
        """Give up; nothing is kept."""
        ...


class ArtifactSink(Protocol):
    """Where output too large to keep inline is stored."""

    def save(
        self, run_id: str, node_id: str, attempt: int, name: str, data_iter: Iterable[bytes]
    ) -> str:
        """Store the bytes of `data_iter` as artifact `name` of one attempt; return its URI."""
        ...

    def open(
        self, run_id: str, node_id: str, attempt: int, name: str, *, kind: str = ""
    ) -> ArtifactWriter:
        """Start artifact `name` of one attempt, written as its bytes arrive."""
        ...


def _never_cancelled() -> bool:
    return False


@dataclass(frozen=True)
class StepUser:
    """The unprivileged user (and group) a step's processes run as."""

    name: str
    uid: int
    gid: int


@dataclass
class StepContext:
    """Everything a runner needs besides the node: identity, template scope and hooks."""

    run_id: str
    node_id: str
    attempt: int
    scope: Mapping[str, Any]
    artifacts: ArtifactSink
    inline_output_cap: int = 64 * 1024
    default_timeout_s: float | None = 3600.0
    is_cancelled: Callable[[], bool] = _never_cancelled
    on_output: Callable[[str, str], None] | None = None
    secrets_to_mask: Sequence[str] = ()
    #: Template budget: seconds (also bounded by the node's timeout), characters, steps.
    template_max_s: float = DEFAULT_MAX_S
    template_max_output: int = DEFAULT_MAX_OUTPUT
    template_max_steps: int = DEFAULT_MAX_STEPS
    #: Where action.http and action.notify may connect (default: the default denials only).
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    #: Where each attempt's working directory is made (None: a folder in the temp dir).
    work_root: str | None = None
    # At most this many declared files (`data.artifacts`) are uploaded per attempt.
    max_declared_files: int = 1000
    #: Keep the working directory of a failed attempt (for debugging).
    keep_failed_workdirs: bool = False
    #: The user steps run as (None: the worker's own user).
    step_user: StepUser | None = None
    #: When execution of the attempt began (monotonic); set by `execute`.
    started: float | None = None

    def remaining(self, timeout_s: float | None) -> float | None:
        """What is left of `timeout_s` once the time spent so far (rendering) is counted."""
        if timeout_s is None or self.started is None:
            return timeout_s
        return max(0.0, timeout_s - (time.monotonic() - self.started))


@dataclass
class ResourceUsage:
    """What a step's process consumed, from the kernel's accounting of that process."""

    wall_s: float
    cpu_user_s: float
    cpu_system_s: float
    max_rss_kb: int


@dataclass
class StepOutcome:
    """The result of executing one node once; the worker records it."""

    succeeded: bool
    outputs: dict[str, Any]
    error_category: ErrorCategory | None = None
    error_message: str | None = None
    usage: ResourceUsage | None = None
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    handle: str | None = None
    #: The node's data as rendered (JSON text, masked, bounded; see `runners.rendered`).
    rendered_inputs: str | None = None


class StepError(Exception):
    """Ends a step as failed; raised inside runners and turned into a `StepOutcome`."""

    def __init__(
        self,
        category: ErrorCategory,
        message: str,
        *,
        outputs: dict[str, Any] | None = None,
        usage: ResourceUsage | None = None,
        artifacts: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.outputs = outputs or {}
        self.usage = usage
        self.artifacts = artifacts or []

    def outcome(self) -> StepOutcome:
        """The failed outcome this failure stands for."""
        return StepOutcome(
            succeeded=False,
            outputs=self.outputs,
            error_category=self.category,
            error_message=self.message,
            usage=self.usage,
            artifacts=self.artifacts,
        )


#: Secrets shorter than this are masked only as they are, not in derived forms: the
#: derived forms of a very short value would match ordinary text.
MIN_DERIVED_LENGTH = 4
# A base64 fragment shorter than this is too likely to occur by chance.
_MIN_B64_FRAGMENT = 6


def _base64_fragments(secret: bytes) -> set[str]:
    """The base64 text of `secret` at each of the three byte alignments in a longer value.

    Only the characters that depend on the secret's bytes alone are kept, so the
    fragment appears in the encoding of any text that contains the secret.
    """
    found: set[str] = set()
    for offset in range(3):
        total = offset + len(secret)
        start = (8 * offset + 5) // 6
        end = (8 * total) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * offset + secret).decode()
            fragment = text[start:end]
            if len(fragment) >= _MIN_B64_FRAGMENT:
                found.add(fragment)
                if offset == 0:
                    found.add(text)  # the whole encoding, padding included
    return found


def derived_forms(secret: str) -> set[str]:
    """The forms of a secret that masking also replaces (see docs/workflow-format.md)."""
    forms = {secret}
    if len(secret) < MIN_DERIVED_LENGTH:
        return forms
    raw = secret.encode()
    forms |= {secret.upper(), secret.lower(), secret[::-1]}
    forms |= {
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),  # "/" kept, as Jinja's urlencode does
        urllib.parse.quote_plus(secret),
    }
    forms |= {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms.add(raw.hex())
    forms |= _base64_fragments(raw)
    return {f for f in forms if f}


def _trie(words: Iterable[str]) -> str:
    """One regular expression matching any of `words`, the longest first, shaped as a
    trie so that matching does not try every word at every position."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(root)


@functools.lru_cache(maxsize=32)
def _patterns(
    secrets: frozenset[str],
) -> tuple[list[bytes], re.Pattern[str] | None, re.Pattern[bytes] | None]:
    """The byte forms and the text and bytes patterns for a set of secrets (cached: a
    worker's secrets do not change, and building the patterns is the costly part)."""
    forms: set[str] = set()
    for value in secrets:
        forms |= derived_forms(value)
    forms = {f for f in forms if f.strip("*")}
    if not forms:
        return [], None, None
    # Longest first, so a secret containing a shorter one is masked whole.
    ordered = sorted(forms, key=lambda f: (-len(f), f))
    source = _trie(sorted({f.lower() for f in forms}))
    return (
        [f.encode() for f in ordered],
        re.compile(source, re.IGNORECASE),
        re.compile(source.encode(), re.IGNORECASE),
    )


class Masker:
    """Replaces every secret value by ``***`` in text, bytes and nested outputs.

    Besides the value itself: the value in any letter case, reversed, URL-encoded,
    JSON-escaped, as hex, and base64 (standard and URL-safe) at any alignment.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        # A secret made only of asterisks would match the mask itself and
        # grow it on every pass, so such values are not masked.
        values = frozenset(s for s in secrets if s and s.strip("*"))
        self.secret_bytes, self._text, self._bytes = _patterns(values)

    @property
    def active(self) -> bool:
        """Whether there is anything to mask."""
        return self._text is not None

    @property
    def bytes_pattern(self) -> re.Pattern[bytes] | None:
        """The pattern matching any secret's UTF-8 bytes, or None without secrets."""
        return self._bytes

    def text(self, value: str) -> str:
        """`value` with every secret replaced by the mask."""
        return value if self._text is None else self._text.sub(MASK, value)

    def value(self, value: Any) -> Any:
        """Mask every string inside dicts and lists (keys included)."""
        if self._text is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


def _template_failure(node_id: str, path: str, exc: TemplateError) -> StepError:
    return StepError(
        ErrorCategory.TEMPLATE, f"node {node_id!r} field {path}: {exc.expression}: {exc.message}"
    )


def invalid_field(node_id: str, path: str, problem: str) -> StepError:
    """The failure for a field whose (rendered) value a runner cannot use."""
    return StepError(ErrorCategory.INTERNAL, f"node {node_id!r} field {path}: {problem}")


class Renderer:
    """Renders fields of one node's ``data`` in the step's scope."""

    def __init__(self, node_id: str, data: Mapping[str, Any], scope: Mapping[str, Any]) -> None:
        self.node_id = node_id
        self.data = data
        self.scope = scope

    def text(self, value: Any, path: str, *, quote_values: bool = False) -> str:
        """Render a scalar field to text; non-strings (numbers, booleans) become their text."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        if not isinstance(value, str):
            raise invalid_field(self.node_id, path, f"expected a string, got {_kind(value)}")
        try:
            rendered = render_string(value, self.scope, quote_values=quote_values)
        except TemplateError as exc:
            raise _template_failure(self.node_id, path, exc) from exc
        note(path, rendered)
        return rendered

    def pieces(self, value: str, path: str) -> tuple[tuple[Piece, ...], list[str]]:
        """Split `value` into static text and expressions and render each expression."""
        try:
            pieces = template_pieces(value)
            values = [render_expression_text(p.text, self.scope) for p in pieces if p.expression]
        except TemplateError as exc:
            raise _template_failure(self.node_id, path, exc) from exc
        rest = iter(values)
        note(path, "".join(next(rest) if p.expression else p.text for p in pieces))
        return pieces, values

    def template_failure(self, path: str, expression: str, message: str) -> StepError:
        """A TEMPLATE failure of field `path`."""
        return _template_failure(self.node_id, path, TemplateError(expression, message))

    def native(self, value: Any, path: str) -> Any:
        """Render every string inside `value`; a lone ``{{ expr }}`` keeps its native type."""
        rendered = self._native(value, path)
        note(path, rendered)
        return rendered

    def _native(self, value: Any, path: str) -> Any:
        if isinstance(value, Mapping):
            return {k: self._native(v, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._native(v, f"{path}[{i}]") for i, v in enumerate(value)]
        try:
            return render_value(value, self.scope)
        except TemplateError as exc:
            raise _template_failure(self.node_id, path, exc) from exc

    def expression(self, value: Any, path: str) -> Any:
        """Evaluate a bare expression field; a field written as ``{{ expr }}`` also works."""
        if not isinstance(value, str) or not value.strip():
            raise invalid_field(self.node_id, path, "expected an expression")
        try:
            if "{{" in value or "{%" in value:
                result = render_value(value, self.scope)
            else:
                result = evaluate(value, self.scope)
        except TemplateError as exc:
            raise _template_failure(self.node_id, path, exc) from exc
        note(path, result)
        return result

    def field_text(self, name: str, *, quote_values: bool = False) -> str | None:
        """Render ``data.<name>`` to text, or None when the field is absent or null."""
        value = self.data.get(name)
        if value is None:
            return None
        return self.text(value, f"data.{name}", quote_values=quote_values)

    def field_map(self, name: str) -> dict[str, str]:
        """Render ``data.<name>``, a map of strings (headers, env, query); absent gives {}."""
        raw = self.data.get(name)
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise invalid_field(self.node_id, f"data.{name}", f"expected a map, got {_kind(raw)}")
        result: dict[str, str] = {}
        for key, value in raw.items():
            path = f"data.{name}.{key}"
            rendered = self._native(value, path)
            result[str(key)] = as_text(rendered)
        note(f"data.{name}", result)
        return result


def as_text(value: Any) -> str:
    """The text form of a rendered value: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
