"""`conveyor tokens create|list|revoke`: API tokens, through the gateway (admin) or the database.

`--database` works on CONVEYOR_DATABASE_URL (or the embedded data dir) directly, for the first
admin token of a distributed deployment, before any token exists to ask the gateway with.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import grpc
import typer
from google.protobuf import duration_pb2
from rich.console import Console

from conveyor.auth import tokens
from conveyor.cli.client import gateway_channel, resolve_token
from conveyor.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from conveyor.kernel.errors import ConveyorError
from conveyor.kernel.settings import Settings

tokens_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API tokens.")

out = Console()
err = Console(stderr=True)
DEFAULT_ADDR = "127.0.0.1:50051"
EXIT_FAILED, EXIT_INVALID = 1, 2

ServerOpt = Annotated[
    str | None, typer.Option("--server", envvar="CONVEYOR_ADDR", help="Gateway address.")
]
DatabaseOpt = Annotated[
    bool,
    typer.Option(
        "--database",
        help="Work on the database (CONVEYOR_DATABASE_URL / data dir), not through the gateway.",
    ),
]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="text or json")]


def _stub(server: str | None) -> Any:
    ch = gateway_channel(server or DEFAULT_ADDR, resolve_token())
    return gateway_service_pb2_grpc.GatewayServiceStub(ch)


def _call(fn: Any) -> Any:
    try:
        return fn()
    except grpc.RpcError as exc:
        from conveyor.cli.rpc import fail_rpc

        raise fail_rpc(exc) from None


def _direct(fn: Any) -> Any:
    from conveyor.suite import open_database

    settings = Settings()
    db = open_database(settings, migrate=not settings.database_url)
    try:
        with db.transaction() as session:
            return fn(session)
    except ConveyorError as exc:
        err.print(f"error: {exc.message}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    finally:
        db.dispose()


def _row(name: str, role: int, expires: str, revoked: bool) -> str:
    state = "revoked" if revoked else "active"
    return f"{name:<24} {tokens.role_label(role):<9} {state:<8} {expires or 'never'}"


@tokens_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="Unique; recorded as who did what.")],
    role: Annotated[str, typer.Option("--role", help="viewer, operator or admin.")],
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime, e.g. 30d, 12h (default: none).")
    ] = None,
    server: ServerOpt = None,
    database: DatabaseOpt = False,
) -> None:
    """Create a token and print its secret (shown this once; only a hash is kept)."""
    try:
        role_number = tokens.role_value(role)
        ttl = tokens.parse_duration(expires) if expires else None
    except ConveyorError as exc:
        err.print(f"error: {exc.message}", markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    if database:
        secret, _ = _direct(
            lambda s: tokens.create_token(s, name=name, role=role_number, expires_in=ttl)
        )
    else:
        request = gateway_service_pb2.CreateTokenRequest(name=name, role=role_number)  # type: ignore[arg-type]
        if ttl is not None:
            request.ttl.CopyFrom(duration_pb2.Duration(seconds=int(ttl.total_seconds())))
        secret = _call(lambda: _stub(server).CreateToken(request, timeout=30)).secret
    print(secret)


@tokens_app.command("list")
def list_(
    server: ServerOpt = None, database: DatabaseOpt = False, output: OutputOpt = "text"
) -> None:
    """List tokens: name, role, state, expiry (never the secret)."""
    rows: list[dict[str, Any]] = []
    if database:
        for info in _direct(tokens.list_tokens):
            expires = info.expires_at.isoformat(timespec="seconds") if info.expires_at else ""
            rows.append(
                {"name": info.name, "role": info.role, "expires": expires, "revoked": info.revoked}
            )
    else:
        reply = _call(
            lambda: _stub(server).ListTokens(gateway_service_pb2.ListTokensRequest(), timeout=30)
        )
        for t in reply.tokens:
            expires = (
                t.expire_time.ToDatetime().isoformat(timespec="seconds")
                if t.HasField("expire_time")
                else ""
            )
            rows.append({"name": t.name, "role": t.role, "expires": expires, "revoked": t.revoked})
    if output == "json":
        for row in rows:
            row["role"] = tokens.role_label(row["role"])
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        out.print(_row(row["name"], row["role"], row["expires"], row["revoked"]), markup=False)


@tokens_app.command("revoke")
def revoke(name: str, server: ServerOpt = None, database: DatabaseOpt = False) -> None:
    """Revoke a token: refused from its next request on; its open streams end."""
    if database:
        _direct(lambda s: tokens.revoke_token(s, name))
    else:
        request = gateway_service_pb2.RevokeTokenRequest(name=name)
        _call(lambda: _stub(server).RevokeToken(request, timeout=30))
    out.print(f"token {name} revoked", markup=False)
