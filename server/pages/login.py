"""`/login` and `/logout`: an operator's admin session for the dashboard (owner mode only).

The operator signs in with an admin API key once; the browser then holds a signed session cookie
(`JOBCAST_ADMIN_SESSION_S`) instead of the key. Signing out gives the browser a fresh anonymous
identity.
"""

from __future__ import annotations

from aiohttp import web

from jobcast.server.http.bodies import read_url_encoded
from jobcast.server.http.openapi import FORM, HTML, PAGE, TEXT, Answer, Operation, operation
from jobcast.server.http.problems import Problem
from jobcast.server.keys import SETTINGS
from jobcast.server.pages.views import render_page
from jobcast.server.security.auth import AUTH, SET_COOKIE, Role, new_anonymous, principal, revoke_session

routes = web.RouteTableDef()

KEY_FORM = {"type": "object", "properties": {"key": TEXT}}


def _owner_mode(request: web.Request) -> None:
    if not request.app[AUTH].enabled:
        raise Problem(
            404, "single-user mode has no sign-in (set JOBCAST_SECRET for owners)", slug="not-found"
        )


@routes.get("/login")
@operation(
    Operation(
        "The operator's sign-in page",
        {200: Answer("The page", {HTML: PAGE})},
        problems=(404,),
        tags=("pages",),
    )
)
async def login_page(request: web.Request) -> web.Response:
    _owner_mode(request)
    who = principal(request)
    signed_in = who.owner if who.role is Role.ADMIN else None
    return render_page("login.html", request, {"signed_in": signed_in})


@routes.post("/login")
@operation(
    Operation(
        "Sign in with an admin API key (form field `key`)",
        {
            303: Answer("To the dashboard, signed in", headers=("Location",)),
            401: Answer("Not an admin API key: the page again, with a message", {HTML: PAGE}),
        },
        body={FORM: KEY_FORM},
        problems=(400, 404, 415),
        tags=("pages",),
    )
)
async def login(request: web.Request) -> web.Response:
    _owner_mode(request)
    auth = request.app[AUTH]
    form = await read_url_encoded(request)
    key = form.get("key")
    found = auth.find_key(key) if isinstance(key, str) else None
    if found is None or found.role is not Role.ADMIN:
        context = {"signed_in": None, "problem": "That is not an admin API key."}
        return render_page("login.html", request, context, status=401)
    request[SET_COOKIE] = (auth.admin_session(found), auth.admin_session_s)
    raise web.HTTPSeeOther(f"{request.app[SETTINGS].url_prefix}/")


@routes.post("/logout")
@operation(
    Operation(
        "Sign out (a fresh anonymous identity)",
        {303: Answer("To the dashboard", headers=("Location",))},
        problems=(404,),
        tags=("pages",),
    )
)
async def logout(request: web.Request) -> web.Response:
    _owner_mode(request)
    auth = request.app[AUTH]
    if (session := principal(request).session) is not None:
        await revoke_session(request, session)  # the cookie's copy anywhere else is dead too
    request[SET_COOKIE] = (auth.sign(new_anonymous()), auth.session_max_age_s)
    raise web.HTTPSeeOther(f"{request.app[SETTINGS].url_prefix}/")
