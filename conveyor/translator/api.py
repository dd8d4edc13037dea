"""TranslatorService: a thin grpc.aio servicer over the translator domain and store."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from typing import Any

import grpc

from conveyor.kernel.db import Database
from conveyor.kernel.errors import InvalidArgument, Violation
from conveyor.kernel.grpcserver import ServiceRegistration, map_errors
from conveyor.kernel.paging import page_size
from conveyor.kernel.protoconv import json_text, timestamp
from conveyor.translator import store
from conveyor.translator.domain import CompileResult, Diagnostic, compile_workflow
from conveyor.translator.v1 import (
    translator_pb2,
    translator_service_pb2,
    translator_service_pb2_grpc,
)
from conveyor.translator.wire import plan_to_pb

SERVICE_NAME = translator_service_pb2.DESCRIPTOR.services_by_name["TranslatorService"].full_name
_SEVERITY = {
    "error": translator_pb2.SEVERITY_ERROR,
    "warning": translator_pb2.SEVERITY_WARNING,
}


def diagnostic_pb(d: Diagnostic) -> translator_pb2.Diagnostic:
    """Domain diagnostic -> proto."""
    return translator_pb2.Diagnostic(
        code=d.code,
        severity=_SEVERITY.get(d.severity, translator_pb2.SEVERITY_ERROR),
        message=d.message,
        path=d.path,
        node_id=d.node_id or "",
        edge_id=d.edge_id or "",
        line=d.line or 0,
        column=d.column or 0,
    )


def invalid_workflow(result: CompileResult) -> InvalidArgument:
    """The INVALID_ARGUMENT error carrying every error diagnostic as a field violation."""
    errors = [d for d in result.diagnostics if d.severity == "error"]
    return InvalidArgument(
        f"workflow is invalid: {len(errors)} error(s); first: {errors[0].message}",
        reason="INVALID_WORKFLOW",
        metadata={"errors": str(len(errors))},
        violations=[
            Violation(field=d.path or "/", description=d.message, reason=d.code) for d in errors
        ],
    )


def _source(request: Any) -> str:
    which = request.WhichOneof("source")
    if which == "workflow_json":
        return str(request.workflow_json)
    raise InvalidArgument(
        "a workflow is required",
        violations=[Violation("workflow", "set workflow or workflow_json", "REQUIRED")],
    )


def job_pb(rec: store.JobRecord, *, full: bool) -> translator_pb2.Job:
    """Store record -> proto; definitions and plans only when full."""
    job = translator_pb2.Job(
        job_id=rec.id,
        name=rec.name,
        description=rec.description,
        version=rec.version,
        create_time=timestamp(rec.created_at),
        update_time=timestamp(rec.updated_at),
        node_count=rec.node_count,
    )
    if rec.plan is not None:
        if full and rec.definition is not None:
            job.MergeFrom(body_pb(rec.definition, rec.plan))
        else:
            job.parameters_schema_json = json_text(rec.plan.get("parameters") or {})
    return job


def body_pb(definition: dict[str, Any], plan: dict[str, Any]) -> translator_pb2.Job:
    """The part of a Job message that one version fixes: definition, plan, parameters schema."""
    return translator_pb2.Job(
        definition_json=json_text(definition),
        parameters_schema_json=json_text(plan.get("parameters") or {}),
        plan=plan_to_pb(plan),
    )


class VersionBodies:
    """Recently served versions' `body_pb`, by version id, within a byte budget.

    A saved version never changes, so GetJob (the executor's and the scheduler's every
    StartRun) reads only the job's row and the version's id, and converts a definition and
    plan once per process instead of on every call.
    """

    def __init__(self, budget_bytes: int = 64 << 20) -> None:
        self._budget = budget_bytes
        self._used = 0
        self._items: OrderedDict[str, tuple[translator_pb2.Job, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version_id: str) -> translator_pb2.Job | None:
        """The body of a version, if kept."""
        with self._lock:
            item = self._items.get(version_id)
            if item is None:
                return None
            self._items.move_to_end(version_id)
            return item[0]

    def put(self, version_id: str, body: translator_pb2.Job) -> None:
        """Keep a version's body, dropping the least recently used beyond the budget."""
        size = body.ByteSize()
        if size > self._budget // 4:
            return  # one huge plan would push out everything else
        with self._lock:
            if version_id in self._items:
                return
            self._items[version_id] = (body, size)
            self._used += size
            while self._used > self._budget:
                _, (_, dropped) = self._items.popitem(last=False)
                self._used -= dropped


