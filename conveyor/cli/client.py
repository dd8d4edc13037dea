"""A small synchronous client of the public gRPC API (through the gateway)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

# The token helpers live apart so that commands needing no RPC import no grpc; they are
# part of this module's interface too.
from conveyor.cli.credentials import DEV_TOKEN_FILE as DEV_TOKEN_FILE
from conveyor.cli.credentials import resolve_token as resolve_token
from conveyor.cli.credentials import set_session_token as set_session_token
from conveyor.executor.v1 import executor_service_pb2, executor_service_pb2_grpc, run_pb2
from conveyor.kernel.grpcserver import CHANNEL_OPTIONS, with_metadata
from conveyor.kernel.protoconv import json_text
from conveyor.monitor.v1 import event_pb2, monitor_service_pb2, monitor_service_pb2_grpc
from conveyor.translator.v1 import translator_service_pb2, translator_service_pb2_grpc


def gateway_channel(address: str, token: str | None) -> grpc.Channel:
    """A blocking channel to a gateway that sends the bearer token (when there is one); over
    TLS, verified against CONVEYOR_TLS_CA_FILE, when that is set."""
    ca_file = os.environ.get("CONVEYOR_TLS_CA_FILE")
    if ca_file:
        name = os.environ.get("CONVEYOR_TLS_SERVER_NAME")
        options = [*CHANNEL_OPTIONS, *([("grpc.ssl_target_name_override", name)] if name else [])]
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca_file).read_bytes())
        ch = grpc.secure_channel(address, credentials, options=options)
    else:
        ch = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    return with_metadata(ch, [("authorization", f"Bearer {token}")]) if token else ch


class Client:
    """Typed calls to the translator, executor and monitor services, as the token's holder."""

    def __init__(self, address: str, *, token: str | None = None) -> None:
        self.address = address
        self.token = token
        self._channel = gateway_channel(address, token)
        self.translator = translator_service_pb2_grpc.TranslatorServiceStub(self._channel)
        self.executor = executor_service_pb2_grpc.ExecutorServiceStub(self._channel)
        self.monitor = monitor_service_pb2_grpc.MonitorServiceStub(self._channel)

    @property
    def channel(self) -> grpc.Channel:
        """The authenticated channel, for stubs of other services."""
        return self._channel

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def create_job(self, workflow_json: str) -> Any:
        """Save a workflow as a job, or as a new version of the job with its name."""
        return self.translator.CreateJob(
            translator_service_pb2.CreateJobRequest(
                workflow_json=workflow_json, update_existing=True
            ),
            timeout=60,
        )

    def start_run(self, job_id: str, params: dict[str, Any], *, priority: int = 0) -> run_pb2.Run:
        """Start a run."""
        reply = self.executor.StartRun(
            executor_service_pb2.StartRunRequest(
                job_id=job_id, parameters_json=json_text(params), priority=priority
            ),
            timeout=60,
        )
        run: run_pb2.Run = reply.run
        return run

    def get_run(self, run_id: str) -> run_pb2.Run:
        """A run with its steps."""
        reply = self.executor.GetRun(executor_service_pb2.GetRunRequest(run_id=run_id), timeout=30)
        run: run_pb2.Run = reply.run
        return run

    def watch(
        self,
        run_id: str,
        after: int = 0,
        *,
        types: list[Any] | None = None,
        node_id: str = "",
        history_only: bool = False,
    ) -> Iterator[event_pb2.RunEvent]:
        """Events of a run until it ends; reconnects and resumes if the stream breaks."""
        last = after
        failures = 0
        while True:
            try:
                for reply in self.monitor.WatchRun(
                    monitor_service_pb2.WatchRunRequest(
                        run_id=run_id,
                        after_sequence=last,
                        types=types or [],
                        node_id=node_id,
                        history_only=history_only,
                    )
                ):
                    failures = 0
                    for event in reply.events:
                        last = event.sequence
                        yield event
                return
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or failures >= 5:  # type: ignore[attr-defined]
                    raise
                failures += 1
