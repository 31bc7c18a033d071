"""One typed configuration for the web server and the worker, read from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A path of one or more segments, without a trailing slash ("" for the root).
URL_PREFIX = r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$"


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
    # The path jobcast is served under: "/jobs" when it is mounted into another aiohttp app
    # (jobcast.server.setup does this) or behind a proxy that strips that prefix. Every link in
    # snapshots and pages starts with it.
    url_prefix: str = Field(default="", pattern=URL_PREFIX)

    # Streams
    sse_retry_ms: int = 2000
    heartbeat_s: float = 15.0
    ws_ping_interval_s: float = 20.0
    watcher_buffer: int = Field(default=256, ge=8)
    # A resuming watcher's missed events are read from history this many at a time (at most half
    # of watcher_buffer), each page once the last has left for the socket.
    replay_page_events: int = Field(default=100, ge=1)
    write_timeout_s: float = 30.0
    max_body_bytes: int = 1024 * 1024
    shutdown_timeout_s: float = 10.0

    # Redis: command retries (with jittered backoff) before a request gives up with 503; the worker
    # retries longer, and its poll loop outlives any outage.
    redis_retries: int = Field(default=3, ge=0)
    worker_redis_retries: int = Field(default=20, ge=0)

    # Redis data
    history_max_events: int = Field(default=10_000, ge=10)
    # Job records, histories, indexes and result files are kept this long after a job's last event.
    retention_s: int = Field(default=7 * 24 * 3600, ge=60)

    # Submission
    # Over this many waiting jobs (queued or between attempts), submissions get 429. 0: no limit.
    max_waiting_jobs: int = Field(default=10_000, ge=0)
    backpressure_retry_after_s: int = Field(default=5, ge=1)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=1)
    max_delay_s: int = Field(default=24 * 3600, ge=0)
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    # Uploads and result files. On several machines, mount one shared volume here on every web
    # server and worker.
    files_dir: Path = Path("data/files")

    # Worker
    queue_name: str = "jobcast:queue"
    # Submissions wake idle workers at once; this tick only catches lapsed leases and wakeups lost
    # in a reconnect.
    poll_delay_s: float = Field(default=0.5, gt=0)
    worker_max_jobs: int = Field(default=10, ge=1)
    # A crashed worker's job is picked up again once its lease lapses; the worker renews it every
    # third of this while the job runs.
    lease_s: float = Field(default=10.0, ge=1.0)
    shutdown_grace_s: float = 20.0
    progress_rate_hz: float = Field(default=10.0, gt=0)
    retry_base_s: float = 1.0
    retry_max_s: float = 60.0
    worker_heartbeat_s: float = Field(default=5.0, gt=0)
    # More job kinds (modules on the import path) and kinds left out (a leading `-`), comma
    # separated, besides those installed packages declare: "myapp.jobs,-builtin".
    kinds: str = ""
    # Per-kind overrides of the kind's own policy, as JSON: {"report": 120}.
    kind_timeouts_s: dict[str, float] = Field(default_factory=dict)
    kind_max_attempts: dict[str, int] = Field(default_factory=dict)
    # Processes for CPU-bound kinds (aggregate); 0: one per core.
    cpu_processes: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _delays_within_retention(self) -> Settings:
        # A job delayed past the retention would lose its record before it ever ran.
        if self.max_delay_s >= self.retention_s:
            raise ValueError("max_delay_s must be shorter than retention_s")
        return self
