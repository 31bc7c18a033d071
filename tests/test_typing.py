"""The type checker's exceptions are explained where they are made."""

from __future__ import annotations

import re

from tests.helpers import product_findings


def bare_ignores(source: str) -> list[int]:
    """Lines with a `type: ignore` that says neither its error code and why on the same line
    (`# type: ignore[code]  # why`), nor why in a comment on the line above."""
    lines = source.splitlines()
    bare = []
    for n, line in enumerate(lines):
        if "type: ignore" not in line:
            continue
        reason = re.search(r"type: ignore\[[a-z-, ]+\]\s+#\s*\S", line)
        above = n > 0 and lines[n - 1].strip().startswith("#")
        if not (reason or above):
            bare.append(n + 1)
    return bare


def test_every_type_ignore_says_why() -> None:
    assert product_findings(bare_ignores) == {}


def test_a_bare_ignore_is_caught() -> None:
    assert bare_ignores("x = f()  # type: ignore[arg-type]\ny = g()  # type: ignore\n") == [1, 2]
    assert (
        bare_ignores("# why\nx = f()  # type: ignore[arg-type]\nz = h()  # type: ignore[misc]  # why\n") == []
    )
