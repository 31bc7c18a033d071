"""The registry of job kinds. Adding a kind: write a module like demo.py and list it here."""

from __future__ import annotations

from jobcast.jobs.kind import Kind
from jobcast.jobs.kinds import aggregate, convert, demo, report

KINDS: dict[str, Kind] = {kind.name: kind for kind in (demo.KIND, report.KIND, convert.KIND, aggregate.KIND)}
