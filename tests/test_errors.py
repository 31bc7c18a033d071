"""jobcast's errors are one family: whatever jobcast raises to a caller is a JobcastError, on
either side of the wire; only exceptions that never leave their module stand apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from jobcast import PermanentError
from jobcast.client import ApiError
from jobcast.client import JobcastError as ClientJobcastError
from jobcast.errors import JobcastError, SubmitRefused, TooManyWaiting
from jobcast.queries.listing import BadCursor
from jobcast.registry import KindsError
from jobcast.server.http.problems import Problem, problem_for

ROOT = Path(__file__).resolve().parent.parent
# Control flow inside one room, never raised to a caller: a frame codec's refusal, an outbox the
# connection is cut from, and two built-in kinds' own signals.
INTERNAL = {"ProtocolError", "OutboxClosed", "DemoFailure", "Stopped"}


@pytest.mark.parametrize(
    "error", [ApiError, Problem, SubmitRefused, TooManyWaiting, PermanentError, KindsError]
)
def test_each_family_derives_from_the_one_base(error: type[Exception]) -> None:
    assert issubclass(error, JobcastError)


def test_the_client_names_the_same_base() -> None:
    assert ClientJobcastError is JobcastError
    answer = ApiError(404, {"title": "Not Found", "detail": "no job x"})
    assert isinstance(answer, JobcastError) and answer.status == 404 and str(answer) == "404: no job x"


def test_a_bad_cursor_is_still_a_value_error() -> None:
    assert issubclass(BadCursor, ValueError)


def test_an_error_that_escapes_a_handler_is_answered_as_a_client_error() -> None:
    assert problem_for(BadCursor("bad cursor")).status == 400


def test_no_other_exception_family_in_the_product() -> None:
    strays = []
    for top in ("jobcast", "server", "jobs"):
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ClassDef) or node.name in INTERNAL | {"JobcastError"}:
                    continue
                bases = {ast.unparse(b) for b in node.bases}
                if bases & {"Exception", "ValueError", "RuntimeError", "LookupError"} and not bases & {
                    "JobcastError"
                }:
                    strays.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert strays == []
