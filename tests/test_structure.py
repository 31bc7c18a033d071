"""The rooms of docs/architecture.md are folders, and each keeps to what it may import.

The web server (server/) and the workers (jobs/) share only what lives in jobcast/, and jobcast/
depends on neither, except for its one composition root, jobcast/cli/commands.py. Inside the web
server, the fan-out knows nothing of the API, the pages or the transports above it, and security
knows nothing of the handlers it guards. The client imports nothing of the server side.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where each import name lives in the tree (the wheel maps server/ and jobs/ under jobcast/).
FOLDERS = {"jobcast.server": "server", "jobcast.jobs": "jobs", "jobcast": "jobcast"}


def imports(path: Path) -> set[str]:
    """Every module a file imports, TYPE_CHECKING blocks and function bodies included; a script's
    `if __name__ == "__main__":` block is left out (running a module as a script composes it)."""
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def module_files(package: str) -> list[Path]:
    """The files of an import name's folder, `jobcast.server.fanout` -> server/fanout/**.py."""
    for prefix, folder in FOLDERS.items():
        if package == prefix or package.startswith(prefix + "."):
            rest = package[len(prefix) :].strip(".").split(".") if package != prefix else []
            base = ROOT / folder / Path(*rest) if rest else ROOT / folder
            return sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    raise ValueError(package)


def starts(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def offenders(room: str, forbidden: tuple[str, ...], allowed_files: tuple[str, ...] = ()) -> list[str]:
    out = []
    for path in module_files(room):
        rel = str(path.relative_to(ROOT))
        if rel in allowed_files:
            continue
        out += [f"{rel} imports {m}" for m in sorted(imports(path)) if starts(m, forbidden)]
    return out


SERVER_ROOMS = ("api", "pages", "fanout", "transports", "security", "http", "observability")
COMPOSITION = ("jobcast.server.app", "jobcast.server.middleware")


def server(*rooms: str) -> tuple[str, ...]:
    return tuple(f"jobcast.server.{r}" for r in rooms)


# room -> what it must never import, and why.
RULES: dict[str, tuple[tuple[str, ...], str]] = {
    "jobcast.server": (("jobcast.jobs",), "the web process never loads the workers' code"),
    "jobcast.jobs": (("jobcast.server",), "the workers never load the web server's code"),
    "jobcast.server.fanout": (
        (*server("api", "pages", "transports", "security", "observability"), *COMPOSITION),
        "the fan-out is below every handler: it delivers events and knows nothing of who asks",
    ),
    "jobcast.server.http": (
        (*server("api", "pages", "fanout", "transports", "security", "observability"), *COMPOSITION),
        "HTTP plumbing is the floor every room stands on",
    ),
    "jobcast.server.security": (
        (*server("api", "pages", "fanout", "transports", "observability"), *COMPOSITION),
        "security guards the handlers and imports none of them",
    ),
    "jobcast.server.api": (
        (*server("pages", "transports", "observability"), *COMPOSITION),
        "the API does not depend on the pages or the streams",
    ),
    "jobcast.server.transports": (
        (*server("pages", "observability"), *COMPOSITION),
        "the transports do not depend on the pages",
    ),
    "jobcast.server.observability": (
        (*server("pages", "transports"), *COMPOSITION),
        "metrics read the rooms, never the other way",
    ),
    "jobcast.server.pages": (COMPOSITION, "pages are mounted by the app, not the reverse"),
    "jobcast.store": (
        (
            "jobcast.queries",
            "jobcast.cli",
            "jobcast.client",
            "jobcast.server",
            "jobcast.jobs",
        ),
        "the store is the floor the reads over it stand on",
    ),
    "jobcast.queries": (
        ("jobcast.cli", "jobcast.client", "jobcast.server", "jobcast.jobs"),
        "reads over the store, shared by both processes",
    ),
    "jobcast.client": (
        (
            *("jobcast.server", "jobcast.jobs", "jobcast.store", "jobcast.queries", "jobcast.redis"),
            *("jobcast.cli", "redis", "arq", "uvloop", "jinja2", "aiohttp_jinja2", "prometheus_client"),
        ),
        "the client installs and imports without the server side",
    ),
}


@pytest.mark.parametrize("room", sorted(RULES))
def test_each_room_imports_only_what_it_may(room: str) -> None:
    forbidden, why = RULES[room]
    assert offenders(room, forbidden) == [], why


def test_the_shared_core_imports_neither_process_but_in_its_composition_root() -> None:
    found = offenders(
        "jobcast", ("jobcast.server", "jobcast.jobs"), allowed_files=("jobcast/cli/commands.py",)
    )
    assert found == []


def test_arq_is_imported_by_its_one_adapter_only() -> None:
    # Everything of arq jobcast relies on is named in jobs/arq_runtime.py (and checked by
    # tests/test_arq_contract.py). The benchmark's arq peer runs arq itself, as its users do.
    found = []
    for folder in ("jobcast", "server", "jobs", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name in ("arq_runtime.py", "arq_worker.py"):
                continue
            found += [f"{path.relative_to(ROOT)}: {m}" for m in imports(path) if starts(m, ("arq",))]
    assert found == []


def test_every_architecture_room_is_a_folder_and_every_folder_a_room() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"^### `([a-z_/]+)/`", doc, re.M))
    folders = {
        str(p.parent.relative_to(ROOT))
        for top in ("jobcast", "server", "jobs")
        for p in (ROOT / top).rglob("__init__.py")
        if p.parent != ROOT / top
    }
    assert named, "docs/architecture.md names its rooms as '### `folder/`' headings"
    assert sorted(named - folders) == [], "rooms the doc names that the tree lacks"
    assert sorted(folders - named) == [], "folders the doc does not describe"


