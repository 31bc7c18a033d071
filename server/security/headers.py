"""Security headers on every answer (docs/security.md).

Pages get a Content-Security-Policy that allows scripts from this origin only (the pages have no
inline script, and `tests/test_security.py` loads them in Chromium with it on), and may not be
framed. Styles may be inline: `<job-progress>` styles its shadow DOM with a `<style>` element. The
`Server` header names no versions.
"""

from __future__ import annotations

from aiohttp import web

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers["Server"] = "jobcast"
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if response.content_type == "text/html":
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Frame-Options", "DENY")
