"""Debian's Chromium, as every browser run here starts it (tests, benchmarks, screenshots): never
a downloaded browser, headless, with nothing that reaches for the network by itself."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
