"""Stream tokens: watching a job (or one owner's feed) from a page that cannot send a cookie or an
`Authorization` header (EventSource, a browser WebSocket, a page on another origin).

A token is signed with the deployment's current secret (rotating it revokes every token),
read-only, scoped to one job or one owner's feed, and expires after `JOBCAST_STREAM_TOKEN_TTL_S`.
Whoever may see a job gets one in its snapshot (`stream_token`, and `links.events` carries it);
`POST /api/jobs/{id}/token` gives a fresh one to the job's owner, or in exchange for a token of
the same job that has not expired yet, so a page keeps a stream of a job that runs for hours. A
renewed token keeps its chain's birth: past `JOBCAST_STREAM_TOKEN_MAX_LIFE_S` from it, only the
owner's credentials make a new one. `DELETE /api/jobs/{id}/token` revokes every token of the job
made until then.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from pydantic import BaseModel, Field, ValidationError

from jobcast.errors import JobcastError, JobNotFound
from jobcast.redis.client import awaited
from jobcast.server.http.bodies import JOB_ID, json_response, read_json
from jobcast.server.http.openapi import JSON, Answer, Operation, json, operation
from jobcast.server.http.problems import Problem, validation_problem
from jobcast.server.http.schemas import StreamToken
from jobcast.server.security.auth import check_visible, principal
from jobcast.server.stores import job_store
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore

# itsdangerous's compact form: payload.timestamp.signature, URL-safe base64.
SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class TokenRefused(JobcastError):
    """Why a token does not open a stream: malformed, tampered, expired, or for something else."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the stream token is {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid token says: its scope, when it was made, and when its renewal chain began."""

    scope: dict[str, Any]
    issued_at: float
    born: float


class StreamTokens:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.secret is not None
        self.ttl_s = settings.stream_token_ttl_s
        self.max_life_s = settings.stream_token_max_life_s
        # The current secret only (cookies also accept the old ones): a rotation revokes tokens,
        # and their holders get fresh ones from their owner's page.
        secret = settings.secret.get_secret_value() if settings.secret is not None else "single-user"
        self._signer = URLSafeTimedSerializer(secret, salt="jobcast-stream")

    def for_job(self, job_id: str, born: float | None = None) -> str:
        return self._signer.dumps({"job": job_id, "born": int(born or time.time())})

    def for_feed(self, owner: str, born: float | None = None) -> str:
        return self._signer.dumps({"feed": owner, "born": int(born or time.time())})

    def renewal_born(self, grant: Grant) -> float:
        """The chain's birth for a token renewed from `grant`; raises TokenRefused past its life."""
        if time.time() - grant.born > self.max_life_s:
            raise TokenRefused("past its chain's life; ask for a new one with your credentials")
        return grant.born

    def expires_at(self) -> float:
        """When a token made now expires (epoch seconds)."""
        return time.time() + self.ttl_s

    def grant(self, token: str) -> Grant:
        """What the token grants; raises TokenRefused saying why it is no good."""
        if len(token) > 512 or not SHAPE.fullmatch(token):
            raise TokenRefused("malformed")
        try:
            scope, issued = self._signer.loads(token, max_age=self.ttl_s, return_timestamp=True)
        except SignatureExpired:
            raise TokenRefused("expired") from None
        except BadData:
            raise TokenRefused("tampered with or not from this deployment") from None
        if not isinstance(scope, dict) or not isinstance(scope.get("born"), int):
            raise TokenRefused("malformed")
        return Grant(scope, issued.timestamp(), float(scope["born"]))

    def check_job(self, token: str, job_id: str) -> Grant:
        grant = self.grant(token)
        if grant.scope.get("job") != job_id:
            raise TokenRefused("for another stream")
        return grant

    def feed_owner(self, token: str) -> str:
        owner = self.grant(token).scope.get("feed")
        if not isinstance(owner, str):
            raise TokenRefused("for another stream")
        return owner


async def revoked(store: JobStore, job_id: str, grant: Grant) -> bool:
    """Whether the job's tokens were revoked after this one was made."""
    raw = await awaited(store.redis.hget(store.keys.job(job_id), TOKENS_REVOKED_FIELD))
    return raw is not None and grant.issued_at <= float(raw)