class TranslatorServicer(translator_service_pb2_grpc.TranslatorServiceServicer):  # type: ignore[misc]
    """Validates and compiles workflows and keeps jobs; DB work runs in a thread."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._bodies = VersionBodies()

    @map_errors
    async def ValidateWorkflow(  # noqa: N802
        self,
        request: translator_service_pb2.ValidateWorkflowRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> translator_service_pb2.ValidateWorkflowResponse:
        """See the proto."""
        result = await asyncio.to_thread(compile_workflow, _source(request))
        return translator_service_pb2.ValidateWorkflowResponse(
            valid=result.ok, diagnostics=[diagnostic_pb(d) for d in result.diagnostics]
        )

    @map_errors
    async def TranslateWorkflow(  # noqa: N802
        self,
        request: translator_service_pb2.TranslateWorkflowRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> translator_service_pb2.TranslateWorkflowResponse:
        """See the proto."""
        result = await asyncio.to_thread(compile_workflow, _source(request))
        if result.plan is None:
            raise invalid_workflow(result)
        return translator_service_pb2.TranslateWorkflowResponse(
            plan=plan_to_pb(result.plan),
            diagnostics=[diagnostic_pb(d) for d in result.diagnostics],
        )

    @map_errors
    async def CreateJob(  # noqa: N802
        self,
        request: translator_service_pb2.CreateJobRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> translator_service_pb2.CreateJobResponse:
        """See the proto."""
        source = _source(request)

        def work() -> tuple[store.JobRecord, CompileResult]:
            result = compile_workflow(source)
            if result.plan is None:
                raise invalid_workflow(result)
            definition = _parsed(source)
            with self._db.transaction() as session:
                rec = store.save_job(
                    session,
                    definition=definition,
                    plan=result.plan,
                    update_existing=request.update_existing,
                    request_id=request.request_id or None,
                )
            return rec, result

        rec, result = await asyncio.to_thread(work)
        return translator_service_pb2.CreateJobResponse(
            job=job_pb(rec, full=True),
            version_created=rec.created,
            diagnostics=[diagnostic_pb(d) for d in result.diagnostics],
        )

    @map_errors
    async def GetJob(  # noqa: N802
        self,
        request: translator_service_pb2.GetJobRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> translator_service_pb2.GetJobResponse:
        """See the proto."""
        if not request.job_id:
            raise InvalidArgument(
                "job_id is required", violations=[Violation("job_id", "required", "REQUIRED")]
            )

        def work() -> translator_pb2.Job:
            # Two Core reads on a plain connection (no ORM session): GetJob runs for every
            # StartRun and every scheduled fire.
            with self._db.read_engine.connect() as conn:
                head = store.find_job(conn, request.job_id, version=request.version)
                body = self._bodies.get(head.version_id)
                if body is None:
                    body = body_pb(*store.job_body(conn, head.version_id))
                    self._bodies.put(head.version_id, body)
            job = job_pb(head, full=False)
            job.MergeFrom(body)
            return job

        return translator_service_pb2.GetJobResponse(job=await asyncio.to_thread(work))

    @map_errors
    async def ListJobs(  # noqa: N802
        self,
        request: translator_service_pb2.ListJobsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> translator_service_pb2.ListJobsResponse:
        """See the proto."""
        size = page_size(request.page_size)

        def work() -> tuple[list[store.JobRecord], str]:
            with self._db.read() as session:
                return store.list_jobs(
                    session,
                    page_size=size,
                    page_token=request.page_token,
                    name_prefix=request.name_prefix,
                )

        jobs, token = await asyncio.to_thread(work)
        return translator_service_pb2.ListJobsResponse(
            jobs=[job_pb(j, full=False) for j in jobs], next_page_token=token
        )

    @map_errors
    async def DeleteJob(  # noqa: N802
        self,
        request: translator_service_pb2.DeleteJobRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> translator_service_pb2.DeleteJobResponse:
        """See the proto."""

        def work() -> None:
            with self._db.transaction() as session:
                store.delete_job(session, request.job_id)

        await asyncio.to_thread(work)
        return translator_service_pb2.DeleteJobResponse()


def _parsed(text: str) -> dict[str, Any]:
    import json

    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def registration(db: Database) -> ServiceRegistration:
    """The translator service for `start_server`."""
    servicer = TranslatorServicer(db)
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: translator_service_pb2_grpc.add_TranslatorServiceServicer_to_server(
            servicer, server
        ),
    )
