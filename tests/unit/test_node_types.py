"""One list of node types (`conveyor.shared.nodetypes`): the translator's schemas, the
executor's runners, its inline and orchestrated sets and the documentation hold exactly it."""

from __future__ import annotations

from pathlib import Path

from conveyor.executor import inline, orchestrate
from conveyor.executor.runners import RUNNABLE_TYPES
from conveyor.shared import nodetypes as nt
from conveyor.translator.domain.nodetypes import NODE_TYPES as SCHEMAS

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflow-format.md"


def test_the_translator_has_a_schema_for_exactly_the_registered_types() -> None:
    assert set(SCHEMAS) == nt.names()


def test_the_executor_runs_or_coordinates_every_registered_type_once() -> None:
    run_by_a_runner = nt.names(nt.Execution.INLINE) | nt.names(nt.Execution.WORKER)
    assert set(RUNNABLE_TYPES) == run_by_a_runner
    assert nt.names(nt.Execution.ORCHESTRATED) == orchestrate.ORCHESTRATED
    assert not orchestrate.ORCHESTRATED & set(RUNNABLE_TYPES)
    assert set(RUNNABLE_TYPES) >= inline.INLINE_TYPES


def test_waiting_types_are_orchestrated() -> None:
    assert {nt.APPROVAL, nt.SUBWORKFLOW} == nt.WAITING
    assert nt.names(nt.Execution.ORCHESTRATED) >= nt.WAITING


def _doc_row(name: str) -> str:
    family, _, kind = name.partition(".")
    for line in DOC.read_text().splitlines():
        head = line.split("|")[1] if line.startswith("| `") else ""
        if f"`{name}`" in head or (f"`{family}." in head and f"`.{kind}`" in head):
            return line
    raise AssertionError(f"docs/workflow-format.md has no row for {name}")


def test_the_documentation_lists_every_type_with_its_outputs() -> None:
    for node_type in nt.NODE_TYPES.values():
        row = _doc_row(node_type.name)
        outputs = row.split("|")[3]
        if "as command" in outputs:
            outputs = _doc_row(nt.COMMAND).split("|")[3]
        missing = [o for o in node_type.outputs if f"`{o}`" not in outputs]
        assert not missing, f"{node_type.name}: outputs {missing} not documented"


def test_error_categories_are_the_contract_enum() -> None:
    from conveyor.executor.v1 import run_pb2
    from conveyor.shared.categories import DEFAULT_RETRY_ON, ErrorCategory
    from conveyor.translator.domain.options import CATEGORIES

    contract = [
        value.name.removeprefix("ERROR_CATEGORY_")
        for value in run_pb2.ErrorCategory.DESCRIPTOR.values
        if value.number != run_pb2.ERROR_CATEGORY_UNSPECIFIED
    ]
    assert [c.value for c in ErrorCategory] == contract
    assert list(CATEGORIES) == contract
    assert set(DEFAULT_RETRY_ON) == set(contract) - {"TEMPLATE", "REJECTED", "CANCELLED"}


def test_run_and_step_states_are_the_contract_enums() -> None:
    from conveyor.executor.v1 import run_pb2
    from conveyor.kernel.states import TERMINAL_RUN_STATES, RunState, StepState

    def names(enum: object, prefix: str) -> list[str]:
        values = enum.DESCRIPTOR.values  # type: ignore[attr-defined]
        return [v.name.removeprefix(prefix) for v in values if v.number != 0]

    assert [s.value for s in RunState] == names(run_pb2.RunState, "RUN_STATE_")
    assert [s.value for s in StepState] == names(run_pb2.StepState, "STEP_STATE_")
    assert {"SUCCEEDED", "FAILED", "CANCELLED"} == TERMINAL_RUN_STATES
