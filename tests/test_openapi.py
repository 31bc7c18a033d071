"""The OpenAPI document: every route and nothing else, generated from the app; and schemathesis
fuzzing the running server against it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from jobcast.server.app import create_app
from jobcast.server.http.openapi import build_document
from tests.helpers import get_json

ROOT = Path(__file__).resolve().parent.parent

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)


def registered_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route, with `{name:regex}` written `{name}` as OpenAPI does."""
    out = set()
    for route in app.router.routes():
        if route.method != "HEAD":
            path = re.sub(r"\{(\w+):(?:[^{}]|\{[^{}]*\})*\}", r"{\1}", route.resource.canonical)
            out.add((route.method, path))
    return out


async def test_the_document_covers_every_route_and_nothing_else(client) -> None:
    doc = await get_json(client, "/api/openapi.json")
    assert doc["openapi"] == "3.1.0"
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == registered_routes(client.app)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["responses"], (method, path)
    # Path parameters carry the route's own pattern.
    (job_id,) = doc["paths"]["/api/jobs/{job_id}"]["get"]["parameters"]
    assert job_id["schema"]["pattern"] == "^[0-9a-f]{32}$"


async def test_redoclys_recommended_rules_find_no_error(client, tmp_path: Path) -> None:
    doc = await get_json(client, "/api/openapi.json")
    # What generated clients need: a name for each method, how requests authenticate, a server.
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z][a-z_]*", i) for i in ids), ids
    assert doc["paths"]["/api/jobs"]["post"]["operationId"] == "submit_job"
    assert set(doc["components"]["securitySchemes"]) == {"apiKey", "session", "streamToken"}
    assert {"streamToken": []} in doc["paths"]["/api/jobs/{job_id}/events"]["get"]["security"]
    assert doc["servers"] == [{"url": "/", "description": "this server"}]
    assert doc["info"]["license"]["identifier"] == "MIT"
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(doc))
    redocly = ROOT / "clients" / "js" / "node_modules" / ".bin" / "redocly"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = await asyncio.to_thread(
        subprocess.run,
        [str(redocly), "lint", str(path), "--extends", "recommended", "--format", "summary"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0 and "error " not in done.stdout, done.stdout + done.stderr


async def test_each_kinds_params_come_from_the_kind_itself(client) -> None:
    doc = await get_json(client, "/api/openapi.json")
    kinds = (await get_json(client, "/api/kinds"))["kinds"]
    schemas = doc["components"]["schemas"]
    for kind in kinds:
        assert schemas[f"Params_{kind['name']}"]["properties"] == kind["params_schema"]["properties"]
    body = doc["paths"]["/api/jobs"]["post"]["requestBody"]["content"]
    json_kinds = {v["properties"]["kind"]["const"] for v in body["application/json"]["schema"]["oneOf"]}
    assert json_kinds == {k["name"] for k in kinds if not k["takes_upload"]}
    assert body["multipart/form-data"]["schema"]["properties"]["kind"]["enum"] == ["convert"]


def test_a_route_without_a_description_is_caught(settings) -> None:
    app = create_app(settings)

    async def undocumented(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/undocumented", undocumented)
    try:
        build_document(app)
    except LookupError as e:
        assert "GET /api/undocumented has no @operation" in str(e)
    else:
        raise AssertionError("an undocumented route went unnoticed")


ADMIN_KEY = "jc_schemathesis-admin-key-0123456789"


@pytest.mark.parametrize("mode", ["single-user", "owner"])
async def test_schemathesis_finds_no_server_error_and_every_answer_conforms(
    spawn, tmp_path: Path, mode: str
) -> None:
    env = {}
    auth: list[str] = []
    if mode == "owner":
        digest = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()
        env = {
            "JOBCAST_SECRET": "schemathesis-secret-that-is-long-enough",
            "JOBCAST_API_KEYS": f"ops:admin:{digest}",
        }
        auth = ["--header", f"Authorization: Bearer {ADMIN_KEY}"]
    web_ = spawn("web", **env)
    await web_.wait_http()
    st = Path(sys.executable).parent / "st"
    command = [
        str(st), "run", f"{web_.url}/api/openapi.json",
        "--checks", CHECKS,
        # Streams last as long as their job (or for ever, the feed): they are tested elsewhere.
        "--exclude-tag", "streams",
        "--max-time", "12",
        # One worker: schemathesis's workers are threads, and CPython 3.11's ast module is not
        # thread-safe (gh-106905: "AST constructor recursion depth mismatch" inside hypothesis).
        "--workers", "1",
        "--seed", "1",
        *auth,
    ]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    assert "unhandled error" not in web_.log(), web_.log()[-4000:]
