"""One typed configuration for the web server and the worker, read from the environment."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of jobcast. Environment: `REDIS_URL` and `JOBCAST_<NAME>`; flags override."""

    model_config = SettingsConfigDict(env_prefix="JOBCAST_", extra="ignore", populate_by_name=True)

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "JOBCAST_REDIS_URL"),
    )
    # Pub/sub channels are global to a Redis server (not per database), so every key and channel
    # carries this prefix; two deployments can share one Redis by choosing different prefixes.
    key_prefix: str = "jobcast"

    host: str = "127.0.0.1"
    port: int = 8000

    # Streams
    sse_retry_ms: int = 2000
    heartbeat_s: float = 15.0
    ws_ping_interval_s: float = 20.0
    watcher_buffer: int = Field(default=256, ge=8)
    write_timeout_s: float = 30.0
    max_body_bytes: int = 1024 * 1024
    shutdown_timeout_s: float = 10.0

    # Redis data
    history_max_events: int = Field(default=10_000, ge=10)
    retention_s: int = Field(default=7 * 24 * 3600, ge=60)

    # Worker
    queue_name: str = "jobcast:queue"
    poll_delay_s: float = Field(default=0.05, gt=0)
    worker_max_jobs: int = Field(default=10, ge=1)
    # A crashed worker's job is picked up again once its lease lapses; the worker renews it every
    # third of this while the job runs.
    lease_s: float = Field(default=10.0, ge=1.0)
    shutdown_grace_s: float = 20.0
    progress_rate_hz: float = Field(default=10.0, gt=0)
    retry_base_s: float = 1.0
    retry_max_s: float = 60.0
