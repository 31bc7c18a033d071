"""The layers stay apart: the web server (server/) and the workers (jobs/) share only what lives
in jobcast/, and jobcast/ depends on neither, except for its one composition root, cli.py."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports(path: Path) -> set[str]:
    """Every module a file imports, TYPE_CHECKING blocks and function bodies included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def offenders(folder: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if path.name in allowed:
            continue
        bad = sorted(m for m in imports(path) if m.startswith(forbidden))
        out += [f"{path.relative_to(ROOT)} imports {m}" for m in bad]
    return out


def test_the_web_server_does_not_import_the_workers() -> None:
    assert offenders("server", ("jobcast.jobs", "jobs")) == []


def test_the_workers_do_not_import_the_web_server() -> None:
    assert offenders("jobs", ("jobcast.server", "server")) == []


def test_the_shared_core_imports_neither_but_in_its_composition_root() -> None:
    core = [p for p in offenders("jobcast", ("jobcast.server", "jobcast.jobs"), allowed=("main.py",))]
    assert core == []


def test_arq_is_imported_by_its_one_adapter_only() -> None:
    # Everything of arq jobcast relies on is named in jobcast/arq_runtime.py (and checked by
    # tests/test_arq_contract.py). The benchmark's arq peer runs arq itself, as its users do.
    found = []
    for folder in ("jobcast", "server", "jobs", "bench"):
        found += offenders(folder, ("arq.", "arq"), allowed=("arq_runtime.py", "arq_worker.py"))
    assert [f for f in found if f.split(" imports ")[1].split(".")[0] == "arq"] == []


def test_the_checker_sees_an_offending_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from jobcast.jobs.worker import x\n"
    )
    assert "jobcast.jobs.worker" in imports(module)
