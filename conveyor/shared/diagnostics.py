"""Diagnostics: the stable, located problems the translator reports about a document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "CODES",
    "CYCLE",
    "DANGLING_EDGE",
    "DUPLICATE_NODE_ID",
    "ERROR",
    "INVALID_DOCUMENT",
    "INVALID_FIELD",
    "INVALID_HANDLE",
    "INVALID_PARAMETERS_SCHEMA",
    "LIMIT_EXCEEDED",
    "MISSING_FIELD",
    "NO_ENTRY_NODE",
    "TEMPLATE_SYNTAX",
    "UNKNOWN_NODE_TYPE",
    "UNKNOWN_REFERENCE",
    "UNREACHABLE_NODE",
    "WARNING",
    "Diagnostic",
    "Diagnostics",
    "pointer",
]

INVALID_DOCUMENT: Final = "INVALID_DOCUMENT"
MISSING_FIELD: Final = "MISSING_FIELD"
INVALID_FIELD: Final = "INVALID_FIELD"
UNKNOWN_NODE_TYPE: Final = "UNKNOWN_NODE_TYPE"
DUPLICATE_NODE_ID: Final = "DUPLICATE_NODE_ID"
DANGLING_EDGE: Final = "DANGLING_EDGE"
CYCLE: Final = "CYCLE"
NO_ENTRY_NODE: Final = "NO_ENTRY_NODE"
INVALID_HANDLE: Final = "INVALID_HANDLE"
TEMPLATE_SYNTAX: Final = "TEMPLATE_SYNTAX"
UNKNOWN_REFERENCE: Final = "UNKNOWN_REFERENCE"
INVALID_PARAMETERS_SCHEMA: Final = "INVALID_PARAMETERS_SCHEMA"
LIMIT_EXCEEDED: Final = "LIMIT_EXCEEDED"
UNREACHABLE_NODE: Final = "UNREACHABLE_NODE"

#: Every code the translator emits; the set is part of the public contract.
CODES: Final = frozenset(
    {
        INVALID_DOCUMENT,
        MISSING_FIELD,
        INVALID_FIELD,
        UNKNOWN_NODE_TYPE,
        DUPLICATE_NODE_ID,
        DANGLING_EDGE,
        CYCLE,
        NO_ENTRY_NODE,
        INVALID_HANDLE,
        TEMPLATE_SYNTAX,
        UNKNOWN_REFERENCE,
        INVALID_PARAMETERS_SCHEMA,
        LIMIT_EXCEEDED,
        UNREACHABLE_NODE,
    }
)

ERROR: Final = "error"
WARNING: Final = "warning"


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a document: a stable code, a readable message and where it is."""

    code: str
    message: str
    path: str
    severity: str = ERROR
    node_id: str | None = None
    edge_id: str | None = None
    line: int | None = None
    column: int | None = None


def pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON pointer from path segments: ``pointer("nodes", 3, "data")``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass
class Diagnostics:
    """An append-only list of diagnostics with helpers that keep call sites short."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(
        self,
        code: str,
        message: str,
        path: str,
        *,
        node_id: str | None = None,
        edge_id: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        """Record an error."""
        self.items.append(Diagnostic(code, message, path, ERROR, node_id, edge_id, line, column))

    def warning(self, code: str, message: str, path: str, *, node_id: str | None = None) -> None:
        """Record a warning; warnings do not stop compilation."""
        self.items.append(Diagnostic(code, message, path, WARNING, node_id))

    def extend(self, more: list[Diagnostic]) -> None:
        """Append diagnostics produced elsewhere."""
        self.items.extend(more)

    @property
    def has_errors(self) -> bool:
        """Whether any recorded diagnostic is an error."""
        return any(d.severity == ERROR for d in self.items)
