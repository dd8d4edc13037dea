"""API tokens: only a hash is stored, expiry and revocation refuse, the dev token is reused."""

from __future__ import annotations

import asyncio
import stat
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from conveyor.auth import tokens, webhooks
from conveyor.auth.authn import Authenticator, Denied, bearer
from conveyor.auth.v1 import auth_pb2
from conveyor.executor.v1 import executor_service_pb2  # noqa: F401 - descriptors in the pool
from conveyor.kernel.db import Database
from conveyor.kernel.errors import AlreadyExists, InvalidArgument
from conveyor.kernel.ids import utcnow
from conveyor.kernel.migrate import upgrade

GET_RUN = "/conveyor.executor.v1.ExecutorService/GetRun"
CANCEL_RUN = "/conveyor.executor.v1.ExecutorService/CancelRun"


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 't.db'}")
    upgrade(database)
    yield database
    database.dispose()


def test_only_the_hash_is_stored_and_the_secret_is_long_and_random(db: Database) -> None:
    with db.transaction() as s:
        one, info = tokens.create_token(s, name="ci", role=auth_pb2.ROLE_OPERATOR)
        two, _ = tokens.create_token(s, name="ci2", role=auth_pb2.ROLE_VIEWER)
    assert one != two and one.startswith("cvy_") and len(one) >= 4 + 43
    with db.read() as s:
        row = s.scalar(select(tokens.ApiTokenRow).where(tokens.ApiTokenRow.name == "ci"))
        assert row is not None
        assert one not in (row.token_hash, row.id, row.name)
        assert row.token_hash == tokens.hash_token(one)
        caller = tokens.lookup(s, one)
    assert caller is not None and (caller.name, caller.role) == ("ci", auth_pb2.ROLE_OPERATOR)
    assert info.name == "ci"


def test_names_are_unique_and_checked(db: Database) -> None:
    with db.transaction() as s:
        tokens.create_token(s, name="bot", role=auth_pb2.ROLE_ADMIN)
    with pytest.raises(AlreadyExists), db.transaction() as s:
        tokens.create_token(s, name="bot", role=auth_pb2.ROLE_VIEWER)
    for name, role in (("", 1), ("a b", 1), ("x" * 101, 1), ("ok", 0), ("ok", 4)):
        with pytest.raises(InvalidArgument), db.transaction() as s:
            tokens.create_token(s, name=name, role=role)


def test_expired_and_revoked_tokens_are_refused(db: Database) -> None:
    with db.transaction() as s:
        short, _ = tokens.create_token(
            s, name="short", role=auth_pb2.ROLE_ADMIN, expires_in=timedelta(hours=1)
        )
        gone, _ = tokens.create_token(s, name="gone", role=auth_pb2.ROLE_ADMIN)
        tokens.revoke_token(s, "gone")
    with db.read() as s:
        assert tokens.lookup(s, short) is not None
        assert tokens.lookup(s, short, now=utcnow() + timedelta(hours=2)) is None
        assert tokens.lookup(s, gone) is None
        assert tokens.lookup(s, "cvy_" + "x" * 43) is None
        assert tokens.lookup(s, "not even prefixed") is None


def test_authorize_checks_the_role_of_the_method(db: Database) -> None:
    with db.transaction() as s:
        viewer, _ = tokens.create_token(s, name="v", role=auth_pb2.ROLE_VIEWER)
    auth = Authenticator(db)
    assert asyncio.run(auth.authorize(viewer, GET_RUN)).name == "v"
    with pytest.raises(Denied) as denied:
        asyncio.run(auth.authorize(viewer, CANCEL_RUN))
    assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(Denied) as missing:
        asyncio.run(auth.authorize(None, GET_RUN))
    assert missing.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None and bearer("Bearer ") is None


def test_dev_token_is_written_0600_and_reused_while_valid(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "data" / "token"
    first = tokens.ensure_dev_token(db, path)
    assert path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tokens.ensure_dev_token(db, path) == first
    with db.transaction() as s:
        tokens.revoke_token(s, "dev")
    replaced = tokens.ensure_dev_token(db, path)
    assert replaced != first and path.read_text().strip() == replaced


def test_durations_and_webhook_signatures() -> None:
    assert tokens.parse_duration("30d") == timedelta(days=30)
    assert tokens.parse_duration("12h") == timedelta(hours=12)
    for bad in ("", "30", "d", "1y", "-1d"):
        with pytest.raises(InvalidArgument):
            tokens.parse_duration(bad)
    body, now = b'{"a": 1}', 1_000_000.0
    good = webhooks.sign("k", "1000000", body)
    ok = {"timestamp": "1000000", "signature": good, "body": body, "now": now}
    assert webhooks.check("k", **ok) is None  # type: ignore[arg-type]
    assert webhooks.check("other", **ok) is not None  # type: ignore[arg-type]
    assert webhooks.check(None, **ok) is not None  # type: ignore[arg-type]
    assert webhooks.check("k", **{**ok, "body": b'{"a": 2}'}) is not None  # type: ignore[arg-type]
    assert webhooks.check("k", **{**ok, "now": now + 301}) is not None  # type: ignore[arg-type]
    assert webhooks.delivery_ok("abc-1") and not webhooks.delivery_ok("a b")


def test_dev_open_is_refused_off_loopback() -> None:
    from typer.testing import CliRunner

    from conveyor.cli.main import app

    result = CliRunner().invoke(app, ["dev", "--open", "--http", "0.0.0.0:18399"])
    assert result.exit_code == 2
    assert "loopback" in result.output


def test_an_unreachable_token_database_is_unavailable_not_unknown() -> None:
    """A token cannot be checked while the database is down: the caller gets a retryable
    UNAVAILABLE (HTTP 503), not an unexpected error."""
    down = Database("postgresql://postgres@127.0.0.1:1/none")  # nothing listens on port 1
    try:
        auth = Authenticator(down)
        with pytest.raises(Denied) as denied:
            asyncio.run(auth.authorize("some-token", GET_RUN))
        assert denied.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        down.dispose()
