"""`GET /api/openapi.json`: an OpenAPI 3.1 document generated from the app itself.

Each handler carries its `Operation` (the `@operation(...)` decorator: its request models, its
answers' models). The document walks the app's router, so every route is in it and nothing else
is; a route whose handler has no `Operation` is a bug the route-coverage test catches. Schemas
come from the pydantic models that validate requests and describe answers, and each kind's
params from the kind's own model, so nothing here is written by hand twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from jobcast.server.http.problems import CONTENT_TYPE as PROBLEM
from jobcast.server.http.schemas import JobEvent, ProblemDocument, QueueEvent
from jobcast.server.keys import KINDS, SETTINGS

H = TypeVar("H", bound=Callable[..., Any])

JSON = "application/json"
MULTIPART = "multipart/form-data"
FORM = "application/x-www-form-urlencoded"
SSE = "text/event-stream"
HTML = "text/html"
PAGE: dict[str, Any] = {"type": "string", "contentMediaType": "text/html"}
REF = "#/components/schemas/{model}"


Schema = type[BaseModel] | dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """One answer of an operation: per content type, a model or a plain schema."""

    description: str
    content: dict[str, Schema] = field(default_factory=dict)
    headers: tuple[str, ...] = ()


def json(description: str, model: Schema, *, headers: tuple[str, ...] = ()) -> Answer:
    return Answer(description, {JSON: model}, headers)


TEXT: dict[str, Any] = {"type": "string"}
BINARY: dict[str, Any] = {"type": "string", "format": "binary"}


@dataclass(frozen=True)
class Operation:
    summary: str
    answers: dict[int, Answer]
    query: type[BaseModel] | None = None
    # The request body, per content type (a model or a schema), or a function of the app that
    # gives it (submissions: one schema per kind the app knows).
    body: dict[str, Schema] | Callable[[web.Application], dict[str, Schema]] | None = None
    headers: dict[str, str] = field(default_factory=dict)  # request header: description
    problems: tuple[int, ...] = ()
    tags: tuple[str, ...] = ("api",)
    # The operationId (what generated clients name the method); default: the handler's name.
    id: str | None = None


def operation(op: Operation) -> Callable[[H], H]:
    """Attach an operation's description to its handler."""

    def mark(handler: H) -> H:
        handler.__jobcast_operation__ = op  # type: ignore[attr-defined]  # read back by build_document
        return handler

    return mark


PROBLEM_TEXT = {
    400: "Malformed input",
    401: "No valid credentials, or credentials that may not do this",
    404: "No such job",
    409: "Not possible in the job's state",
    410: "Gone: the result file is past its retention",
    413: "Too large",
    415: "Unsupported content type",
    422: "Invalid input: `errors` names each bad field",
    429: "Too many jobs are waiting (see Retry-After)",
    503: "Redis is unreachable (see Retry-After)",
}


class Schemas:
    """The components' schemas, filled as operations name models."""

    def __init__(self) -> None:
        self.models: dict[type[BaseModel], JsonSchemaMode] = {}
        self.extra: dict[str, dict[str, Any]] = {}

    def of(self, schema: Schema, mode: JsonSchemaMode = "serialization") -> dict[str, Any]:
        """A schema as is, or a reference to a model's (as the server reads it, for a request;
        as it writes it, for an answer)."""
        if isinstance(schema, dict):
            return schema
        self.models[schema] = mode
        return {"$ref": REF.format(model=schema.__name__)}

    def components(self) -> dict[str, Any]:
        _, defs = models_json_schema(list(self.models.items()), ref_template=REF)
        return {**defs.get("$defs", {}), **self.extra}


# A named group of the regex aiohttp compiles for a route: `(?P<job_id>[0-9a-f]{32})`.
NAMED_GROUP = re.compile(r"\(\?P<(\w+)>((?:[^()]|\([^()]*\))*)\)")


def path_and_params(resource: web.AbstractResource) -> tuple[str, list[dict[str, Any]]]:
    """The OpenAPI path of an aiohttp resource (`/api/jobs/{job_id}`), and its path parameters,
    each with the route's own pattern."""
    pattern = resource.get_info().get("pattern")
    groups = NAMED_GROUP.findall(pattern.pattern) if pattern is not None else []
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": f"^{regex}$"}}
        for name, regex in groups
    ]
    return resource.canonical, params


