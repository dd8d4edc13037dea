"""Configuration shared by every service, read from CONVEYOR_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
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
        default=2.0, gt=0, le=300, description="How often a worker stamps its running attempts."
    )
    worker_lost_after_s: float = Field(
        default=10.0, gt=0, description="A running attempt silent this long is WORKER_LOST."
    )
    worker_handoff: bool = Field(
        default=True,
        description="A worker runs a successor it made ready on the same queue itself.",
    )
    celery_task_events: bool = Field(
        default=False,
        description=(
            "Celery task events (task-sent, task-received, ...) for tools such as Flower; "
            "Conveyor's monitor needs only worker events."
        ),
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

    # --- Artifact service (object store for step output and declared files) ---
    artifacts_addr: str = "127.0.0.1:50065"
    artifacts_url: str = Field(
        default="",
        description="file:///folder or s3://bucket?endpoint=http://host:port; '' = file in"
        " artifact_dir.",
    )
    artifacts_access_key: str = Field(default="", description="S3 key; else AWS_ACCESS_KEY_ID.")
    artifacts_secret_key: str = Field(
        default="", description="S3 secret; else AWS_SECRET_ACCESS_KEY."
    )
    artifacts_region: str = Field(default="", description="S3 region; else AWS_REGION.")
    artifacts_part_size: int = Field(
        default=8 * 1024 * 1024,
        ge=5 * 1024 * 1024,
        le=1024 * 1024 * 1024,
        description="Multipart part size of S3 uploads (bytes); bounds the service's memory.",
    )
    artifacts_max_bytes: int = Field(
        default=64 * 1024**3, ge=1, description="Largest artifact accepted (bytes)."
    )
    artifacts_metrics_port: int = Field(default=0, ge=0, le=65535, description="0 = off.")
    retention_sweep_interval_s: float = Field(
        default=3600.0,
        ge=0,
        description="How often the artifact service applies retention (0: never).",
    )
    artifacts_max_declared_files: int = Field(
        default=1000, ge=1, le=100_000, description="Files one step may upload via data.artifacts."
    )

    # --- Recovery: lost workers, recording across outages, graceful shutdown ---
    reap_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often the executor looks for attempts whose worker went silent.",
    )
    record_retry_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="How long a worker retries recording a step's result while the database "
        "is unreachable before handing the message back for a new attempt.",
    )
    lost_reattempts: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Attempts of a step lost with their worker that are re-attempted at once "
        "whatever the node's retries (later losses follow the retry policy).",
    )
    shutdown_grace_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="On SIGTERM, how long running steps may take to finish before they are "
        "handed back as a new attempt.",
    )

    @model_validator(mode="after")
    def _heartbeat_fits_lost_after(self) -> Settings:
        """A lost-worker cutoff shorter than two heartbeats would fail live attempts."""
        if self.worker_lost_after_s < 2 * self.attempt_heartbeat_s:
            raise ValueError(
                "CONVEYOR_WORKER_LOST_AFTER_S must be at least twice CONVEYOR_ATTEMPT_HEARTBEAT_S"
            )
        return self

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

    # --- Safe step execution: template budget, egress control, confinement ---------------
    template_max_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds an attempt may spend rendering templates (also within timeout_s).",
    )
    template_max_output: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Characters one rendered template value or field may have.",
    )
    template_max_steps: int = Field(
        default=1_000_000,
        ge=1000,
        le=1_000_000_000,
        description="Loop iterations, calls and attribute reads rendering an attempt may do.",
    )
    egress_allow: str = Field(
        default="",
        description="Comma-separated hosts, IPs or CIDRs (optionally host:port) action.http and"
        " action.notify may reach even when denied by default.",
    )
    egress_deny: str = Field(
        default="",
        description="Comma-separated hosts, IPs or CIDRs (optionally host:port) never reached;"
        " wins over egress_allow.",
    )
    step_work_root: Path | None = Field(
        default=None,
        description="Where each attempt gets its own working directory; default data_dir/steps.",
    )
    keep_failed_workdirs: bool = Field(
        default=False, description="Keep the working directory of a failed attempt."
    )
    step_user: str = Field(
        default="auto",
        description="User steps run as: 'auto' = nobody when the worker runs as root, else the"
        " worker's own user; 'off' = the worker's user; or a user name or uid.",
    )
