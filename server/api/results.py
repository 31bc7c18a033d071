"""`GET /api/jobs/{id}/result`: a succeeded job's result, as JSON or as its file."""

from __future__ import annotations

from aiohttp import web

from jobcast.files.storage import LocalFile, Redirect
from jobcast.server.api.jobs import load_snapshot
from jobcast.server.http.bodies import JOB_ID, json_response
from jobcast.server.http.openapi import BINARY, JSON, Answer, Operation, operation
from jobcast.server.http.problems import Problem
from jobcast.server.keys import STORAGE

routes = web.RouteTableDef()


@routes.get(f"/api/jobs/{JOB_ID}/result")
@operation(
    Operation(
        "A succeeded job's result: its JSON, or its file",
        {200: Answer("The result", {JSON: {}, "*/*": BINARY})},
        problems=(404, 409, 410, 503),
    )
)
async def get_result(request: web.Request) -> web.StreamResponse:
    job = await load_snapshot(request)
    if job["state"] != "succeeded":
        raise Problem(409, f"the job has no result: it is {job['state']}", slug="no-result")
    file = job["result"].get("file") if isinstance(job["result"], dict) else None
    if not file:
        return json_response(job["result"])
    source = await request.app[STORAGE].open_result(job["id"], file["name"])
    if source is None:
        raise Problem(410, "the result file is gone (past its retention)", slug="gone")
    headers = {
        "Content-Type": file["content_type"],
        "Content-Disposition": f'attachment; filename="{file["name"]}"',
    }
    if isinstance(source, LocalFile):
        return web.FileResponse(source.path, headers=headers)
    if isinstance(source, Redirect):
        raise web.HTTPTemporaryRedirect(source.url)
    response = web.StreamResponse(headers={**headers, "Content-Length": str(source.size)})
    await response.prepare(request)
    async for chunk in source.chunks:
        await response.write(chunk)
    await response.write_eof()
    return response
