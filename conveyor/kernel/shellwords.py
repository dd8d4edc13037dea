"""Putting template values into commands so that no value can change how they parse.

``shell: true``: each ``{{ expression }}`` is rendered to the value of an environment
variable (``CONVEYOR_TPL_1``, ``CONVEYOR_TPL_2``...) and replaced, in the command text
given to ``/bin/sh -c``, by a reference to that variable written for the quoting in
force at that position of the author's text:

- outside quotes (also inside ``$(...)``, backticks and ``${...}`` written outside
  quotes): ``"${CONVEYOR_TPL_n}"``;
- inside double quotes or an unquoted here-document: ``${CONVEYOR_TPL_n}``;
- inside single quotes: ``'"${CONVEYOR_TPL_n}"'`` (close, reference, reopen).

The shell expands a quoted variable reference to its value without parsing it again,
so quotes, ``;``, ``$(...)``, backticks or newlines in a value are plain characters.
Inside a quoted here-document (``<<'EOF'``) nothing expands, so a template there is
refused. Template statements (``{% ... %}``) are refused in shell commands.

Without a shell, `split_command` splits the command like ``shlex.split`` would, in one
pass over the author's text; a value is inserted into the word it stands in, whatever
characters it contains, so it never adds or removes arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from conveyor.kernel.templating import Piece

ENV_PREFIX = "CONVEYOR_TPL_"

_UNQUOTED = "U"  # top level, or inside $( ), backticks, ${ } outside double quotes
_SINGLE = "S"
_DOUBLE = "D"
_HEREDOC = "H"  # the body of an unquoted here-document: expands like double quotes
_QUOTED_HEREDOC = "Q"  # the body of a quoted here-document: nothing expands
_WORD_BREAK = " \t\n;&|()<>"


class ShellTemplateError(ValueError):
    """A template stands where no variable reference can carry its value."""


@dataclass
class _Frame:
    kind: str
    # What ends a nested unquoted frame: ")" for $( ), "`" for backticks, "}" for ${ }.
    closer: str = ""
    depth: int = 0


@dataclass
class _Heredoc:
    delimiter: str
    quoted: bool
    strip_tabs: bool


@dataclass
class ShellScanner:
    """Follows the quoting of POSIX sh over the author's static text, piece by piece."""

    stack: list[_Frame] = field(default_factory=lambda: [_Frame(_UNQUOTED)])
    pending: list[_Heredoc] = field(default_factory=list)
    heredoc: _Heredoc | None = None
    line: list[str] = field(default_factory=list)
    prev: str = "\n"
    escape: bool = False
    comment: bool = False

    @property
    def top(self) -> _Frame:
        """The innermost quoting frame."""
        return self.stack[-1]

    def reference(self, name: str) -> str:
        """The text that stands for variable `name` at the current position."""
        if self.escape:
            raise ShellTemplateError("a template directly after a backslash is ambiguous")
        if self.heredoc is not None:
            if self.heredoc.quoted and len(self.stack) == 1:
                raise ShellTemplateError(
                    "a template inside a quoted here-document (<<'EOF') is never expanded;"
                    " use an unquoted delimiter"
                )
            self.line.append("\0")  # the line is not the delimiter any more
        kind = self._effective()
        self.prev = "x"
        if kind == _SINGLE:
            return "'\"${" + name + "}\"'"
        if kind in (_DOUBLE, _HEREDOC):
            return "${" + name + "}"
        if self.comment:
            return name
        return '"${' + name + '}"'

    def _effective(self) -> str:
        for frame in reversed(self.stack):
            if frame.closer == "}":
                continue  # ${ ... } takes the quoting around it
            if frame.kind == _UNQUOTED and len(self.stack) == 1 and self.heredoc is not None:
                return _HEREDOC
            return frame.kind
        return _UNQUOTED

    def feed(self, text: str) -> None:
        """Advance over static text."""
        i = 0
        n = len(text)
        while i < n:
            i = self._step(text, i)

    def _step(self, text: str, i: int) -> int:
        c = text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        top = self.top
        if self.heredoc is not None and len(self.stack) == 1:
            return self._heredoc_step(text, i)
        if self.escape:
            self.escape = False
            self.prev = "x"
            return i + 1
        if self.comment:
            if c == "\n":
                self.comment = False
                self._newline()
            return i + 1
        if top.kind == _SINGLE:
            if c == "'":
                self.stack.pop()
            self.prev = c
            return i + 1
        if c == "\\":
            if top.kind == _DOUBLE and nxt not in ("$", "`", '"', "\\", "\n", ""):
                self.prev = c
                return i + 1
            self.escape = True
            return i + 1
        if c == "$" and nxt == "(":
            self.stack.append(_Frame(_UNQUOTED, ")", 1))
            self.prev = "("
            return i + 2
        if c == "$" and nxt == "{":
            self.stack.append(_Frame(_UNQUOTED, "}", 1))
            self.prev = "{"
            return i + 2
        if c == "`":
            if top.closer == "`":
                self.stack.pop()
            else:
                self.stack.append(_Frame(_UNQUOTED, "`"))
            self.prev = c
            return i + 1
        if top.kind == _DOUBLE:
            if c == '"':
                self.stack.pop()
            self.prev = c
            return i + 1
        # Unquoted text, at top level or nested.
        if c == "'":
            self.stack.append(_Frame(_SINGLE))
        elif c == '"':
            self.stack.append(_Frame(_DOUBLE))
        elif c == "#" and self.prev in _WORD_BREAK + "\n":
            self.comment = True
        elif top.closer == ")" and c == "(":
            top.depth += 1
        elif top.closer == ")" and c == ")":
            top.depth -= 1
            if top.depth == 0:
                self.stack.pop()
        elif top.closer == "}" and c == "{":
            top.depth += 1
        elif top.closer == "}" and c == "}":
            top.depth -= 1
            if top.depth == 0:
                self.stack.pop()
        elif c == "<" and nxt == "<" and len(self.stack) == 1:
            return self._heredoc_start(text, i + 2)
        elif c == "\n" and len(self.stack) == 1:
            self._newline()
        self.prev = c
        return i + 1

    def _heredoc_start(self, text: str, i: int) -> int:
        strip_tabs = i < len(text) and text[i] == "-"
        if strip_tabs:
            i += 1
        while i < len(text) and text[i] in " \t":
            i += 1
        word: list[str] = []
        quoted = False
        while i < len(text) and text[i] not in _WORD_BREAK:
            ch = text[i]
            if ch in "'\"":
                quoted = True
                end = text.find(ch, i + 1)
                end = len(text) if end < 0 else end
                word.append(text[i + 1 : end])
                i = end + 1
                continue
            if ch == "\\":
                quoted = True
                i += 1
                if i < len(text):
                    word.append(text[i])
                i += 1
                continue
            word.append(ch)
            i += 1
        if word:
            self.pending.append(_Heredoc("".join(word), quoted, strip_tabs))
        self.prev = "x"
        return i

    def _newline(self) -> None:
        if self.pending and self.heredoc is None:
            self.heredoc = self.pending.pop(0)
            self.line = []
            kind = _QUOTED_HEREDOC if self.heredoc.quoted else _UNQUOTED
            self.stack = [_Frame(kind)]

    def _heredoc_step(self, text: str, i: int) -> int:
        heredoc = self.heredoc
        assert heredoc is not None
        c = text[i]
        if c == "\n":
            line = "".join(self.line)
            if heredoc.strip_tabs:
                line = line.lstrip("\t")
            self.line = []
            if line == heredoc.delimiter:
                self.heredoc = None
                self.stack = [_Frame(_UNQUOTED)]
                self.prev = "\n"
                self._newline()
            return i + 1
        self.line.append(c)
        if heredoc.quoted:
            return i + 1
        if self.escape:
            self.escape = False
            return i + 1
        if c == "\\":
            self.escape = True
        elif c == "$" and i + 1 < len(text) and text[i + 1] == "(":
            # Command substitution in the body: its text is unquoted shell code.
            self.line.append("(")
            self.stack.append(_Frame(_UNQUOTED, ")", 1))
            return i + 2
        elif c == "`":
            self.stack.append(_Frame(_UNQUOTED, "`"))
        return i + 1


