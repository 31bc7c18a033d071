"""The product speaks of itself: what jobcast does and how it was measured (a date, a machine, a
commit), never how the work on it was organised. A numbered period of work or an issue number in
a product file, or in a file's name, means a reader must know a history they were never given."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# How the work's periods and its tickets are named: the word for a period or a ticket with its
# number, or "this", "next" and the like before the period's word (the examples below, built from
# PERIOD and TICKET so that this file does not say them itself). A browser's login session or a
# pytest fixture's scope names no period.
WORK = re.compile(
    r"\bsessions? ?\d+|\bsession\d+|\b(?:this|earlier|later|next|previous) sessions?\b|\bissues? #?\d+\b",
    re.IGNORECASE,
)
# Generated lock files name third-party packages only; this file names the words it looks for.
SKIPPED = {
    "clients/js/package-lock.json",
    "clients/js/examples/vite-react/package-lock.json",
    "tests/test_product_language.py",
}


def product_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [name for name in listed.stdout.splitlines() if name not in SKIPPED and (ROOT / name).is_file()]


PERIOD, TICKET = "session", "issue"


def work_words(text: str) -> list[str]:
    return [m.group(0) for m in WORK.finditer(text)]


def test_no_product_file_names_a_period_of_work_or_an_issue() -> None:
    found = {}
    for name in product_files():
        if words := work_words(name):
            found[name] = words
            continue
        data = (ROOT / name).read_bytes()
        if b"\0" in data[:8000]:  # binary: images
            continue
        if words := work_words(data.decode("utf-8", "replace")):
            found[name] = words
    assert found == {}


@pytest.mark.parametrize(
    "text",
    [
        f"measured in {PERIOD} 14",
        f"bench/results/{PERIOD}14-first-run.json",
        f"as this {PERIOD} found",
        f"{TICKET.title()} 13's targets",
        f"see {TICKET} #28",
    ],
)
def test_the_words_the_work_uses_are_caught(text: str) -> None:
    assert work_words(text)


@pytest.mark.parametrize(
    "text",
    ["an admin session lasts 12 h", "@pytest.fixture(scope='session')", "the session cookie", "bull#793"],
)
def test_the_products_own_words_pass(text: str) -> None:
    assert work_words(text) == []
