"""The translator's domain: parse, validate and compile conveyor/v1 workflow documents.

Pure Python with no I/O; the gRPC servicer and the store build on it.
"""

from __future__ import annotations

from conveyor.translator.domain.compile import CompileResult, compile_workflow, validate_workflow
from conveyor.translator.domain.diagnostics import CODES, Diagnostic
from conveyor.translator.domain.document import SCHEMA, parse_document
from conveyor.translator.domain.limits import Limits
from conveyor.translator.domain.parameters import validate_parameters

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
