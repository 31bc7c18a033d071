"""jobcast's own job kinds, registered like any package's: the `builtin` entry point of the
`jobcast.kinds` group (see jobcast/registry.py)."""

from __future__ import annotations

from jobcast.jobs.kinds import aggregate, convert, demo, report, summarize

KINDS = (demo.KIND, report.KIND, convert.KIND, aggregate.KIND, summarize.KIND)
