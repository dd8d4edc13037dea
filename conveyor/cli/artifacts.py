"""`conveyor artifacts …`: list a run's artifacts and download one, streamed."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import grpc
import typer
from rich.console import Console

from conveyor.artifacts.client import ArtifactClient, kind_name
from conveyor.cli.client import gateway_channel, resolve_token
from conveyor.kernel.grpcserver import error_details
from conveyor.monitor.v1 import event_pb2

artifacts_app = typer.Typer(no_args_is_help=True, help="List and download run artifacts.")
out = Console()
err = Console(stderr=True)

DEFAULT_ADDR = "127.0.0.1:50051"
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server", envvar="CONVEYOR_ADDR", help="Gateway address (default: local conveyor dev)."
    ),
]


def _gateway_artifacts(server: str | None) -> ArtifactClient:
    """The artifact service through the gateway, as the CLI's token."""
    address = server or DEFAULT_ADDR
    return ArtifactClient(address, channel=gateway_channel(address, resolve_token()))


def _fail(exc: grpc.RpcError) -> typer.Exit:
    code = exc.code()  # type: ignore[attr-defined]
    err.print(f"error: {code.name}: {exc.details()}", markup=False)  # type: ignore[attr-defined]
    for field, reason, description in error_details(exc)[1]:
        err.print(f"  {reason or 'INVALID'} at {field}: {description}", markup=False)
    invalid = code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    return typer.Exit(2 if invalid else 1)


def artifact_json(a: Any) -> dict[str, Any]:
    """The `--output json` shape of one artifact."""
    return {
        "artifact_id": a.artifact_id,
        "run_id": a.run_id,
        "node_id": a.node_id,
        "attempt": a.attempt,
        "kind": kind_name(a.kind),
        "name": a.name,
        "size_bytes": a.size_bytes,
        "sha256": a.sha256,
        "content_type": a.content_type,
        "create_time": a.create_time.ToDatetime().isoformat() + "Z",
    }


@artifacts_app.command("list")
def list_artifacts(
    run_id: str,
    node: Annotated[str, typer.Option("--node", help="Only this step's artifacts.")] = "",
    output: Annotated[str, typer.Option("--output", help="text or json")] = "text",
    server: ServerOpt = None,
) -> None:
    """List a run's artifacts (oldest first)."""
    client = _gateway_artifacts(server)
    try:
        found = list(client.list(run_id, node_id=node))
    except grpc.RpcError as exc:
        raise _fail(exc) from None
    finally:
        client.close()
    if output == "json":
        print(json.dumps([artifact_json(a) for a in found], indent=2))
        return
    for a in found:
        out.print(
            f"{a.artifact_id}  {a.node_id}#{a.attempt}  {kind_name(a.kind):<7}"
            f" {a.size_bytes:>12}  {a.name}",
            markup=False,
        )


def _write_all(chunks: Iterable[bytes], target: IO[bytes]) -> int:
    size = 0
    for chunk in chunks:
        target.write(chunk)
        size += len(chunk)
    target.flush()
    return size


@artifacts_app.command("get")
def get_artifact(
    artifact_id: str,
    output_file: Annotated[
        Path | None, typer.Option("-o", "--output-file", help="Write here (default: stdout).")
    ] = None,
    run: Annotated[str, typer.Option(help="Refuse an artifact of another run.")] = "",
    server: ServerOpt = None,
) -> None:
    """Download an artifact, streamed, to a file (atomically) or to stdout."""
    client = _gateway_artifacts(server)
    try:
        chunks = client.download(artifact_id, run_id=run)
        if output_file is None:
            _write_all(chunks, sys.stdout.buffer)
            return
        folder = output_file.resolve().parent
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{output_file.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                size = _write_all(chunks, f)
            os.replace(tmp, output_file)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        err.print(f"{size} bytes written to {output_file}", markup=False)
    except grpc.RpcError as exc:
        raise _fail(exc) from None
    finally:
        client.close()


_STREAM_KIND: dict[int, str] = {
    event_pb2.LOG_STREAM_STDOUT: "STDOUT",
    event_pb2.LOG_STREAM_STDERR: "STDERR",
}


def past_live_cap(
    events: Iterable[event_pb2.RunEvent], seen: dict[tuple[int, int], int]
) -> Iterator[event_pb2.RunEvent]:
    """Pass a step's log events on, noting where each stream's live log stopped at its cap.

    `seen` gets (attempt, stream) -> bytes sent live, for each stream whose live log was cut;
    the truncation flag is cleared, since the rest follows from the artifact.
    """
    sent: dict[tuple[int, int], int] = {}
    for ev in events:
        if ev.HasField("step_log"):
            key = (ev.step_log.attempt, ev.step_log.stream)
            sent[key] = sent.get(key, 0) + len(ev.step_log.text.encode())
            if ev.step_log.truncated:
                seen[key] = sent[key]
                ev = type(ev).FromString(ev.SerializeToString())
                ev.step_log.truncated = False
        yield ev


def print_rest(
    server: str | None, run_id: str, node_id: str, cut: dict[tuple[int, int], int]
) -> None:
    """Print each cut stream from the byte where its live log stopped, from its artifact."""
    if not cut:
        return
    client = _gateway_artifacts(server)
    try:
        found = {(a.attempt, kind_name(a.kind)): a for a in client.list(run_id, node_id=node_id)}
        for (attempt, stream), offset in sorted(cut.items()):
            artifact = found.get((attempt, _STREAM_KIND.get(stream, "STDOUT")))
            target = sys.stderr if stream == event_pb2.LOG_STREAM_STDERR else sys.stdout
            if artifact is None or offset >= artifact.size_bytes:
                continue
            target.flush()
            _write_all(client.download(artifact.artifact_id, offset=offset), target.buffer)
    finally:
        client.close()
