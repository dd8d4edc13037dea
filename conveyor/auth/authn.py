"""Who is calling and whether they may: bearer tokens checked against `api_tokens`.

Every request is looked up (one indexed read by hash, no cache), so a revoked or expired token
is refused on its next request. A stream re-checks its token before each message it sends: at
once when this process revoked a token since the last check, otherwise at most once a second
(another gateway's revocation reaches an open stream within that second).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from dataclasses import dataclass

import grpc
from sqlalchemy.exc import DBAPIError

from conveyor.auth import roles, tokens
from conveyor.auth.tokens import Caller
from conveyor.auth.v1 import auth_pb2
from conveyor.kernel.db import Database, is_unreachable
from conveyor.kernel.ids import utcnow

ANONYMOUS = Caller(name="anonymous", role=auth_pb2.ROLE_ADMIN)
STREAM_RECHECK_S = 1.0

#: The caller of the request being handled (set by the gateway's HTTP and gRPC layers).
CURRENT_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "conveyor_caller", default=None
)


@dataclass
class Denied(Exception):
    """A refused request: UNAUTHENTICATED (no/bad token) or PERMISSION_DENIED (role)."""

    code: grpc.StatusCode
    message: str
    error: str = ""  # RFC 6750 error code for WWW-Authenticate: invalid_token, ...

    def __str__(self) -> str:
        return self.message


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; None when absent or another scheme."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class Authenticator:
    """Turns a presented token into a `Caller` and checks it against a method's role."""

    def __init__(self, db: Database | None, *, open_access: bool = False) -> None:
        if db is None and not open_access:
            raise ValueError("authentication needs the token database")
        self._db = db
        # Lookups use a Core connection of the read-only engine: a fraction of an ORM
        # session's cost, and on SQLite no write lock (see Database.read).
        self._reads = db.read_engine if db else None
        self.open_access = open_access
        #: Bumped on every revocation made through this process; streams re-check at once.
        self.generation = 0

    @property
    def db(self) -> Database | None:
        """The token database (None in open mode)."""
        return self._db

    def _lookup(self, token: str) -> Caller | None:
        assert self._reads is not None
        with self._reads.connect() as conn:
            return tokens.lookup(conn, token)

    async def authenticate(self, token: str | None) -> Caller:
        """The caller for a token; Denied(UNAUTHENTICATED) when there is none or it is bad."""
        if self.open_access:
            return ANONYMOUS
        if token is None:
            raise Denied(grpc.StatusCode.UNAUTHENTICATED, "a bearer token is required")
        try:
            caller = await asyncio.to_thread(self._lookup, token)
        except DBAPIError as exc:
            if not is_unreachable(exc):
                raise
            # Retryable, like any call that finds the database down: not UNKNOWN.
            raise Denied(
                grpc.StatusCode.UNAVAILABLE,
                "the token database cannot be reached; retry",
            ) from exc
        if caller is None:
            raise Denied(
                grpc.StatusCode.UNAUTHENTICATED,
                "the token is unknown, revoked or expired",
                error="invalid_token",
            )
        return caller

    async def authorize(self, token: str | None, grpc_path: str) -> Caller:
        """The caller, if it may call the method; Denied otherwise."""
        needed = roles.role_for_path(grpc_path)
        if needed not in roles.PUBLIC_ROLES:
            # Refused before looking at the token: an undeclared or internal method is not
            # part of the public API, whoever asks.
            raise Denied(grpc.StatusCode.PERMISSION_DENIED, f"{grpc_path} is not a public method")
        caller = await self.authenticate(token)
        if not roles.permits(caller.role, needed):
            raise Denied(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{grpc_path} needs the {tokens.role_label(needed)} role; token "
                f"{caller.name!r} is {tokens.role_label(caller.role)}",
                error="insufficient_scope",
            )
        return caller

    def revoked(self) -> None:
        """Say that a token was revoked here: open streams re-check before their next message."""
        self.generation += 1

    def guard(self, caller: Caller) -> StreamGuard:
        """A re-checker for a stream the caller opened."""
        return StreamGuard(self, caller)

    def _active(self, token_id: str) -> bool:
        assert self._reads is not None
        with self._reads.connect() as conn:
            return tokens.is_active(conn, token_id)


class StreamGuard:
    """Re-checks a stream's token before the stream sends more."""

    def __init__(self, authenticator: Authenticator, caller: Caller) -> None:
        self._auth = authenticator
        self._caller = caller
        self._checked_at = time.monotonic()
        self._generation = authenticator.generation

    async def valid(self) -> bool:
        """Whether the token still holds (not revoked, not expired)."""
        caller = self._caller
        if not caller.token_id:
            return True
        if caller.expires_at is not None and caller.expires_at <= utcnow():
            return False
        now = time.monotonic()
        if self._generation == self._auth.generation and now - self._checked_at < STREAM_RECHECK_S:
            return True
        self._generation, self._checked_at = self._auth.generation, now
        try:
            return await asyncio.to_thread(self._auth._active, caller.token_id)
        except DBAPIError as exc:
            if not is_unreachable(exc):
                raise
            # No revocation can be recorded while the database is down either: the stream
            # goes on, and is checked again on its next message.
            self._checked_at = 0.0
            return True
