"""`GET /api/jobs/{id}/result`: a succeeded job's result, as JSON or as its file."""

from __future__ import annotations

from aiohttp import web

from jobcast.server.api import JOB_ID, json_response, load_snapshot
from jobcast.server.keys import FILES
from jobcast.server.openapi import BINARY, JSON, Answer, Operation, operation
from jobcast.server.problems import Problem

routes = web.RouteTableDef()


@routes.get(f"/api/jobs/{JOB_ID}/result")
@operation(
    Operation(
        "A succeeded job's result: its JSON, or its file",
        {200: Answer("The result", {JSON: {}, "*/*": BINARY})},
        problems=(404, 409, 410, 503),
    )
)
async def result(request: web.Request) -> web.StreamResponse:
    job = await load_snapshot(request)
    if job["state"] != "succeeded":
        raise Problem(409, f"the job has no result: it is {job['state']}", slug="no-result")
    file = job["result"].get("file") if isinstance(job["result"], dict) else None
    if not file:
        return json_response(job["result"])
    path = request.app[FILES].job(job["id"]).results / file["name"]
    if not path.is_file():
        raise Problem(410, "the result file is gone (past its retention)", slug="gone")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": file["content_type"],
            "Content-Disposition": f'attachment; filename="{file["name"]}"',
        },
    )