def query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def describe(op: Operation, schemas: Schemas, app: web.Application) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "tags": list(op.tags)}
    params: list[dict[str, Any]] = []
    if op.query is not None:
        params += query_params(op.query)
    for name, description in op.headers.items():
        params.append({"name": name, "in": "header", "description": description, "schema": TEXT})
    if params:
        out["parameters"] = params
    if op.body is not None:
        body = op.body(app) if callable(op.body) else op.body
        content = {kind: {"schema": schemas.of(schema, "validation")} for kind, schema in body.items()}
        out["requestBody"] = {"required": True, "content": content}
    responses: dict[str, Any] = {}
    for status, answer in op.answers.items():
        response: dict[str, Any] = {"description": answer.description}
        if answer.content:
            response["content"] = {kind: {"schema": schemas.of(s)} for kind, s in answer.content.items()}
        if answer.headers:
            response["headers"] = {name: {"schema": TEXT} for name in answer.headers}
        responses[str(status)] = response
    for status in op.problems:
        problem: dict[str, Any] = {PROBLEM: {"schema": schemas.of(ProblemDocument)}}
        if "pages" in op.tags:  # a browser that navigates gets the error as a page
            problem[HTML] = {"schema": PAGE}
        responses.setdefault(
            str(status), {"description": PROBLEM_TEXT.get(status, "An error"), "content": problem}
        )
    out["responses"] = dict(sorted(responses.items()))
    return out


def params_schema_name(kind: str) -> str:
    return "Params_" + re.sub(r"[^A-Za-z0-9_.-]", "_", kind)


def params_schema(params: type[BaseModel]) -> dict[str, Any]:
    """A kind's params schema, written where a request body uses it rather than referenced: a
    generator then knows it is input, and leaves the params with defaults optional
    (openapi-typescript makes a defaulted field of a shared component required). Its nested
    models are the document's components (`build_document` adds each kind's `Params_<kind>`)."""
    schema = params.model_json_schema(ref_template=REF)
    schema.pop("$defs", None)
    # Named by where it is (`SubmitJobJsonSubmitDemoParams`), not twice by its model's title.
    schema.pop("title", None)
    return schema


INFO = {
    "title": "jobcast",
    "version": "1",
    "description": "Submit long-running jobs, follow their progress live (SSE, WebSocket), "
    "cancel, retry, download results. Every error is application/problem+json.",
    "license": {"name": "MIT", "identifier": "MIT"},
}

# How a request says who it is (docs/security.md). With owner mode off every request is admitted,
# and in owner mode a visitor with none of them gets an anonymous owner: each is optional (`{}`).
SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`jobcast new-key`): a service's, or an admin's.",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "jobcast",
        "description": "A browser's owner cookie (`__Host-jobcast` or `__Secure-jobcast` over HTTPS).",
    },
    "streamToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "A job's stream token (its snapshot's `stream_token`): that job's streams and output.",
    },
}
SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}, {"session": []}, {}]
STREAM_SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}, {"session": []}, {"streamToken": []}, {}]


def build_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of `app` (a jobcast app, as `create_app` builds it)."""
    schemas, paths = describe_routes(app)
    for name, kind in app[KINDS].items():
        params = kind.params.model_json_schema(ref_template=REF)
        schemas.extra.update(params.pop("$defs", {}))
        schemas.extra[params_schema_name(name)] = params
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "servers": [{"url": app[SETTINGS].url_prefix or "/", "description": "this server"}],
        "security": SECURITY,
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": schemas.components(), "securitySchemes": SECURITY_SCHEMES},
    }


def client_document(app: web.Application) -> dict[str, Any]:
    """The shapes every deployment shares (snapshots, events, problems, answers), without paths
    and without any kind's params, which differ by deployment: what the JS client's types are
    generated from (clients/js/types/api.d.ts, by scripts/js-types)."""
    schemas, _ = describe_routes(app)
    shared = {
        name: schema
        for name, schema in schemas.components().items()
        if "/Params" not in orjson.dumps(schema).decode()
    }
    return {"openapi": "3.1.0", "info": INFO, "paths": {}, "components": {"schemas": shared}}


def describe_routes(app: web.Application) -> tuple[Schemas, dict[str, dict[str, Any]]]:
    schemas = Schemas()
    schemas.of(JobEvent)
    schemas.of(QueueEvent)
    paths: dict[str, dict[str, Any]] = {}
    prefix = app[SETTINGS].url_prefix
    ids: dict[str, str] = {}
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        op = getattr(route.handler, "__jobcast_operation__", None)
        if op is None:
            raise LookupError(f"{route.method} {route.resource.canonical} has no @operation")
        path, params = path_and_params(route.resource)
        entry = describe(op, schemas, app)
        # The handler's name: what generated clients call the method (`submit_job`, `get_job`).
        entry["operationId"] = operation_id = op.id or getattr(route.handler, "__name__", "")
        where = f"{route.method} {path}"
        if not operation_id or ids.setdefault(operation_id, where) != where:
            raise LookupError(f"{where}: operationId {operation_id!r} is also {ids.get(operation_id)}'s")
        if any(p["name"] == "token" for p in entry.get("parameters", [])):
            entry["security"] = STREAM_SECURITY
        if params:
            entry["parameters"] = params + entry.get("parameters", [])
        paths.setdefault(prefix + path, {})[route.method.lower()] = entry
    return schemas, paths


if __name__ == "__main__":
    # `python -m jobcast.server.http.openapi`: the client document, for scripts/js-types.
    from jobcast.server.app import create_app

    print(
        orjson.dumps(
            client_document(create_app()), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        ).decode()
    )
