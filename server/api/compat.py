"""The API of the ASP.NET Core design jobcast grew from (an article on running reports outside
the request), for its clients: `POST /reports` with `{"userId", "reportType"}` answers 202 with a
status URL under `/reports/status/{id}`, which serves the job's snapshot."""

from __future__ import annotations

import re

from aiohttp import web
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from jobcast.protocol import Priority
from jobcast.server.api.jobs import load_snapshot
from jobcast.server.api.submit import parse_request, submit
from jobcast.server.http.bodies import JOB_ID, json_response, read_json
from jobcast.server.http.openapi import JSON, Operation, json, operation
from jobcast.server.http.problems import Problem, validation_problem
from jobcast.server.http.schemas import JobSnapshot, ReportAccepted
from jobcast.server.keys import KINDS, SETTINGS
from jobcast.server.security.auth import OWNER, Role, owner_for, principal
from jobcast.store.jobs import Submission

routes = web.RouteTableDef()


class ReportRequest(BaseModel):
    # ASP.NET Core binds camelCase by default and PascalCase case-insensitively; accept both. It
    # also ignores members it does not know (CorrelationId, which the server assigns).
    model_config = ConfigDict(extra="ignore")

    user_id: str = Field(validation_alias=AliasChoices("userId", "UserId"), min_length=1, max_length=64)
    report_type: str = Field(
        validation_alias=AliasChoices("reportType", "ReportType"),
        description="Case-insensitive; the report kind's params say which exist",
    )

    @field_validator("report_type")
    @classmethod
    def lower(cls, value: str) -> str:
        return value.lower()


# The article's field names, for problems about the report kind's params.
ARTICLE_FIELDS = {"user_id": "userId", "report_type": "reportType"}


@routes.post("/reports")
@operation(
    Operation(
        "The article's API: request a report for a user",
        {202: json("Accepted", ReportAccepted, headers=("Location",))},
        body={JSON: ReportRequest},
        problems=(400, 404, 415, 422, 429, 503),
        tags=("compat",),
    )
)
async def post_report(request: web.Request) -> web.Response:
    report = parse_request(await read_json(request), ReportRequest)
    kind = request.app[KINDS].get("report")
    if kind is None:
        raise Problem(404, "this server does not serve the report kind", slug="not-found")
    try:
        params = kind.params.model_validate({"user_id": report.user_id, "report_type": report.report_type})
    except ValidationError as e:
        problem = validation_problem(e)
        for error in problem.errors or []:
            error["field"] = ARTICLE_FIELDS.get(error["field"], error["field"])
        problem.detail = "invalid " + ", ".join(error["field"] for error in problem.errors or [])
        raise problem from None
    submission = Submission(
        kind="report",
        params=params.model_dump(mode="json"),
        priority=Priority.DEFAULT,
        max_attempts=kind.max_attempts,
        timeout_s=kind.timeout_s,
    )
    # A service key submits for the article's userId; a browser user, for itself.
    who = principal(request)
    named = report.user_id if who.role is not Role.USER and re.fullmatch(OWNER, report.user_id) else None
    job = (await submit(request.app, submission, owner=owner_for(request, named))).snapshot
    status_url = f"{request.app[SETTINGS].url_prefix}/reports/status/{job['id']}"
    return json_response(
        {"status": "Processing initiated", "correlationId": job["id"], "statusUrl": status_url},
        status=202,
        headers={"Location": status_url},
    )


@routes.get(f"/reports/status/{JOB_ID}")
@operation(
    Operation(
        "A report job's snapshot", {200: json("The job", JobSnapshot)}, problems=(404, 503), tags=("compat",)
    )
)
async def report_status(request: web.Request) -> web.Response:
    return json_response(await load_snapshot(request))
