"""Configuration shared by every service, read from CONVEYOR_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide settings; embedded defaults, distributed values come from the environment.

    The embedded default needs nothing: SQLite in the data dir, Celery's in-memory broker and an
    in-process event bus. Distributed mode sets CONVEYOR_DATABASE_URL (PostgreSQL),
    CONVEYOR_BROKER_URL (Redis or RabbitMQ) and CONVEYOR_EVENTS_URL (Redis).
    """

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore")

    data_dir: Path = Field(default=Path(".conveyor"), description="Embedded state folder.")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty = SQLite in data_dir.")
    broker_url: str = Field(default="memory://", description="Celery broker URL.")
    events_url: str = Field(default="memory://", description="memory:// or a redis:// URL.")
    artifact_dir: Path | None = Field(default=None, description="Local artifact folder.")

    translator_addr: str = "127.0.0.1:50061"
    executor_addr: str = "127.0.0.1:50062"
    monitor_addr: str = "127.0.0.1:50063"
    scheduler_addr: str = "127.0.0.1:50064"
    gateway_addr: str = "127.0.0.1:50051"
    http_addr: str = "127.0.0.1:8080"

    inline_output_cap: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    live_log_cap: int = Field(
        default=8 * 1024 * 1024,
        ge=0,
        le=256 * 1024 * 1024,
        description="Characters of each output stream of an attempt streamed live (0: none).",
    )
    default_step_timeout_s: float = Field(default=3600.0, gt=0)
    worker_concurrency: int = Field(default=4, ge=1, le=256)
    worker_queues: str = Field(default="default", description="Comma-separated queue names.")
    requeue_after_s: float = Field(
        default=30.0, gt=0, description="A QUEUED step older than this is sent again."
    )
    attempt_heartbeat_s: float = Field(
        default=5.0, gt=0, le=300, description="How often a worker stamps its running attempts."
    )
    worker_lost_after_s: float = Field(
        default=45.0, gt=0, description="A running attempt silent this long is WORKER_LOST."
    )
    worker_handoff: bool = Field(
        default=True,
        description="A worker runs a successor it made ready on the same queue itself.",
    )
    secrets_file: Path | None = Field(
        default=None,
        description="Secrets for templates (secrets.NAME): a JSON object or KEY=VALUE lines.",
    )
    worker_heartbeat_s: int = Field(
        default=1, ge=1, le=60, description="Celery event heartbeat period of a worker (s)."
    )
    alert_interval_s: float = Field(default=2.0, gt=0, le=3600, description="Alert evaluation.")
    metrics_host: str = Field(default="127.0.0.1", description="Bind host of /metrics servers.")
    translator_metrics_port: int = Field(default=0, ge=0, le=65535, description="0 = off.")
    executor_metrics_port: int = Field(default=0, ge=0, le=65535, description="0 = off.")
    monitor_metrics_port: int = Field(default=0, ge=0, le=65535, description="0 = off.")
    scheduler_metrics_port: int = Field(default=0, ge=0, le=65535, description="0 = off.")
    trace_exporter: Literal["", "console"] = Field(
        default="", description="'' = spans are not exported; 'console' prints them."
    )
    log_level: str = "INFO"
    log_json: bool = True

    # --- access control: the public edge and the internal credential ----------------------
    internal_token: str = Field(
        default="",
        description="Secret every internal call carries (required in distributed mode; "
        "embedded: a random one per process).",
    )
    cors_origins: str = Field(
        default="", description="Comma-separated browser origins allowed to call the HTTP API."
    )
    http_max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="HTTP body limit."
    )
    tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate of this process (gRPC and the gateway's HTTP)."
    )
    tls_key_file: Path | None = Field(default=None, description="PEM key of tls_cert_file.")
    tls_ca_file: Path | None = Field(
        default=None,
        description="PEM CA of every Conveyor certificate; set = internal services require "
        "client certificates (mTLS) and channels verify servers against it.",
    )
    tls_server_name: str = Field(
        default="", description="Name the certificates are checked against, when not the host."
    )

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'conveyor.db').resolve()}"

    def resolved_artifact_dir(self) -> Path:
        """The local artifact folder, defaulting to data_dir/artifacts."""
        return (self.artifact_dir or self.data_dir / "artifacts").resolve()

    @property
    def embedded(self) -> bool:
        """True when the broker is Celery's in-process memory transport."""
        return self.broker_url.startswith("memory://")
