"""Helpers of the commands that talk to a server: the client, RPC errors, following a run."""

from __future__ import annotations

import json

import grpc
import typer

from conveyor.cli import render
from conveyor.cli.client import Client
from conveyor.cli.common import DEFAULT_ADDR, EXIT_FAILED, EXIT_INVALID, EXIT_OK, err, out
from conveyor.cli.credentials import resolve_token
from conveyor.executor.v1 import run_pb2
from conveyor.kernel.grpcserver import error_details


def client_for(server: str | None) -> Client:
    """A client of the gateway at `server` (default: a local `conveyor dev`)."""
    return Client(server or DEFAULT_ADDR, token=resolve_token())


def fail_rpc(exc: grpc.RpcError) -> typer.Exit:
    """Print a failed call's status and field violations; the exit to raise."""
    code = exc.code()  # type: ignore[attr-defined]
    err.print(f"error: {code.name}: {exc.details()}", markup=False)  # type: ignore[attr-defined]
    _reason, violations = error_details(exc)
    for field, reason, description in violations:
        err.print(f"  {reason or 'INVALID'} at {field}: {description}", markup=False)
    if code == grpc.StatusCode.UNAVAILABLE:
        err.print("  is a server running? start one with `conveyor dev`, or pass --server")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        err.print(
            "  pass --token or set CONVEYOR_TOKEN (`conveyor dev` writes its admin token to "
            ".conveyor/token)"
        )
    invalid = code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    return typer.Exit(EXIT_INVALID if invalid else EXIT_FAILED)


def follow(client: Client, run: run_pb2.Run, *, watch: bool, output: str) -> int:
    """Wait for a run to end (printing its events with watch); the exit code for its state."""
    for ev in client.watch(run.run_id):
        if watch and output != "json":
            out.print(render.event_line(ev))
    final = client.get_run(run.run_id)
    if output == "json":
        print(json.dumps(render.run_json(final), indent=2))
    else:
        render.run_table(out, final)
    return EXIT_OK if final.state == run_pb2.RUN_STATE_SUCCEEDED else EXIT_FAILED
