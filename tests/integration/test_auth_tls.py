"""TLS: with CONVEYOR_TLS_* the services talk mTLS to each other, the gateway serves gRPC and
HTTPS with its certificate, and plaintext callers are turned away (embedded suite)."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from conveyor.cli.background import BackgroundSuite
from conveyor.cli.client import Client
from conveyor.executor.v1 import run_pb2
from tests.integration import harness
from tests.integration import workflows as wf


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA and one certificate for 127.0.0.1 / localhost signed by it (openssl)."""
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "k.pem", "c.csr", "c.pem")
    )
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "1", "-subj", "/CN=conveyor-test-ca")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=localhost")  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(ext))  # fmt: skip
    return {"ca": ca, "cert": cert, "key": key}


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("tls")
    pki = make_pki(tmp)
    settings = harness.embedded_settings(
        tmp,
        tls_cert_file=pki["cert"],
        tls_key_file=pki["key"],
        tls_ca_file=pki["ca"],
    )
    with BackgroundSuite(settings) as suite:
        yield {**suite.addresses, "token": suite.token, "pki": pki}


def test_a_run_goes_through_mtls_services_and_a_tls_gateway(
    tls_stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_TLS_CA_FILE", str(tls_stack["pki"]["ca"]))
    with Client(tls_stack["grpc"], token=tls_stack["token"]) as client:
        job = client.create_job(wf.doc("tls-quick", [wf.cmd("a", ["true"])], [])).job
        run = client.start_run(job.job_id, {})
        events = list(client.watch(run.run_id))
    assert events[-1].run_state_changed.state == run_pb2.RUN_STATE_SUCCEEDED
    https = tls_stack["http"].replace("http://", "https://")
    caller = httpx.get(
        f"{https}/v1/caller",
        headers={"Authorization": f"Bearer {tls_stack['token']}"},
        verify=ssl.create_default_context(cafile=str(tls_stack["pki"]["ca"])),
        timeout=30,
    )
    assert caller.json()["name"] == "dev"


def test_plaintext_and_certificateless_callers_are_turned_away(tls_stack: dict[str, Any]) -> None:
    with grpc.insecure_channel(tls_stack["grpc"]) as plain:
        with pytest.raises(grpc.RpcError) as err:
            plain.unary_unary("/conveyor.gateway.v1.GatewayService/GetServerInfo")(b"", timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # An internal service wants a client certificate from the CA, not just TLS.
    ca_only = grpc.ssl_channel_credentials(root_certificates=tls_stack["pki"]["ca"].read_bytes())
    with grpc.secure_channel(tls_stack["executor"], ca_only) as ch:
        with pytest.raises(grpc.RpcError) as refused:
            ch.unary_unary("/conveyor.executor.v1.ExecutorService/GetRun")(b"", timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