# The job's field saying until when (epoch seconds) its tokens are revoked.
TOKENS_REVOKED_FIELD = "tokens_revoked_at"


TOKENS = web.AppKey("tokens", StreamTokens)


def refused(error: TokenRefused) -> Problem:
    return Problem(401, str(error), slug="bad-stream-token")


async def opens_job(request: web.Request, token: str, job_id: str) -> Grant:
    """The grant of `token` for `job_id`'s stream; raises the 401 problem unless it opens it."""
    try:
        grant = request.app[TOKENS].check_job(token, job_id)
        if await revoked(job_store(request.app, job_id), job_id, grant):
            raise TokenRefused("revoked")
    except TokenRefused as e:
        raise refused(e) from None
    return grant


def owner_mode_tokens(request: web.Request) -> StreamTokens:
    tokens = request.app[TOKENS]
    if not tokens.enabled:
        message = "single-user mode needs no stream tokens (set JOBCAST_SECRET for owners)"
        raise Problem(404, message, slug="not-found")
    return tokens


class Renewal(BaseModel):
    token: str | None = Field(
        default=None, max_length=512, description="A stream token of this job that has not expired"
    )


routes = web.RouteTableDef()


@routes.post(f"/api/jobs/{JOB_ID}/token")
@operation(
    Operation(
        "A fresh stream token for the job: for its owner, or for the holder of one that has not expired",
        {200: json("The token", StreamToken)},
        body={JSON: Renewal},
        problems=(400, 401, 404, 415, 422),
    )
)
async def job_token(request: web.Request) -> web.Response:
    tokens = owner_mode_tokens(request)
    job_id = request.match_info["job_id"]
    presented = await _presented(request)
    born = None
    if presented is not None:
        grant = await opens_job(request, presented, job_id)
        try:
            born = tokens.renewal_born(grant)
        except TokenRefused as e:
            raise refused(e) from None
    else:
        await require_owner(request, job_id)
    return json_response({"stream_token": tokens.for_job(job_id, born), "expires_at": tokens.expires_at()})


async def require_owner(request: web.Request, job_id: str) -> None:
    """The asker may see the job, which exists; JobNotFound otherwise."""
    store = job_store(request.app, job_id)
    await check_visible(store, principal(request), job_id)
    if not await awaited(store.redis.exists(store.keys.job(job_id))):
        raise JobNotFound(job_id)


@routes.delete(f"/api/jobs/{JOB_ID}/token")
@operation(
    Operation(
        "Revoke every stream token of the job made until now (its owner's fresh ones still work)",
        {204: Answer("Revoked")},
        problems=(401, 404),
    )
)
async def revoke_job_tokens(request: web.Request) -> web.Response:
    owner_mode_tokens(request)
    job_id = request.match_info["job_id"]
    await require_owner(request, job_id)
    store = job_store(request.app, job_id)
    # A token made in this very second is revoked too (their times are whole seconds).
    await awaited(store.redis.hset(store.keys.job(job_id), TOKENS_REVOKED_FIELD, str(int(time.time()))))
    return web.Response(status=204)


@routes.post("/api/events/token")
@operation(
    Operation(
        "A stream token for the asker's feed (owner mode), or a fresh one for a feed token's holder",
        {200: json("The token", StreamToken)},
        body={JSON: Renewal},
        problems=(400, 401, 404, 415, 422),
    )
)
async def feed_token(request: web.Request) -> web.Response:
    tokens = owner_mode_tokens(request)
    presented = await _presented(request)
    born = None
    if presented is not None:
        try:
            grant = tokens.grant(presented)
            owner = grant.scope.get("feed")
            if not isinstance(owner, str):
                raise TokenRefused("for another stream")
            born = tokens.renewal_born(grant)
        except TokenRefused as e:
            raise refused(e) from None
    else:
        who = principal(request)
        if who.owner is None or who.sees_all:
            raise Problem(404, "admins watch every job's feed with their key or session", slug="not-found")
        owner = who.owner
    return json_response({"stream_token": tokens.for_feed(owner, born), "expires_at": tokens.expires_at()})


async def _presented(request: web.Request) -> str | None:
    if not request.can_read_body:
        return None
    try:
        body = Renewal.model_validate(await read_json(request))
    except ValidationError as e:
        raise validation_problem(e) from None
    return body.token
