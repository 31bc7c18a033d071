"""Stream tokens: watching a job (or one owner's feed) from a page that cannot send a cookie or an
`Authorization` header (EventSource, a browser WebSocket, a page on another origin).

A token is signed with the deployment's secret, read-only, scoped to one job or one owner's feed,
and expires after `JOBCAST_STREAM_TOKEN_TTL_S`. Whoever may see a job gets one in its snapshot
(`stream_token`, and `links.events` carries it); `POST /api/jobs/{id}/token` gives a fresh one to
the job's owner, or in exchange for a token of the same job that has not expired yet, so a page
keeps a stream of a job that runs for hours.
"""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from pydantic import BaseModel, Field, ValidationError

from jobcast.errors import JobcastError, JobNotFound
from jobcast.server.http.bodies import JOB_ID, json_response, read_json
from jobcast.server.http.openapi import JSON, Operation, json, operation
from jobcast.server.http.problems import Problem, validation_problem
from jobcast.server.http.schemas import StreamToken
from jobcast.server.keys import STORE
from jobcast.server.security.auth import check_visible, principal
from jobcast.settings import Settings

# itsdangerous's compact form: payload.timestamp.signature, URL-safe base64.
SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class TokenRefused(JobcastError):
    """Why a token does not open a stream: malformed, tampered, expired, or for something else."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the stream token is {reason}")
        self.reason = reason


class StreamTokens:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.secret is not None
        self.ttl_s = settings.stream_token_ttl_s
        secrets = [s.get_secret_value() for s in settings.old_secrets]
        if settings.secret is not None:
            secrets.append(settings.secret.get_secret_value())
        self._signer = URLSafeTimedSerializer(secrets or ["single-user"], salt="jobcast-stream")

    def for_job(self, job_id: str) -> str:
        return self._signer.dumps({"job": job_id})

    def for_feed(self, owner: str) -> str:
        return self._signer.dumps({"feed": owner})

    def expires_at(self) -> float:
        """When a token made now expires (epoch seconds)."""
        return time.time() + self.ttl_s

    def scope(self, token: str) -> dict[str, Any]:
        """The token's scope; raises TokenRefused saying why it is no good."""
        if len(token) > 512 or not SHAPE.fullmatch(token):
            raise TokenRefused("malformed")
        try:
            scope = self._signer.loads(token, max_age=self.ttl_s)
        except SignatureExpired:
            raise TokenRefused("expired") from None
        except BadData:
            raise TokenRefused("tampered with or not from this deployment") from None
        if not isinstance(scope, dict):
            raise TokenRefused("malformed")
        return scope

    def check_job(self, token: str, job_id: str) -> None:
        if self.scope(token).get("job") != job_id:
            raise TokenRefused("for another stream")

    def feed_owner(self, token: str) -> str:
        owner = self.scope(token).get("feed")
        if not isinstance(owner, str):
            raise TokenRefused("for another stream")
        return owner


TOKENS = web.AppKey("tokens", StreamTokens)


def refused(error: TokenRefused) -> Problem:
    return Problem(401, str(error), slug="bad-stream-token")


def opens_job(tokens: StreamTokens, token: str, job_id: str) -> None:
    """Raises the 401 problem unless `token` opens `job_id`'s stream."""
    try:
        tokens.check_job(token, job_id)
    except TokenRefused as e:
        raise refused(e) from None


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
    if presented is not None:
        opens_job(tokens, presented, job_id)
    else:
        await check_visible(request.app[STORE], principal(request), job_id)
        if not await request.app[STORE].redis.exists(request.app[STORE].keys.job(job_id)):
            raise JobNotFound(job_id)
    return json_response({"stream_token": tokens.for_job(job_id), "expires_at": tokens.expires_at()})


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
    if presented is not None:
        try:
            owner = tokens.feed_owner(presented)
        except TokenRefused as e:
            raise refused(e) from None
    else:
        who = principal(request)
        if who.owner is None or who.sees_all:
            raise Problem(404, "admins watch every job's feed with their key or session", slug="not-found")
        owner = who.owner
    return json_response({"stream_token": tokens.for_feed(owner), "expires_at": tokens.expires_at()})


async def _presented(request: web.Request) -> str | None:
    if not request.can_read_body:
        return None
    try:
        body = Renewal.model_validate(await read_json(request))
    except ValidationError as e:
        raise validation_problem(e) from None
    return body.token
