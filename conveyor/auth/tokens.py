"""API tokens: the `api_tokens` table (owned by the gateway) and the functions over it.

A token is `cvy_` + 32 random bytes (base64url). Only its SHA-256 is stored: a token has 256
bits of entropy, so a fast hash is as good as a slow one against guessing, and a lookup is one
indexed read. The lookup finds the row by hash, then compares the hashes again in constant
time, so the answer's timing says nothing about how close a guess was.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Boolean, Connection, DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from conveyor.auth.v1 import auth_pb2
from conveyor.kernel.db import Base, Database
from conveyor.kernel.errors import AlreadyExists, InvalidArgument, NotFound, Violation
from conveyor.kernel.ids import as_utc, new_id, utcnow

PREFIX = "cvy_"
TOKEN_BYTES = 32
MAX_NAME = 100
MAX_TOKENS = 10_000
MAX_LIFETIME = timedelta(days=3650)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
ROLE_NAMES = {
    "viewer": auth_pb2.ROLE_VIEWER,
    "operator": auth_pb2.ROLE_OPERATOR,
    "admin": auth_pb2.ROLE_ADMIN,
}


class ApiTokenRow(Base):
    """One API token: who (name), what it may do (role), until when, and whether revoked."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: the token's name and role (`token_id` empty in open mode)."""

    name: str
    role: int
    token_id: str = ""
    expires_at: datetime | None = None


@dataclass(frozen=True)
class TokenInfo:
    """A token's description, never its secret."""

    token_id: str
    name: str
    role: int
    created_at: datetime
    expires_at: datetime | None
    revoked: bool


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    """A fresh random token."""
    return PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def role_value(name: str) -> int:
    """viewer|operator|admin -> the Role number; InvalidArgument otherwise."""
    value = ROLE_NAMES.get(name.strip().lower().removeprefix("role_"))
    if value is None:
        raise InvalidArgument(
            f"role must be viewer, operator or admin, not {name!r}",
            violations=[Violation("role", "viewer, operator or admin", "INVALID_ROLE")],
        )
    return value


def role_label(role: int) -> str:
    """The Role number -> its short lower-case name."""
    for label, value in ROLE_NAMES.items():
        if value == role:
            return label
    return auth_pb2.Role.Name(role) if role in auth_pb2.Role.values() else str(role)


def _info(row: ApiTokenRow) -> TokenInfo:
    return TokenInfo(
        token_id=row.id,
        name=row.name,
        role=row.role,
        created_at=as_utc(row.created_at) or row.created_at,
        expires_at=as_utc(row.expires_at),
        revoked=row.revoked,
    )


def _check_new(name: str, role: int, expires_in: timedelta | None) -> None:
    violations = []
    if not _NAME.fullmatch(name):
        violations.append(
            Violation(
                "name",
                "1-100 characters: letters, digits, . _ @ -, starting with a letter or digit",
                "INVALID_NAME",
            )
        )
    if role not in ROLE_NAMES.values():
        violations.append(Violation("role", "viewer, operator or admin", "INVALID_ROLE"))
    if expires_in is not None and not timedelta(0) < expires_in <= MAX_LIFETIME:
        violations.append(
            Violation("expires_in", "more than 0 and at most 10 years", "INVALID_EXPIRY")
        )
    if violations:
        raise InvalidArgument("invalid token", violations=violations)


def create_token(
    session: Session, *, name: str, role: int, expires_in: timedelta | None = None
) -> tuple[str, TokenInfo]:
    """A new token (the secret, returned only here) and its description."""
    _check_new(name, role, expires_in)
    if session.scalar(select(ApiTokenRow.id).where(ApiTokenRow.name == name)) is not None:
        raise AlreadyExists(f"a token named {name!r} exists already", reason="TOKEN_EXISTS")
    if len(session.scalars(select(ApiTokenRow.id).limit(MAX_TOKENS)).all()) >= MAX_TOKENS:
        raise InvalidArgument(f"at most {MAX_TOKENS} tokens", reason="TOO_MANY_TOKENS")
    secret = new_secret()
    now = utcnow()
    row = ApiTokenRow(
        id=new_id(),
        name=name,
        token_hash=hash_token(secret),
        role=role,
        created_at=now,
        expires_at=now + expires_in if expires_in is not None else None,
        revoked=False,
    )
    session.add(row)
    session.flush()
    return secret, _info(row)


def list_tokens(session: Session) -> list[TokenInfo]:
    """Every token, by name."""
    rows = session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.name).limit(MAX_TOKENS))
    return [_info(r) for r in rows]


def revoke_token(session: Session, name: str) -> TokenInfo:
    """Mark a token revoked (idempotent); NotFound when no token has that name."""
    row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.name == name))
    if row is None:
        raise NotFound(
            f"no token named {name!r}",
            violations=[Violation("name", "no such token", "TOKEN_NOT_FOUND")],
        )
    if not row.revoked:
        row.revoked = True
        row.revoked_at = utcnow()
    return _info(row)


def delete_token(session: Session, name: str) -> None:
    """Remove a token row (used to replace the dev token)."""
    row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.name == name))
    if row is not None:
        session.delete(row)


def lookup(
    session: Session | Connection, token: str, *, now: datetime | None = None
) -> Caller | None:
    """The caller a presented token stands for; None when unknown, revoked or expired."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    digest = hash_token(token)
    row = session.execute(
        select(ApiTokenRow.id, ApiTokenRow.name, ApiTokenRow.role, ApiTokenRow.token_hash)
        .add_columns(ApiTokenRow.expires_at, ApiTokenRow.revoked)
        .where(ApiTokenRow.token_hash == digest)
    ).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest) or row.revoked:
        return None
    expires_at = as_utc(row.expires_at)
    if expires_at is not None and expires_at <= (now or utcnow()):
        return None
    return Caller(name=row.name, role=row.role, token_id=row.id, expires_at=expires_at)


def ensure_dev_token(db: Database, path: Path, *, name: str = "dev") -> str:
    """The admin token of a local suite: the one in `path` if it is still valid, otherwise a
    new one (replacing the row of that name) written to `path` with mode 0600."""
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        existing = ""
    if existing:
        with db.read() as session:
            caller = lookup(session, existing)
        if caller is not None and caller.name == name and caller.role == auth_pb2.ROLE_ADMIN:
            return existing
    with db.transaction() as session:
        delete_token(session, name)
        session.flush()
        secret, _ = create_token(session, name=name, role=auth_pb2.ROLE_ADMIN)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret + "\n")
    path.chmod(0o600)
    return secret


def parse_duration(text: str) -> timedelta:
    """'30d', '12h', '45m', '90s', '2w' -> a timedelta; InvalidArgument otherwise."""
    found = re.fullmatch(r"\s*(\d{1,6})\s*([smhdw])\s*", text)
    if found is None:
        raise InvalidArgument(
            f"expiry must look like 30d, 12h, 45m, 90s or 2w, not {text!r}",
            violations=[Violation("expires", "a number and s, m, h, d or w", "INVALID_EXPIRY")],
        )
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[found.group(2)]
    return timedelta(seconds=int(found.group(1)) * unit)


def is_active(session: Session | Connection, token_id: str, *, now: datetime | None = None) -> bool:
    """Whether the token with this id exists, is not revoked and has not expired."""
    row = session.execute(
        select(ApiTokenRow.revoked, ApiTokenRow.expires_at).where(ApiTokenRow.id == token_id)
    ).first()
    if row is None or row.revoked:
        return False
    expires_at = as_utc(row.expires_at)
    return expires_at is None or expires_at > (now or utcnow())
