"""The job store's GetJob read: by id or by name in one query, latest or a given version;
an id wins over another job's name; a missing job or version is NOT_FOUND."""

from __future__ import annotations

import json

import pytest

from conveyor.kernel.db import Database
from conveyor.kernel.errors import NotFound
from conveyor.translator import store
from conveyor.translator.domain import compile_workflow


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
