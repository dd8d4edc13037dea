"""The translator's domain: parse, validate and compile conveyor/v1 workflow documents.

Pure Python with no I/O; the gRPC servicer and the store build on it.
"""

from __future__ import annotations

from conveyor.shared.diagnostics import CODES, Diagnostic
from conveyor.shared.limits import Limits
from conveyor.shared.parameters import validate_parameters
from conveyor.translator.domain.compile import CompileResult, compile_workflow, validate_workflow
from conveyor.translator.domain.document import SCHEMA, parse_document

__all__ = [
    "CODES",
    "SCHEMA",
    "CompileResult",
    "Diagnostic",
    "Limits",
    "compile_workflow",
    "parse_document",
    "validate_parameters",
    "validate_workflow",
]
