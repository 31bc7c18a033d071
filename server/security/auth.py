"""Who is asking: owners, roles and sessions (docs/security.md).

Single-user mode (no `JOBCAST_SECRET`): everyone is the one user, who sees every job; `jobcast web`
then listens on loopback only. Owner mode (a secret set), each request has a principal:
- `Authorization: Bearer <key>`: an API key from `JOBCAST_API_KEYS`, found by its SHA-256 and
  compared in constant time. Role `service` (a backend submitting for its own users) or `admin`
  (every job). A service names only its own users: the owner it names is qualified by its own
  name (`billing` naming `user-42` makes the owner `billing/user-42`), so it can neither see nor
  spend the quotas of another service or of another service's users.
- otherwise the signed `jobcast` cookie: an anonymous identity issued on a browser's first visit
  (role `user`), or an admin session after `/login`.

Everything else asks `Principal.may_see(owner)`; a job someone may not see does not exist for them
(404, never 403, so ids cannot be probed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from enum import StrEnum
from http.cookies import SimpleCookie
from typing import NamedTuple, NoReturn

from aiohttp import web
from itsdangerous import BadData, URLSafeTimedSerializer

from jobcast.errors import JobNotFound
from jobcast.redis.client import awaited
from jobcast.server.http.forwarded import client_of
from jobcast.server.http.problems import Problem
from jobcast.server.keys import STORE
from jobcast.settings import Settings
from jobcast.store.jobs import JobStore

COOKIE = "jobcast"


class Role(StrEnum):
    USER = "user"
    SERVICE = "service"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    # None in single-user mode: the one user owns (and sees) everything.
    owner: str | None
    role: Role
    # An admin session's id (from /login): what /logout revokes, in every web process.
    session: str | None = None
    # An anonymous identity's client address (`X-Forwarded-For` from a trusted proxy): anyone can
    # make identities, so all of one address's share its limits too (`client`).
    address: str | None = None

    @property
    def client(self) -> str | None:
        """What an anonymous identity's jobs, files and streams are also counted against: its
        address (`@<address>`), shared with every identity made there. None for keys and admins."""
        if self.role is not Role.USER or self.owner is None or self.address is None:
            return None
        return f"@{self.address}"

    @property
    def sees_all(self) -> bool:
        return self.owner is None or self.role is Role.ADMIN

    def may_see(self, job_owner: str | None, submitted_by: str | None = None) -> bool:
        """A job is its owner's; a service also sees its users' jobs (its namespace's, which it
        submitted)."""
        if self.sees_all or job_owner == self.owner:
            return True
        if self.role is not Role.SERVICE or self.owner is None:
            return False
        return submitted_by == self.owner or (job_owner or "").startswith(self.owner + "/")

    @property
    def lists(self) -> tuple[str | None, str | None]:
        """What `GET /api/jobs` shows: (owner, submitted_by) to filter on; (None, None): all."""
        if self.sees_all:
            return None, None
        return (None, self.owner) if self.role is Role.SERVICE else (self.owner, None)


SINGLE_USER = Principal(None, Role.ADMIN)


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    role: Role
    digest: bytes

    @property
    def fingerprint(self) -> str:
        """Names the key in an admin session made with it (not enough of the digest to guess it)."""
        return self.digest[:8].hex()


def parse_api_keys(text: str) -> list[ApiKey]:
    """`name:role:sha256hex,...` (JOBCAST_API_KEYS). Raises ValueError naming the bad entry."""
    keys = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, _, rest = entry.partition(":")
        role, _, digest = rest.partition(":")
        if not name or role not in (Role.SERVICE, Role.ADMIN) or len(digest) != 64:
            raise ValueError(f"JOBCAST_API_KEYS: {name or entry[:8]!r} is not name:service|admin:sha256hex")
        keys.append(ApiKey(name, Role(role), bytes.fromhex(digest)))
    return keys


def new_api_key() -> tuple[str, str]:
    """A fresh key and its SHA-256 (hex), for `jobcast new-key`."""
    key = "jc_" + secrets.token_urlsafe(32)
    return key, hashlib.sha256(key.encode()).hexdigest()


class Auth:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.secret is not None
        self.keys = parse_api_keys(settings.api_keys)
        self.session_max_age_s = settings.session_max_age_s
        self.admin_session_s = settings.admin_session_s
        self.cookie_path = settings.url_prefix or "/"
        self.owners_per_address = settings.anonymous_owners_per_address
        self.anonymous_submissions = settings.anonymous_submissions
        # itsdangerous signs with the last secret and accepts any of them: rotation keeps sessions.
        secrets_ = [s.get_secret_value() for s in settings.old_secrets]
        if settings.secret is not None:
            secrets_.append(settings.secret.get_secret_value())
        self._sessions = URLSafeTimedSerializer(secrets_ or ["single-user"], salt="jobcast-session")
        self.csrf_key = hashlib.sha256(
            b"jobcast-csrf\n" + (secrets_[-1] if secrets_ else "").encode()
        ).digest()

    def find_key(self, presented: str) -> ApiKey | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for key in self.keys:  # every key compared, in constant time each: no early exit to time
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found

    def api_key(self, presented: str) -> Principal | None:
        found = self.find_key(presented)
        return None if found is None else Principal(found.name, found.role)

    def admin_session(self, key: ApiKey) -> str:
        """A signed admin session made with `key`: it names the key, and has an id of its own."""
        return self._sessions.dumps(
            {"sub": key.name, "role": Role.ADMIN.value, "key": key.fingerprint, "sid": secrets.token_hex(16)}
        )

    def _admin_key_holds(self, name: str, fingerprint: object) -> bool:
        """The admin key a session was made with is still configured (it dies with its key)."""
        return any(
            key.role is Role.ADMIN
            and key.name == name
            and hmac.compare_digest(key.fingerprint, str(fingerprint))
            for key in self.keys
        )

    def session(self, cookie: str | None) -> Principal | None:
        if not cookie:
            return None
        try:
            data = self._sessions.loads(cookie, max_age=self.session_max_age_s)
            principal = Principal(str(data["sub"]), Role(data["role"]))
        except (BadData, KeyError, TypeError, ValueError):
            return None
        if principal.role is Role.ADMIN:
            # An admin login lasts less long than a browser's anonymous identity, and no longer
            # than its key.
            try:
                self._sessions.loads(cookie, max_age=self.admin_session_s)
            except BadData:
                return None
            if not self._admin_key_holds(str(data["sub"]), data.get("key")) or "sid" not in data:
                return None
            return Principal(principal.owner, Role.ADMIN, session=str(data["sid"]))
        return principal

    def sign(self, principal: Principal) -> str:
        return self._sessions.dumps({"sub": principal.owner, "role": principal.role.value})

    def cookie_name(self, secure: bool) -> str:
        """`jobcast`; over HTTPS `__Host-jobcast` (`__Secure-jobcast` under a URL prefix, which
        `__Host-` forbids), names a browser sets only from a secure page and never for a domain."""
        if not secure:
            return COOKIE
        return f"__Host-{COOKIE}" if self.cookie_path == "/" else f"__Secure-{COOKIE}"

    def cookie_header(self, value: str, *, secure: bool, max_age: int) -> str:
        cookie: SimpleCookie = SimpleCookie()
        name = self.cookie_name(secure)
        cookie[name] = value
        morsel = cookie[name]
        morsel["httponly"] = True
        morsel["samesite"] = "Lax"
        morsel["path"] = self.cookie_path
        morsel["max-age"] = max_age
        if secure:
            morsel["secure"] = True
        return morsel.OutputString()


class StreamCounts:
    """Open streams in this process: per owner, against `JOBCAST_MAX_STREAMS_PER_OWNER`, and per
    anonymous client address, against that times `JOBCAST_ANONYMOUS_OWNERS_PER_ADDRESS`."""

    def __init__(self, limit: int, owners_per_address: int) -> None:
        self.limit = limit
        self.address_limit = limit * owners_per_address
        self.open: dict[str, int] = {}

    def _shares(self, who: Principal) -> list[tuple[str, int]]:
        if self.limit == 0 or who.owner is None:
            return []
        shares = [(who.owner, self.limit)]
        if who.client is not None and self.address_limit > 0:
            shares.append((who.client, self.address_limit))
        return shares

    def acquire(self, who: Principal) -> bool:
        shares = self._shares(who)
        if any(self.open.get(key, 0) >= limit for key, limit in shares):
            return False
        for key, _ in shares:
            self.open[key] = self.open.get(key, 0) + 1
        return True

    def release(self, who: Principal) -> None:
        for key, _ in self._shares(who):
            left = self.open.get(key, 1) - 1
            if left > 0:
                self.open[key] = left
            else:
                self.open.pop(key, None)

    def refuse(self) -> Problem:
        message = (
            f"at most {self.limit} open streams per owner (and {self.address_limit} per client address "
            "for anonymous callers); close one first"
        )
        return Problem(429, message, slug="too-many-streams", headers={"Retry-After": "5"})


AUTH = web.AppKey("auth", Auth)
STREAM_COUNTS = web.AppKey("stream_counts", StreamCounts)
PRINCIPAL = web.RequestKey("principal", Principal)
# A cookie to set on this request's response (a new anonymous identity, a login, a logout): the
# signed value and its max-age.
SET_COOKIE = web.RequestKey("set_cookie", tuple)


async def session_revoked(request: web.Request, session: str) -> bool:
    store = request.app[STORE]
    return bool(await awaited(store.redis.exists(store.keys.revoked_session(session))))


async def revoke_session(request: web.Request, session: str) -> None:
    """End an admin session for every web process, for as long as its cookie could still hold."""
    store = request.app[STORE]
    auth = request.app[AUTH]
    await awaited(store.redis.set(store.keys.revoked_session(session), 1, ex=auth.admin_session_s))


def session_cookie(request: web.Request) -> str | None:
    """The session cookie this request carries, under the name its scheme gives it."""
    return request.cookies.get(request.app[AUTH].cookie_name(client_of(request).secure))


def principal(request: web.Request) -> Principal:
    return request.get(PRINCIPAL, SINGLE_USER)


async def check_visible(store: JobStore, who: Principal, job_id: str) -> None:
    """Raises JobNotFound unless `who` may see the job (whose existence it then leaves for the
    caller to find out: no extra round trip for whoever sees every job)."""
    if who.sees_all:
        return
    owner, via = await awaited(store.redis.hmget(store.keys.job(job_id), ["owner", "submitted_by"]))
    if owner is None or not who.may_see(owner.decode(), via.decode() if via else None):
        raise JobNotFound(job_id)


# An owner a request may name: a user's id, or one qualified by its service (`billing/user-42`).
OWNER = r"^([A-Za-z0-9._@:+-]{1,64}/)?[A-Za-z0-9._@:+-]{1,128}$"


class Ownership(NamedTuple):
    """Whose a new job is: its owner, the service that submitted it for them, and the anonymous
    client address it also counts against (Principal.client)."""

    owner: str | None = None
    submitted_by: str | None = None
    client: str | None = None


NO_OWNER = Ownership()  # single-user mode's jobs, and jobcast's own


def owner_for(request: web.Request, named: str | None) -> Ownership:
    """Who a new job belongs to, and the service that submitted it. All None in single-user
    mode: jobs have no owner.

    A browser's jobs are its own; it names nobody. A service's jobs are its own or its users',
    whose ids it names in its own namespace: `user-42` (or `<service>/user-42`) becomes
    `<service>/user-42`, and naming another service's user is refused. Its own jobs carry it as
    `submitted_by` too, so that it lists them with the ones it submitted for its users. An admin
    names any owner as it is."""
    who = principal(request)
    if who.owner is None:
        return NO_OWNER
    if who.role is Role.SERVICE:
        if named is None or named == who.owner:
            return Ownership(who.owner, who.owner)
        user = named.removeprefix(who.owner + "/")
        if "/" in user:
            refuse_owner("a service names only its own users: an owner without '/', or '<service>/<id>'")
        return Ownership(f"{who.owner}/{user}", who.owner)
    require_submitter(request)
    if named is None or named == who.owner:
        return Ownership(who.owner, None, who.client)
    if who.role is Role.USER:
        refuse_owner("only a service or admin API key may name the owner")
    return Ownership(named, who.owner)


def may_submit(request: web.Request) -> bool:
    """Whether this caller may submit jobs (anonymous callers may, unless the deployment says not)."""
    return principal(request).role is not Role.USER or request.app[AUTH].anonymous_submissions


def require_submitter(request: web.Request) -> None:
    """401 for an anonymous caller where the deployment takes no anonymous submissions."""
    if not may_submit(request):
        raise Problem(
            401, "this deployment takes jobs from API keys and signed-in operators only",
            slug="unauthorized", headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip


def refuse_owner(message: str) -> NoReturn:
    errors = [{"field": "owner", "message": message, "code": "forbidden"}]
    raise Problem(422, f"invalid owner: {message}", slug="validation", errors=errors)


def require_admin(request: web.Request) -> None:
    """In owner mode, only admins (an admin key, or an admin session)."""
    if not principal(request).sees_all:
        raise Problem(403, "only admins may see this", slug="forbidden")


def new_anonymous(address: str | None = None) -> Principal:
    return Principal("anon-" + secrets.token_hex(12), Role.USER, address=address)


def unauthorized(detail: str) -> web.Response:
    return Problem(401, detail, slug="unauthorized", headers={"WWW-Authenticate": "Bearer"}).response()


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(request: web.Request) -> str | None:
    """The CSRF token of this browser's session (owner mode): what the pages put in their forms'
    actions, for old browsers that send neither `Sec-Fetch-Site` nor `Origin`."""
    auth = request.app[AUTH]
    pending = request.get(SET_COOKIE)
    session = pending[0] if pending is not None else session_cookie(request)
    if not auth.enabled or not session:
        return None
    return mask(session_csrf(auth.csrf_key, session))


def session_csrf(key: bytes, session: str) -> bytes:
    return hmac.new(key, session.encode(), hashlib.sha256).digest()[:16]


def mask(token: bytes) -> str:
    """The token under a fresh one-time pad, different on every page: pages are compressed
    (server/http/compression.py), and a secret repeated unchanged in compressed answers that also
    reflect what a request asked for can be guessed from their sizes (BREACH)."""
    pad = secrets.token_bytes(len(token))
    return (pad + bytes(a ^ b for a, b in zip(pad, token, strict=True))).hex()


def unmask(given: str) -> bytes | None:
    try:
        raw = bytes.fromhex(given)
    except ValueError:
        return None
    if len(raw) != 32:
        return None
    return bytes(a ^ b for a, b in zip(raw[:16], raw[16:], strict=True))


# What a form on another site can send without a CORS preflight: only these need the token (a
# JSON body cannot be sent cross-site without the browser asking first). A POST with no body and
# no Content-Type is one too: a form, or `fetch` in `no-cors` mode, sends it from anywhere.
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain", ""})


def form_type(request: web.Request) -> str:
    """The request's media type as sent: "" with no Content-Type (aiohttp reports those as
    application/octet-stream, which no form sends)."""
    return request.content_type if "Content-Type" in request.headers else ""


def csrf_missing(request: web.Request) -> bool:
    """A form posted on a session cookie, from a browser that says nothing of where it comes
    from, without its session's CSRF token. (Modern browsers are checked by their `Sec-Fetch-Site`
    or `Origin` in server/security/origins.py; requests without a cookie act as nobody.)"""
    # Only POST: a page elsewhere sends nothing else without a CORS preflight.
    if request.method != "POST" or form_type(request) not in FORM_TYPES:
        return False
    if "Sec-Fetch-Site" in request.headers or "Origin" in request.headers:
        return False
    auth = request.app[AUTH]
    session = session_cookie(request)
    if not auth.enabled or not session:
        return False
    given = unmask(request.query.get("csrf", ""))
    return given is None or not hmac.compare_digest(given, session_csrf(auth.csrf_key, session))


async def authenticate(request: web.Request) -> web.Response | None:
    """Who is asking (request[PRINCIPAL]); the 401 answer for an invalid API key, else None."""
    auth = request.app[AUTH]
    if not auth.enabled:
        request[PRINCIPAL] = SINGLE_USER
        return None
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        who = auth.api_key(token.strip()) if scheme.lower() == "bearer" else None
        if who is None:
            return unauthorized("the Authorization header holds no valid API key")
    else:
        cookie = session_cookie(request)
        who = auth.session(cookie)
        if who is not None and who.session is not None and await session_revoked(request, who.session):
            who = None  # signed out (in any web process): a fresh anonymous identity
        address = client_of(request).address if auth.owners_per_address else None
        if who is None:
            who = new_anonymous(address)
            request[SET_COOKIE] = (auth.sign(who), auth.session_max_age_s)
        elif csrf_missing(request):
            raise Problem(403, "this form needs the page's CSRF token; reload the page", slug="csrf")
        elif who.role is Role.USER:
            who = replace(who, address=address)
    request[PRINCIPAL] = who
    return None


async def send_cookie(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the cookie this request asked for, on every kind of response (a stream
    is prepared inside its handler, too late for the middleware)."""
    pending = request.get(SET_COOKIE)
    if pending is not None:
        value, max_age = pending
        auth = request.app[AUTH]
        secure = client_of(request).secure
        response.headers.add("Set-Cookie", auth.cookie_header(value, secure=secure, max_age=max_age))
