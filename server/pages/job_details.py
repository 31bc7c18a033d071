"""What a job's page shows besides its live bar: its params, read from the kind's JSON Schema, and
its attempts, read from its events."""

from __future__ import annotations

from typing import Any

from jobcast.kind import Kind
from jobcast.protocol import dumps

ENDS = ("retrying", "succeeded", "failed", "cancelled")


def params_rows(kind: Kind | None, params: dict[str, Any] | None) -> list[dict[str, str]]:
    """Each param as a labelled, read-only value, in the schema's order (then any the schema does
    not name; all of them as they are when this server does not know the kind)."""
    params = params or {}
    properties = kind.params.model_json_schema().get("properties", {}) if kind is not None else {}
    rows = []
    for name, schema in properties.items():
        if name in params:
            rows.append(_row(name, params[name], schema.get("title") or name, schema.get("description", "")))
    rows += [_row(name, value, name, "") for name, value in params.items() if name not in properties]
    return rows


def _row(name: str, value: Any, label: str, hint: str) -> dict[str, str]:
    text = value if isinstance(value, str) else dumps(value).decode()
    return {"name": name, "label": label, "value": text, "hint": hint}


def attempts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each attempt from its `started` to the event that ended it: where, when, how, and the
    error."""
    found: dict[int, dict[str, Any]] = {}
    for event in events:
        number = event.get("attempt") or 0
        if event["type"] == "started":
            found[number] = {
                "attempt": number,
                "worker": event.get("worker"),
                "started_at": event.get("ts"),
                "ended_at": None,
                "outcome": None,
            }
        elif event["type"] in ENDS and number in found and found[number]["outcome"] is None:
            found[number] |= {
                "ended_at": event.get("ts"),
                "outcome": event["type"],
                "error": event.get("error"),
            }
    return [found[n] for n in sorted(found)]