def shell_command(pieces: Sequence[Piece], values: Sequence[str]) -> tuple[str, dict[str, str]]:
    """The ``sh -c`` text for `pieces` and the environment carrying `values` (one per
    expression piece, in order)."""
    scanner = ShellScanner()
    out: list[str] = []
    env: dict[str, str] = {}
    index = 0
    for piece in pieces:
        if not piece.expression:
            scanner.feed(piece.text)
            out.append(piece.text)
            continue
        name = f"{ENV_PREFIX}{index + 1}"
        env[name] = values[index]
        out.append(scanner.reference(name))
        index += 1
    return "".join(out), env


class SplitError(ValueError):
    """The command text cannot be split into words (an unclosed quote, a lone backslash)."""


def split_command(pieces: Sequence[Piece], values: Sequence[str]) -> list[str]:
    """Split like ``shlex.split`` in one linear pass; each value joins its word verbatim.

    A value always makes (or joins) a word, so ``{{ x }}`` with an empty value is one
    empty argument, as it was when values were shell-quoted before splitting.
    """
    words: list[str] = []
    word: list[str] = []
    in_word = False
    quote = ""
    escape = False
    index = 0
    for piece in pieces:
        if piece.expression:
            if escape:
                raise SplitError("a template directly after a backslash is ambiguous")
            word.append(values[index])
            index += 1
            in_word = True
            continue
        for c in piece.text:
            if escape:
                if quote == '"' and c not in ('"', "\\"):
                    word.append("\\")
                word.append(c)
                escape = False
            elif quote == "'":
                if c == "'":
                    quote = ""
                else:
                    word.append(c)
            elif quote == '"':
                if c == '"':
                    quote = ""
                elif c == "\\":
                    escape = True
                else:
                    word.append(c)
            elif c in " \t\r\n":
                if in_word:
                    words.append("".join(word))
                    word = []
                    in_word = False
            elif c == "\\":
                escape = True
                in_word = True
            elif c in "'\"":
                quote = c
                in_word = True
            else:
                word.append(c)
                in_word = True
    if quote:
        raise SplitError("No closing quotation")
    if escape:
        raise SplitError("No escaped character")
    if in_word:
        words.append("".join(word))
    return words