def fresh_modules(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_the_web_app_does_not_load_arq() -> None:
    assert "arq" not in fresh_modules("import jobcast.server.app")


def test_the_client_loads_none_of_the_server_side() -> None:
    loaded = fresh_modules("import jobcast.client")
    assert loaded & {"arq", "redis", "uvloop", "jinja2", "prometheus_client"} == set()


def test_the_checker_sees_an_offending_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from jobcast.jobs.worker import x\n"
        "if __name__ == '__main__':\n    from jobcast.server.app import create_app\n"
    )
    assert imports(module) == {"typing", "jobcast.jobs.worker"}


def test_a_forbidden_import_in_a_room_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fan-out importing a page handler, in a copy of the tree.
    fanout = tmp_path / "server" / "fanout"
    fanout.mkdir(parents=True)
    (fanout / "hub.py").write_text("from jobcast.server.pages.views import index\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    forbidden, _ = RULES["jobcast.server.fanout"]
    assert offenders("jobcast.server.fanout", forbidden) == [
        "server/fanout/hub.py imports jobcast.server.pages.views"
    ]


def sections(doc: str) -> dict[str, str]:
    """Each room's section of docs/architecture.md by its folder: `## ... `jobcast/`` for a layer,
    `### `server/fanout/`` for a room, up to the next heading."""
    out: dict[str, str] = {}
    parts = re.split(r"^(#{2,3} .*)$", doc, flags=re.M)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        if m := re.search(r"`([a-z_/]+)/`\s*$", heading):
            out[m.group(1)] = body
    return out


def test_each_room_lists_every_module_it_holds() -> None:
    found = sections((ROOT / "docs" / "architecture.md").read_text())
    assert {"jobcast", "server", "jobs"} <= set(found)
    for folder, body in found.items():
        listed = set(re.findall(r"^\| `([a-z_]+\.py)` \|", body, re.M))
        held = {p.name for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py"}
        if folder == "jobcast":
            held.add("__init__.py")
        assert listed == held, f"docs/architecture.md's {folder}/ table: {sorted(listed ^ held)}"


def documented_key(method: object, prefix: str = "{P}") -> str:
    """A `Keys` name as the doc writes it: the prefix as `{P}`, each argument as `{name}`."""
    from inspect import signature

    from jobcast.protocol import Keys

    keys = Keys(prefix)
    placeholders = {"job_id": "{id}", "digest": "{sha}", "schedule_id": "{id}", "tick_ms": "{tick ms}"}
    if isinstance(method, property):
        return str(method.fget(keys))  # type: ignore[misc]
    params = [p for p in signature(method).parameters if p != "self"]  # type: ignore[arg-type]
    return str(method(keys, *(placeholders.get(p, "{" + p + "}") for p in params)))  # type: ignore[operator]


def test_the_key_table_names_every_key() -> None:
    from jobcast.protocol import Keys

    doc = (ROOT / "docs" / "architecture.md").read_text()
    table = doc[doc.index("## Who owns which Redis keys") :]
    table = table[: table.index("\n## ")]
    missing = []
    for name, member in vars(Keys).items():
        if name.startswith("_") or name in ("prefix", "feed", "channel_prefix"):
            continue
        key = documented_key(member)
        if f"`{key}`" not in table and f"`{key} " not in table:
            missing.append(f"{name}: {key}")
    feed = Keys("{P}").feed()
    missing += [k for k in (feed.channel, feed.history, feed.position) if f"`{k}" not in table]
    assert missing == []
