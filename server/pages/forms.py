"""HTML forms built from the kinds' JSON Schemas, and form data turned back into typed params.

The dashboard renders each kind's params as inputs from its schema (so a new kind gets a form
with no template work), and `/submit` parses what a browser sends, with or without JS, into the
same submission the JSON API takes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobcast.kind import Kind

NUMERIC = {"integer": "1", "number": "any"}


@dataclass(slots=True)
class FormField:
    """One input: `name` is the param's name, `input_name` what the form posts (kind-prefixed)."""

    name: str
    input_name: str
    label: str
    kind: str  # number, text, select, checkbox
    default: Any = None
    required: bool = False
    nullable: bool = False
    help: str = ""
    options: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def error_key(self) -> str:
        """The `field` of a problem's errors that names this input."""
        return f"params.{self.name}"

    @property
    def dom_id(self) -> str:
        return self.input_name.replace(".", "-")


def _base(prop: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The non-null branch of an `X | None` schema, and whether null is allowed."""
    options = prop.get("anyOf")
    if not options:
        return prop, False
    concrete = [o for o in options if o.get("type") != "null"]
    return ({**prop, **concrete[0]} if concrete else prop), len(concrete) < len(options)


def form_fields(kind: Kind) -> list[FormField]:
    schema = kind.schema()
    required = set(schema.get("required", ()))
    fields = []
    for name, raw in schema.get("properties", {}).items():
        if kind.takes_upload and name == "upload":
            continue  # the file input stands for it
        prop, nullable = _base(raw)
        type_ = prop.get("type", "string")
        f = FormField(
            name=name,
            input_name=f"{kind.name}.{name}",
            label=prop.get("title") or name.replace("_", " "),
            kind="text",
            default=raw.get("default"),
            required=name in required,
            nullable=nullable,
            help=raw.get("description", ""),
        )
        if "enum" in prop:
            f.kind = "select"
            f.options = [str(v) for v in prop["enum"]]
        elif type_ in NUMERIC:
            f.kind = "number"
            f.attrs["step"] = NUMERIC[type_]
            for key, attr in (("minimum", "min"), ("maximum", "max")):
                if key in prop:
                    f.attrs[attr] = prop[key]
        elif type_ == "boolean":
            f.kind = "checkbox"
        else:
            for key, attr in (("maxLength", "maxlength"), ("minLength", "minlength")):
                if key in prop:
                    f.attrs[attr] = prop[key]
        fields.append(f)
    return fields


def _number(text: str, f: FormField) -> Any:
    if f.attrs.get("step") == "1" and text.lstrip("-").isdigit():
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def params_from_form(kind: Kind, form: Mapping[str, Any]) -> dict[str, Any]:
    """The kind's params from posted form fields: empty inputs fall back to the defaults, numbers
    are parsed when they look like numbers (anything else goes through, for the schema to reject
    with a message next to the field)."""
    params: dict[str, Any] = {}
    for f in form_fields(kind):
        if f.kind == "checkbox":
            params[f.name] = f.input_name in form
            continue
        raw = form.get(f.input_name)
        if not isinstance(raw, str) or raw.strip() == "":
            continue
        params[f.name] = _number(raw.strip(), f) if f.kind == "number" else raw.strip()
    return params
