"""Which job kinds this process serves: discovered, not listed by hand.

Installed packages declare kinds in the `jobcast.kinds` entry-point group (jobcast's own are the
entry point named `builtin`). `JOBCAST_KINDS` adds modules from the import path, and leaves kinds
out with a leading `-` (an entry point's name, or a kind's):

    JOBCAST_KINDS=myapp.jobs,otherapp.jobs   # these modules' kinds too
    JOBCAST_KINDS=myapp.jobs,-builtin        # only myapp's kinds
    JOBCAST_KINDS=-aggregate                 # every kind but one

An entry point (or a module) provides kinds as a `Kind`, an iterable or mapping of them, or a
module: its `KINDS` when it has one, else every `Kind` at its top level.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from jobcast.errors import JobcastError
from jobcast.kind import Kind

ENTRY_POINT_GROUP = "jobcast.kinds"


class KindsError(JobcastError):
    """The kinds cannot be loaded as configured (a module that does not import, a name twice)."""


def kinds_of(provider: Any, source: str) -> list[Kind]:
    """The kinds an entry point's object or a module provides."""
    if isinstance(provider, Kind):
        return [provider]
    if isinstance(provider, ModuleType):
        listed = getattr(provider, "KINDS", None)
        if listed is not None:
            return kinds_of(listed, source)
        return [value for value in vars(provider).values() if isinstance(value, Kind)]
    if isinstance(provider, Mapping):
        provider = provider.values()
    if isinstance(provider, Iterable) and not isinstance(provider, str | bytes):
        kinds = list(provider)
        if all(isinstance(kind, Kind) for kind in kinds):
            return kinds
    raise KindsError(f"{source} provides {provider!r}, not job kinds")


def parse_spec(spec: str) -> tuple[list[str], set[str]]:
    """(modules to add, names to leave out) of a JOBCAST_KINDS value."""
    items = [item.strip() for item in spec.split(",") if item.strip()]
    return [i for i in items if not i.startswith("-")], {i[1:] for i in items if i.startswith("-")}


def discover_kinds(spec: str = "") -> dict[str, Kind]:
    """Every kind from the entry points and from `spec` (JOBCAST_KINDS), by name."""
    modules, excluded = parse_spec(spec)
    sources: list[tuple[str, Any]] = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in excluded:
            continue
        try:
            sources.append((f"entry point {entry.name!r} ({entry.value})", entry.load()))
        except Exception as e:
            raise KindsError(f"entry point {entry.name!r} ({entry.value}) failed to load: {e!r}") from e
    for name in modules:
        try:
            sources.append((f"module {name!r}", importlib.import_module(name)))
        except ImportError as e:
            raise KindsError(f"JOBCAST_KINDS names {name!r}, which does not import: {e}") from e
    found: dict[str, tuple[str, Kind]] = {}
    for source, provider in sources:
        for kind in kinds_of(provider, source):
            if kind.name in found and found[kind.name][1] is not kind:
                first = found[kind.name][0]
                raise KindsError(f"two kinds are named {kind.name!r}: from {first} and {source}")
            found[kind.name] = (source, kind)
    kinds = {name: kind for name, (_, kind) in found.items() if name not in excluded}
    if not kinds:
        raise KindsError("no job kinds: check JOBCAST_KINDS and the installed packages")
    return kinds
