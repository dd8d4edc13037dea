"""The job store's GetJob read: by id or by name in one query, latest or a given version;
an id wins over another job's name; a missing job or version is NOT_FOUND. GetJob keeps each
version's definition and plan once converted, and still answers the latest version."""

from __future__ import annotations

import asyncio
import json

import pytest

from conveyor.kernel.db import Database
from conveyor.kernel.errors import NotFound
from conveyor.translator import store
from conveyor.translator.api import TranslatorServicer, VersionBodies, body_pb
from conveyor.translator.domain import compile_workflow
from conveyor.translator.v1 import translator_pb2, translator_service_pb2


def save(db: Database, name: str, argv: list[str]) -> store.JobRecord:
    doc = {
        "schema": "conveyor/v1",
        "name": name,
        "nodes": [{"id": "a", "type": "action.command", "data": {"argv": argv}}],
        "edges": [],
    }
    compiled = compile_workflow(json.dumps(doc))
    assert compiled.plan is not None, compiled.diagnostics
    with db.transaction() as session:
        return store.save_job(
            session,
            definition=doc,
            plan=compiled.plan,
            update_existing=True,
            request_id=None,
        )


def get(db: Database, ref: str, version: int = 0) -> store.JobRecord:
    with db.read() as session:
        return store.get_job(session, ref, version=version)


def test_get_job_by_id_or_name_and_version(db: Database) -> None:
    v1 = save(db, "store-job", ["true"])
    v2 = save(db, "store-job", ["false"])
    assert (v1.version, v2.version) == (1, 2)
    for ref in (v1.id, "store-job"):
        latest = get(db, ref)
        assert (latest.id, latest.version) == (v1.id, 2)
        assert latest.plan is not None and latest.plan["nodes"]["a"]["data"]["argv"] == ["false"]
        first = get(db, ref, version=1)
        assert first.plan is not None and first.plan["nodes"]["a"]["data"]["argv"] == ["true"]
    # A job named like another job's id: the id match wins.
    named_like_id = save(db, v1.id, ["echo"])
    assert get(db, v1.id).id == v1.id
    assert get(db, named_like_id.id).name == v1.id
    with pytest.raises(NotFound, match="no version 3"):
        get(db, v1.id, version=3)
    with pytest.raises(NotFound, match="not found"):
        get(db, "no-such-job")


def test_find_job_reads_the_head_and_names_the_body(db: Database) -> None:
    v1 = save(db, "head-job", ["true"])
    v2 = save(db, "head-job", ["false"])
    with db.read() as session:
        head = store.find_job(session, "head-job")
        assert (head.version, head.plan, head.definition) == (2, None, None)
        assert head.version_id == v2.version_id != v1.version_id
        definition, plan = store.job_body(session, head.version_id)
        assert plan["nodes"]["a"]["data"]["argv"] == ["false"]
        assert definition["nodes"][0]["data"]["argv"] == ["false"]
        with pytest.raises(NotFound):
            store.job_body(session, "no-such-version")


def test_find_job_reads_on_a_plain_connection_as_on_a_session(db: Database) -> None:
    """GetJob reads on a connection of the read engine, without an ORM session."""
    v1 = save(db, "conn-job", ["true"])
    v2 = save(db, "conn-job", ["false"])
    with db.read() as session:
        by_session = store.find_job(session, "conn-job", version=1)
    with db.read_engine.connect() as conn:
        for ref in (v1.id, "conn-job"):
            latest = store.find_job(conn, ref)
            assert (latest.id, latest.name, latest.version) == (v1.id, "conn-job", 2)
            assert latest.version_id == v2.version_id
            assert latest.updated_at.tzinfo is not None
        first = store.find_job(conn, v1.id, version=1)
        assert first == by_session
        assert store.job_body(conn, first.version_id)[1]["nodes"]["a"]["data"]["argv"] == ["true"]
        with pytest.raises(NotFound, match="no version 3"):
            store.find_job(conn, "conn-job", version=3)
        with pytest.raises(NotFound, match="not found"):
            store.find_job(conn, "no-such-job")


def _get_job(servicer: TranslatorServicer, ref: str, version: int = 0) -> translator_pb2.Job:
    request = translator_service_pb2.GetJobRequest(job_id=ref, version=version)
    return asyncio.run(servicer.GetJob(request, None)).job


def test_get_job_serves_kept_bodies_and_always_the_latest_version(db: Database) -> None:
    servicer = TranslatorServicer(db)
    save(db, "kept-job", ["true"])
    first = _get_job(servicer, "kept-job")
    again = _get_job(servicer, "kept-job")
    assert again == first and first.version == 1
    with db.read() as session:
        kept = servicer._bodies.get(store.find_job(session, "kept-job").version_id)
    assert kept is not None and kept.plan == first.plan  # converted once, then kept
    assert json.loads(first.definition_json)["nodes"][0]["data"]["argv"] == ["true"]
    # A new version is served at once; the first one is still there by number.
    save(db, "kept-job", ["false"])
    latest = _get_job(servicer, "kept-job")
    assert latest.version == 2 and latest.plan != first.plan
    assert json.loads(latest.definition_json)["nodes"][0]["data"]["argv"] == ["false"]
    by_number = _get_job(servicer, "kept-job", version=1)
    assert (by_number.plan, by_number.definition_json) == (first.plan, first.definition_json)
    # The job's own fields come from its row on every call, not from what was kept.
    with db.transaction() as session:
        row = session.get(store.JobRow, latest.job_id)
        assert row is not None
        row.description = "changed"
    assert _get_job(servicer, "kept-job").description == "changed"


def test_version_bodies_stay_within_their_byte_budget(db: Database) -> None:
    v1 = save(db, "budget-job", ["true"])
    assert v1.definition is not None and v1.plan is not None
    body = body_pb(v1.definition, v1.plan)
    size = body.ByteSize()
    kept = VersionBodies(budget_bytes=size * 5)
    for i in range(8):
        kept.put(f"v{i}", body)
        kept.get("v0")  # the most recently used stays
    present = [i for i in range(8) if kept.get(f"v{i}") is not None]
    assert len(present) == 5 and 0 in present and 7 in present
    huge = VersionBodies(budget_bytes=size * 2)
    huge.put("big", body)  # more than a quarter of the budget: not kept
    assert huge.get("big") is None
