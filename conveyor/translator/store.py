"""Tables `jobs` and `job_versions`, and the functions that read and write them."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    or_,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Session, mapped_column

from conveyor.kernel.db import Base
from conveyor.kernel.errors import AlreadyExists, NotFound
from conveyor.kernel.ids import as_utc, new_id, utcnow
from conveyor.kernel.paging import decode_token, encode_token


class JobRow(Base):
    """A named workflow (table jobs)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    latest_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JobVersionRow(Base):
    """One saved definition of a job and its compiled plan (table job_versions)."""

    __tablename__ = "job_versions"
    __table_args__ = (UniqueConstraint("job_id", "version", name="uq_job_versions_job_version"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    node_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    request_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class JobRecord:
    """A job joined with one of its versions."""

    id: str
    name: str
    description: str
    version: int
    created_at: datetime
    updated_at: datetime
    definition: dict[str, Any] | None
    plan: dict[str, Any] | None
    node_count: int = 0
    created: bool = False  # this call saved a new version
    #: The version row's id: a version's definition and plan never change once saved.
    version_id: str = ""


class _JobHead(Protocol):
    """A job's own columns: a `JobRow`, or a row of `_FIND_JOB`."""

    id: str
    name: str
    description: str
    latest_version: int
    created_at: datetime
    updated_at: datetime


def _record(
    job: _JobHead, version: JobVersionRow | None, *, node_count: int = 0, created: bool = False
) -> JobRecord:
    return JobRecord(
        id=job.id,
        name=job.name,
        description=job.description,
        version=version.version if version else job.latest_version,
        created_at=as_utc(job.created_at) or job.created_at,
        updated_at=as_utc(job.updated_at) or job.updated_at,
        definition=version.definition if version else None,
        plan=version.plan if version else None,
        node_count=version.node_count if version else node_count,
        created=created,
        version_id=version.id if version else "",
    )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def save_job(
    session: Session,
    *,
    definition: dict[str, Any],
    plan: dict[str, Any],
    update_existing: bool,
    request_id: str | None,
) -> JobRecord:
    """Insert a job (version 1) or, when allowed, a new version of the job with that name.

    A document equal to the job's latest version (same JSON, key order aside) saves nothing
    and returns that version with ``created`` false, so re-running an unchanged file does not
    pile up versions.
    """
    if request_id:
        prior = session.scalar(select(JobVersionRow).where(JobVersionRow.request_id == request_id))
        if prior is not None:
            job = session.get(JobRow, prior.job_id)
            if job is not None:
                return _record(job, prior)
    name = str(plan["name"])
    now = utcnow()
    job = session.scalar(select(JobRow).where(JobRow.name == name).with_for_update())
    if job is None:
        job = JobRow(
            id=new_id(),
            name=name,
            description=str(plan.get("description") or ""),
            latest_version=1,
            created_at=now,
            updated_at=now,
        )
        session.add(job)
    elif not update_existing:
        raise AlreadyExists(f"a job named {name!r} exists", metadata={"job_id": job.id})
    else:
        latest = session.scalar(
            select(JobVersionRow).where(
                JobVersionRow.job_id == job.id, JobVersionRow.version == job.latest_version
            )
        )
        if latest is not None and _canonical(latest.definition) == _canonical(definition):
            return _record(job, latest)
        job.latest_version += 1
        job.description = str(plan.get("description") or "")
        job.updated_at = now
    version = JobVersionRow(
        id=new_id(),
        job_id=job.id,
        version=job.latest_version,
        definition=definition,
        plan=plan,
        node_count=len(plan.get("nodes") or ()),
        request_id=request_id or None,
        created_at=now,
    )
    session.add(version)
    session.flush()
    return _record(job, version, created=True)


def _find_job(session: Session, job_ref: str) -> JobRow:
    job = session.get(JobRow, job_ref) or session.scalar(
        select(JobRow).where(JobRow.name == job_ref)
    )
    if job is None:
        raise NotFound(f"job {job_ref!r} not found", metadata={"job_id": job_ref})
    return job


# GetJob's two reads, built once with bound parameters (a statement built anew costs its
# construction and cache key on every call). `ref` is a job id or name, `version` 0 for the
# latest; an id match wins over a name match.
_VERSION = bindparam("version", type_=Integer)
_WANTED = case((_VERSION > 0, _VERSION), else_=JobRow.latest_version)
_FIND_JOB = (
    select(
        JobRow.id,
        JobRow.name,
        JobRow.description,
        JobRow.latest_version,
        JobRow.created_at,
        JobRow.updated_at,
        JobVersionRow.id.label("version_id"),
        JobVersionRow.version,
        JobVersionRow.node_count,
    )
    .outerjoin(
        JobVersionRow, (JobVersionRow.job_id == JobRow.id) & (JobVersionRow.version == _WANTED)
    )
    .where(or_(JobRow.id == bindparam("ref"), JobRow.name == bindparam("ref")))
    .order_by(case((JobRow.id == bindparam("ref"), 0), else_=1))
    .limit(1)
)
_JOB_BODY = select(JobVersionRow.definition, JobVersionRow.plan).where(
    JobVersionRow.id == bindparam("version_id")
)


def find_job(reader: Session | Connection, job_ref: str, *, version: int = 0) -> JobRecord:
    """A job by id or name with its latest (or given) version, in one query (an id match wins
    over a name match), without the version's definition and plan (`definition` and `plan`
    are None; `version_id` names them for `job_body`): the columns that change stay small.
    `reader` is a session or a plain connection (GetJob's, without the ORM)."""
    found = reader.execute(_FIND_JOB, {"ref": job_ref, "version": version}).first()
    if found is None:
        raise NotFound(f"job {job_ref!r} not found", metadata={"job_id": job_ref})
    if found.version_id is None:
        number = version or found.latest_version
        raise NotFound(f"job {found.name!r} has no version {number}", metadata={"job_id": found.id})
    head = _record(found, None, node_count=found.node_count)
    return dataclasses.replace(head, version=found.version, version_id=found.version_id)


def job_body(
    reader: Session | Connection, version_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A version's (definition, plan); NotFound once the job was deleted."""
    found = reader.execute(_JOB_BODY, {"version_id": version_id}).first()
    if found is None:
        raise NotFound(f"job version {version_id!r} not found")
    return found[0], found[1]


def get_job(session: Session, job_ref: str, *, version: int = 0) -> JobRecord:
    """A job by id or name with its latest (or given) version, definition and plan included."""
    head = find_job(session, job_ref, version=version)
    definition, plan = job_body(session, head.version_id)
    return dataclasses.replace(head, definition=definition, plan=plan)


def list_jobs(
    session: Session, *, page_size: int, page_token: str, name_prefix: str
) -> tuple[list[JobRecord], str]:
    """Jobs ordered by name, without definitions; returns (page, next token)."""
    scope = ("jobs", name_prefix)
    after = decode_token(page_token, scope=scope)
    query = (
        select(JobRow, JobVersionRow.node_count)
        .outerjoin(
            JobVersionRow,
            (JobVersionRow.job_id == JobRow.id) & (JobVersionRow.version == JobRow.latest_version),
        )
        .order_by(JobRow.name)
        .limit(page_size + 1)
    )
    if after:
        query = query.where(JobRow.name > after)
    if name_prefix:
        query = query.where(JobRow.name.startswith(name_prefix, autoescape=True))
    rows = [(job, count) for job, count in session.execute(query)]
    next_token = (
        encode_token(rows[page_size - 1][0].name, scope=scope) if len(rows) > page_size else ""
    )
    return [_record(r, None, node_count=n or 0) for r, n in rows[:page_size]], next_token


def delete_job(session: Session, job_ref: str) -> None:
    """Delete a job and its versions."""
    job = _find_job(session, job_ref)
    for row in session.scalars(select(JobVersionRow).where(JobVersionRow.job_id == job.id)):
        session.delete(row)
    session.delete(job)
