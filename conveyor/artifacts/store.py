"""Table `job_artifacts` and the functions that read and write it.

A row exists before its object and outlives it: it is inserted WRITING before the upload
starts, turned COMPLETE once the object is stored, and marked DELETING before the object is
removed, then deleted. So no COMPLETE row points at a missing object, and every object has a
row (a crash leaves a WRITING or DELETING row, which `stale_rows` finds for clean-up).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from conveyor.artifacts.domain import Kind, State
from conveyor.kernel.db import Base
from conveyor.kernel.errors import NotFound, Violation
from conveyor.kernel.ids import as_utc, new_id, utcnow
from conveyor.kernel.paging import bad_token, decode_token, encode_token


class ArtifactRow(Base):
    """One stored object of one step attempt (table job_artifacts)."""

    __tablename__ = "job_artifacts"
    __table_args__ = (Index("ix_job_artifacts_run_node", "run_id", "node_id", "attempt"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(200))
    node_id: Mapped[str] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(1024))
    content_type: Mapped[str] = mapped_column(String(200))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    backend: Mapped[str] = mapped_column(String(16))
    storage_key: Mapped[str] = mapped_column(String(512), unique=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


@dataclass(frozen=True)
class ArtifactRecord:
    """An artifact row, detached from the session."""

    id: str
    run_id: str
    node_id: str
    attempt: int
    kind: Kind
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    backend: str
    storage_key: str
    state: State
    created_at: datetime


def _record(row: ArtifactRow) -> ArtifactRecord:
    created = as_utc(row.created_at)
    assert created is not None
    return ArtifactRecord(
        id=row.id,
        run_id=row.run_id,
        node_id=row.node_id,
        attempt=row.attempt,
        kind=Kind(row.kind),
        name=row.name,
        content_type=row.content_type,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        backend=row.backend,
        storage_key=row.storage_key,
        state=State(row.state),
        created_at=created,
    )


def begin_upload(
    session: Session,
    *,
    run_id: str,
    node_id: str,
    attempt: int,
    kind: Kind,
    name: str,
    content_type: str,
    backend: str,
    storage_key: str,
) -> ArtifactRecord:
    """Insert the WRITING row of an upload about to start."""
    row = ArtifactRow(
        id=new_id(),
        run_id=run_id,
        node_id=node_id,
        attempt=attempt,
        kind=kind.value,
        name=name,
        content_type=content_type,
        size_bytes=0,
        sha256="",
        backend=backend,
        storage_key=storage_key,
        state=State.WRITING.value,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return _record(row)


def complete_upload(
    session: Session, artifact_id: str, *, size: int, sha256: str
) -> ArtifactRecord:
    """Mark an upload COMPLETE with its size and digest."""
    row = session.get(ArtifactRow, artifact_id)
    if row is None:
        raise NotFound(f"artifact {artifact_id} not found")
    row.size_bytes, row.sha256, row.state = size, sha256, State.COMPLETE.value
    row.created_at = utcnow()
    session.flush()
    return _record(row)


def get(session: Session, artifact_id: str, *, run_id: str = "") -> ArtifactRecord:
    """A COMPLETE artifact; NOT_FOUND when unknown, not complete, or of another run."""
    row = session.get(ArtifactRow, artifact_id) if len(artifact_id) <= 32 else None
    if row is None or row.state != State.COMPLETE.value or (run_id and row.run_id != run_id):
        where = f" in run {run_id}" if run_id else ""
        raise NotFound(
            f"artifact {artifact_id[:64]!r} not found{where}",
            violations=[Violation("artifact_id", "no such artifact", "ARTIFACT_NOT_FOUND")],
        )
    return _record(row)


def list_artifacts(
    session: Session, *, run_id: str, node_id: str, page_size: int, page_token: str
) -> tuple[list[ArtifactRecord], str]:
    """COMPLETE artifacts of a run (and node), oldest first; keyset paging on (created, id)."""
    query = select(ArtifactRow).where(
        ArtifactRow.run_id == run_id, ArtifactRow.state == State.COMPLETE.value
    )
    if node_id:
        query = query.where(ArtifactRow.node_id == node_id)
    scope = ("artifacts", run_id, node_id)
    after = decode_token(page_token, scope=scope)
    if after:
        stamp, _, last_id = after.partition("|")
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError as exc:
            raise bad_token() from exc
        query = query.where(
            (ArtifactRow.created_at > when)
            | ((ArtifactRow.created_at == when) & (ArtifactRow.id > last_id))
        )
    rows = session.scalars(
        query.order_by(ArtifactRow.created_at, ArtifactRow.id).limit(page_size + 1)
    ).all()
    records = [_record(r) for r in rows[:page_size]]
    token = ""
    if len(rows) > page_size:
        last = rows[page_size - 1]
        token = encode_token(f"{last.created_at.isoformat()}|{last.id}", scope=scope)
    return records, token


def mark_deleting(session: Session, artifact_ids: Sequence[str]) -> list[ArtifactRecord]:
    """Mark rows DELETING (before their objects go); returns them."""
    if not artifact_ids:
        return []
    session.execute(
        update(ArtifactRow)
        .where(ArtifactRow.id.in_(list(artifact_ids)))
        .values(state=State.DELETING.value)
    )
    rows = session.scalars(select(ArtifactRow).where(ArtifactRow.id.in_(list(artifact_ids))))
    return [_record(r) for r in rows]


def remove_rows(session: Session, artifact_ids: Sequence[str]) -> int:
    """Delete rows whose objects are gone."""
    if not artifact_ids:
        return 0
    result = session.execute(delete(ArtifactRow).where(ArtifactRow.id.in_(list(artifact_ids))))
    return int(getattr(result, "rowcount", 0) or 0)


def run_artifact_ids(session: Session, run_ids: Sequence[str], *, limit: int) -> list[str]:
    """Ids of up to `limit` artifacts (any state) of the given runs, archives excepted."""
    return list(
        session.scalars(
            select(ArtifactRow.id)
            .where(ArtifactRow.run_id.in_(list(run_ids)), ArtifactRow.kind != Kind.ARCHIVE.value)
            .limit(limit)
        )
    )


def stale_rows(session: Session, *, older_than: timedelta, limit: int) -> list[ArtifactRecord]:
    """WRITING or DELETING rows older than `older_than`: uploads or deletes that died."""
    cutoff = utcnow() - older_than
    rows = session.scalars(
        select(ArtifactRow)
        .where(
            ArtifactRow.state.in_([State.WRITING.value, State.DELETING.value]),
            ArtifactRow.created_at < cutoff,
        )
        .limit(limit)
    )
    return [_record(r) for r in rows]
