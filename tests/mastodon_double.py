"""A Mastodon double: a real HTTP server with the documented shapes of the endpoints Tocsin uses.

Tocsin talks to it through Mastodon.py over HTTP, exactly as to a real instance. It parses mentions
with a port of Mastodon's Account::MENTION_RE, so tests see who a status would really be delivered to.
Failures (429 with rate-limit headers, 5xx) can be queued for the next status posts.

It enforces Mastodon's API rate limit as Rack::Attack does: `rate_limit` calls per account (per token
here) in fixed windows of `rate_period` seconds, each answer carrying X-RateLimit-Limit / -Remaining /
-Reset (the window's end, ISO 8601), a 429 once the window is spent. `throttled` counts those 429s.
"""

from __future__ import annotations

import asyncio
import copy
import html
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote

import regex
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from bot.ops.embedded_redis import free_port

FIXTURES = Path(__file__).parent / "fixtures" / "mastodon"
DOMAIN = "social.example.org"

# Account::MENTION_RE (app/models/account.rb, 4.x), transcribed with Ruby's character classes:
#   USERNAME_RE = /[a-z0-9_]+([.-]+[a-z0-9_]+)*/i
#   MENTION_RE  = %r{(?<![=/[:word:]])@((#{USERNAME_RE})(?:@[[:word:]]+([.-]+[[:word:]]+)*)?)}
# Onigmo's [[:word:]] is Letter | Mark | Decimal_Number | Connector_Punctuation — not Python's \w, which
# also takes other numbers ("½", "²", "Ⅻ") and misses marks; `regex` spells the class exactly. The /i
# of USERNAME_RE is interpolated with it (Ruby keeps an embedded regexp's flags); the domain has none.
RUBY_WORD = r"\p{L}\p{M}\p{Nd}\p{Pc}"
MENTION_RE = regex.compile(
    rf"(?<![=/{RUBY_WORD}])@(((?i:[a-z0-9_]+(?:[.-]+[a-z0-9_]+)*))(?:@([{RUBY_WORD}]+(?:[.-]+[{RUBY_WORD}]+)*))?)"
)


def mentioned_accts(text: str) -> list[str]:
    return [match.group(1).lower() for match in MENTION_RE.finditer(text)]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _account(account_id: str, username: str, domain: str | None = None) -> dict[str, Any]:
    """A REST::Account, shaped like the one in the example payloads."""
    account = copy.deepcopy(json.loads((FIXTURES / "status.created.json").read_text())["object"]["account"])
    acct = username if domain is None else f"{username}@{domain}"
    host = domain or DOMAIN
    account.update(
        id=account_id,
        username=username,
        acct=acct,
        display_name=username,
        url=f"https://{host}/@{username}",
        uri=f"https://{host}/users/{username}",
    )
    return account


ROLES = {
    "admin": ("2", "Admin", "1"),  # administrator: every permission
    "moderator": ("3", "Moderator", "1308"),  # Mastodon's default Moderator: reports, users, no federation
    "federation": ("4", "Federation", "32"),  # a custom role: manage_federation only, no reports
    "everyone": ("-99", "", "65536"),  # invite_users only
}
MANAGE_REPORTS, ADMINISTRATOR = 1 << 4, 1 << 0
ROLE_BITS = {"manage_reports": MANAGE_REPORTS, "manage_federation": 1 << 5, "manage_users": 1 << 10}


def _can_manage_reports(account: dict[str, Any]) -> bool:
    """In UserRole.that_can(:manage_reports): what `permissions=staff` lists (Api::V2::Admin::AccountsController)."""
    permissions = int((account.get("role") or {}).get("permissions") or 0)
    return bool(permissions & (MANAGE_REPORTS | ADMINISTRATOR))


def _like(pattern: str, value: object) -> bool:
    """PostgreSQL's ILIKE, as Arel's `matches` makes it: `%` any run, `_` one character, `\\` escapes."""
    translated, escaped = "", False
    for char in pattern:
        if escaped:
            translated, escaped = translated + re.escape(char), False
        elif char == "\\":
            escaped = True
        else:
            translated += ".*" if char == "%" else "." if char == "_" else re.escape(char)
    return isinstance(value, str) and re.fullmatch(translated, value, re.IGNORECASE | re.DOTALL) is not None


def _status_filter(status: str, account: dict[str, Any]) -> bool:
    """AccountFilter#status_scope."""
    if status == "active":
        return not account.get("suspended")
    if status == "pending":
        return account.get("approved") is False
    if status == "disabled":
        return bool(account.get("disabled")) and not account.get("suspended")
    return bool(account.get(status))  # suspended, silenced, sensitized


def _admin_account(account_id: str, username: str, staff: bool, role: str | None = None) -> dict[str, Any]:
    role_id, role_name, permissions = ROLES[role or ("moderator" if staff else "everyone")]
    return {
        "id": account_id,
        "username": username,
        "domain": None,
        "created_at": "2024-03-02T18:44:10.903Z",
        "email": f"{username}@mail.example.com",
        "ip": "198.51.100.7",
        "confirmed": True,
        "suspended": False,
        "silenced": False,
        "sensitized": False,
        "disabled": False,
        "approved": True,
        "locale": "en",
        "invite_request": None,
        "ips": [],
        "account": _account(account_id, username),
        "role": {
            "id": role_id,
            "name": role_name,
            "permissions": permissions,
            "color": "",
            "highlighted": role_id != "-99",
        },
    }


def _content(text: str) -> str:
    """Status HTML as Mastodon's TextFormatter makes it: paragraphs, <br>, mentions as h-card links."""

    def mention(match: regex.Match[str]) -> str:
        username, domain = match.group(2), match.group(3) or DOMAIN
        return (
            f'<span class="h-card" translate="no"><a href="https://{domain}/@{username}" '
            f'class="u-url mention">@<span>{username}</span></a></span>'
        )

    paragraphs = []
    for paragraph in text.split("\n\n"):
        escaped = html.escape(paragraph, quote=False)
        paragraphs.append("<p>" + MENTION_RE.sub(mention, escaped).replace("\n", "<br />") + "</p>")
    return "".join(paragraphs)


@dataclass
class MastodonDouble:
    token: str = "test-token"
    max_characters: int = 500
    bot_id: str = "900"
    bot_username: str = "tocsin"
    web_domain: str = DOMAIN
    """WEB_DOMAIN: where the instance's pages are (its accounts' URLs); LOCAL_DOMAIN is DOMAIN."""
    staff: list[tuple[str, str]] = field(default_factory=lambda: [("101", "mod_anna"), ("102", "mod_ben")])
    measures: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """domain -> (instance_follows, instance_followers, instance_accounts)"""
    domain_blocks: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    peers: list[str] | None = field(default_factory=list)
    """GET /api/v1/instance/peers (blocked domains left out, as Mastodon does); None: the API is disabled (404)."""
    """Admin::Account objects of other accounts (sign-ups), listed by GET /api/v2/admin/accounts."""
    statuses: list[dict[str, Any]] = field(default_factory=list)
    fail_next_posts: list[int] = field(default_factory=list)
    """Status codes to answer the next POST /api/v1/statuses with, in order (429, 500, 503, ...)."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    rate_limit: int = 300
    rate_period: float = 300.0
    throttled: int = 0
    """429s answered because the rate limit was spent (not the injected ones)."""
    down: bool = False
    """Answer every request with 503, as a Mastodon whose web processes are gone."""
    roles: dict[str, str] = field(default_factory=lambda: {"101": "admin", "102": "moderator"})
    """Staff account id -> role (ROLES); an account of `staff` not listed here has lost its role."""
    staff_flags: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Staff account id -> Admin::Account fields that differ (`{"suspended": True}`, `{"disabled": True}`)."""
    scopes: set[str] | None = None
    """The token's scopes; None: all. An admin write outside them is answered 403 as Doorkeeper does."""
    notifications: list[dict[str, Any]] = field(default_factory=list)
    email_domain_blocks: list[dict[str, Any]] = field(default_factory=list)
    streaming: bool = True
    """The streaming server answers (False: 503, and open streams end)."""
    heartbeat: float = 0.5
    """Seconds between heartbeats on a stream (Mastodon's streaming server: 15)."""
    account_actions: list[tuple[str, str]] = field(default_factory=list)
    """(account id, action: suspend | unsuspend | reject | silence …) in the order they were asked for."""
    messages_to_accounts: list[tuple[str, str]] = field(default_factory=list)
    """(account id, the `text` of an account action): what the account itself is shown."""
    permissions: dict[str, int] = field(default_factory=dict)
    """Staff account id -> a role's permissions bitmask of its own (overrides `roles`)."""
    on_account_action: Callable[[str], None] | None = None
    """Called with the account's id when an account action arrives, before it is carried out (a test
    looks at what the caller holds meanwhile)."""
    lost_action_answers: list[int] = field(default_factory=list)
    """Status codes to answer the next account actions with once they are carried out (a proxy's 502 or
    a timeout after Mastodon acted: the caller cannot tell it acted)."""
    bot_permissions: int | None = None
    """The bot account's role permissions; None: administrator. An admin write its role cannot make is
    answered 403 as Mastodon's policies do (Manage Reports for reports, Manage Users for account actions)."""
    report_actions: list[tuple[str, str]] = field(default_factory=list)
    """(report id, resolve | reopen | assign_to_self | unassign) in the order they were asked for."""
    follows: list[dict[str, Any]] = field(default_factory=list)
    """Follow rows the instance has: {"id", "account" (the follower, a REST::Account), "target" (an account
    id)}: its members' follows of remote accounts, and remote follows of its members (`add_follow`)."""

    def __post_init__(self) -> None:
        self.port = free_port()
        self._idempotency: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._windows: dict[str, tuple[int, int]] = {}  # token or address -> (window number, calls in it)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- what tests look at

    def direct_messages(self) -> list[dict[str, Any]]:
        return [status for status in self.statuses if status["visibility"] == "direct"]

    def recipients(self, status: dict[str, Any]) -> list[str]:
        return [mention["acct"] for mention in status["mentions"]]

    def direct_threads(self) -> list[list[dict[str, Any]]]:
        """Direct messages grouped into threads (a message split into parts is one thread)."""
        threads: dict[str, list[dict[str, Any]]] = {}
        root_of: dict[str, str] = {}
        for status in self.direct_messages():
            parent = status["in_reply_to_id"]
            root = root_of.get(parent, status["id"]) if parent else status["id"]
            root_of[status["id"]] = root
            threads.setdefault(root, []).append(status)
        return list(threads.values())

    def direct_texts(self) -> list[str]:
        """Each direct thread's text, parts joined."""
        return ["\n".join(status["text"] for status in thread) for thread in self.direct_threads()]

    def add_block(self, domain: str, severity: str = "silence", **extra: Any) -> dict[str, Any]:
        block = {
            "id": str(max((int(block["id"]) for block in self.domain_blocks), default=0) + 1),
            "domain": domain,
            "digest": "0" * 64,
            "created_at": _now(),
            "severity": severity,
            "reject_media": False,
            "reject_reports": False,
            "private_comment": None,
            "public_comment": None,
            "obfuscate": False,
            **extra,
        }
        self.domain_blocks.append(block)
        return block

    def add_report(
        self,
        report: dict[str, Any],
        assigned_to: str | None = None,
        suspended: bool = False,
    ) -> dict[str, Any]:
        """A report as Mastodon lists it (an Admin::Report, as a report.created webhook carries it), open
        unless it says otherwise; its remote target becomes an account the admin API knows."""
        report = {"action_taken": False, "action_taken_at": None, "assigned_account": None, **copy.deepcopy(report)}
        if assigned_to is not None:
            name = dict(self.staff).get(assigned_to, f"user{assigned_to}")
            report["assigned_account"] = _admin_account(assigned_to, name, staff=True)
        target = report["target_account"]
        if not any(account["id"] == target["id"] for account in self.accounts):
            account = _account(target["id"], target["username"], target.get("domain"))
            self.accounts.append(
                {
                    **_admin_account(target["id"], target["username"], staff=False),
                    "domain": target.get("domain"),
                    "suspended": suspended,
                    "role": None if target.get("domain") else _admin_account("0", "x", False)["role"],
                    # A spam account: few followers as its server counts them, its network not hidden.
                    "account": {**account, "followers_count": 0, "hide_collections": False},
                }
            )
        self.reports.append(report)
        return report

    def add_follow(self, target_id: str, follower_id: str, domain: str | None = None) -> dict[str, Any]:
        """`follower_id` (one of our members, or an account of `domain`) follows `target_id`."""
        follow = {
            "id": str(len(self.follows) + 1),
            "account": _account(follower_id, f"user{follower_id}", domain),
            "target": target_id,
        }
        self.follows.append(follow)
        return follow

    def say(
        self,
        account_id: str,
        text: str,
        in_reply_to_id: str | None = None,
        visibility: str = "direct",
        domain: str | None = None,
        username: str | None = None,
    ) -> dict[str, Any]:
        """An account writes a status; a mention notification reaches the bot if the text mentions it."""
        username = username or dict(self.staff).get(account_id) or f"user{account_id}"
        with self._lock:
            status_id = str(117000000000000000 + len(self.statuses) + 1)
            status = {
                "id": status_id,
                "created_at": _now(),
                "visibility": visibility,
                "in_reply_to_id": in_reply_to_id,
                "content": _content(text),
                "text": text,
                "reblog": None,
                "edited_at": None,
                "account": _account(account_id, username, domain),
                "mentions": [
                    {"id": "0", "username": acct.split("@")[0], "url": f"https://{DOMAIN}/@{acct}", "acct": acct}
                    for acct in mentioned_accts(text)
                ],
                "spoiler_text": "",
            }
            self.statuses.append(status)
            if self.bot_username in [acct.split("@")[0] for acct in mentioned_accts(text)]:
                self.notify(status)
        return status

    def notify(self, status: dict[str, Any], kind: str = "mention") -> dict[str, Any]:
        """A notification of the bot about `status` (for a mention that Mastodon made differently, a boost)."""
        notification = {
            "id": str(len(self.notifications) + 1),
            "type": kind,
            "created_at": status["created_at"],
            "group_key": f"ungrouped-{len(self.notifications) + 1}",
            "account": status["account"],
            "status": status,
        }
        self.notifications.append(notification)
        return notification

    def edit(self, status_id: str, text: str) -> None:
        """The author edits a status: new content, `edited_at` set, no new notification (as Mastodon)."""
        status = next(status for status in self.statuses if status["id"] == status_id)
        status.update(content=_content(text), text=text, edited_at=_now())

    def delete(self, status_id: str) -> None:
        """The author deletes a status: gone from the API (GET answers 404); notifications stay, as in Mastodon
        until its RemoveStatusService clears them."""
        status = next(status for status in self.statuses if status["id"] == status_id)
        status["deleted"] = True

    def replies_to(self, status_id: str) -> list[dict[str, Any]]:
        return [status for status in self.statuses if status.get("in_reply_to_id") == status_id]

    # --- server

    def start(self) -> MastodonDouble:
        # Keep idle connections open as long as nginx in front of Mastodon does (keepalive_timeout 65-75 s):
        # uvicorn's 5 s default closes them under a client that waited for a rate-limit reset.
        config = uvicorn.Config(
            self._app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=75,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("Mastodon double did not start")
            time.sleep(0.002)  # uvicorn starts in about 15 ms: a coarser poll adds half its period to every test
        return self

    def stop(self, wait: bool = True) -> None:
        """Shut the server down; `wait=False` returns at once and lets its thread finish alone (uvicorn
        looks at should_exit every 0.1 s, then gives connections another 0.1 s: 0.2 s a test otherwise)."""
        if self._server is not None:
            self._server.should_exit = True
        if wait and self._thread is not None:
            self._thread.join(10)

    def _app(self) -> FastAPI:
        app = FastAPI(redirect_slashes=False)
        double = self

        @app.middleware("http")
        async def rate_limited(request: Request, call_next: Any) -> Any:
            if double.down:
                double.requests.append((request.method, request.url.path))
                return JSONResponse({"error": "Service Unavailable"}, status_code=503)
            if not request.url.path.startswith("/api/"):
                return await call_next(request)
            who = request.headers.get("authorization") or (request.client.host if request.client else "?")
            now = time.time()
            window = int(now // double.rate_period)
            with double._lock:
                number, calls = double._windows.get(who, (window, 0))
                calls = calls + 1 if number == window else 1
                double._windows[who] = (window, calls)
            reset = datetime.fromtimestamp((window + 1) * double.rate_period, UTC)
            headers = {
                "X-RateLimit-Limit": str(double.rate_limit),
                "X-RateLimit-Remaining": str(max(double.rate_limit - calls, 0)),
                "X-RateLimit-Reset": reset.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            }
            if calls > double.rate_limit:
                double.throttled += 1
                double.requests.append((request.method, request.url.path))
                return JSONResponse({"error": "Too many requests"}, status_code=429, headers=headers)
            response = await call_next(request)
            if "x-ratelimit-remaining" not in response.headers:  # an injected failure sets its own
                response.headers.update(headers)
            return response

        def unauthorized(request: Request) -> JSONResponse | None:
            double.requests.append((request.method, request.url.path))
            if request.headers.get("authorization") != f"Bearer {double.token}":
                return JSONResponse({"error": "The access token is invalid"}, status_code=401)
            return None

        def paginated(request: Request, items: list[dict[str, Any]], **query: str) -> JSONResponse:
            """Newest first by id, `limit` and `max_id` as Mastodon takes them, the next page in `Link`."""
            ordered = sorted(items, key=lambda item: int(item["id"]), reverse=True)
            limit = int(request.query_params.get("limit", 100))
            max_id = request.query_params.get("max_id")
            if max_id is not None:
                ordered = [item for item in ordered if int(item["id"]) < int(max_id)]
            page = ordered[:limit]
            headers: dict[str, str] = {}
            if len(ordered) > limit:
                params = "".join(f"&{name}={quote(str(value), safe='')}" for name, value in query.items())
                headers["Link"] = (
                    f'<{double.url}{request.url.path}?limit={limit}{params}&max_id={page[-1]["id"]}>; rel="next"'
                )
            return JSONResponse(page, headers=headers)

        @app.middleware("http")
        async def rails_style_trailing_slash(request: Request, call_next: Any) -> Any:
            # Rails routes `/path/` like `/path`; Mastodon.py asks for some endpoints with the slash.
            if request.scope["path"] != "/" and request.scope["path"].endswith("/"):
                request.scope["path"] = request.scope["path"].rstrip("/")
            return await call_next(request)

        @app.get("/api/v2/instance")
        async def instance(request: Request) -> JSONResponse:
            double.requests.append((request.method, request.url.path))
            return JSONResponse(
                {
                    "domain": DOMAIN,
                    "title": "Social Example",
                    "version": "4.6.5",
                    "source_url": "https://github.com/mastodon/mastodon",
                    "description": "",
                    "usage": {"users": {"active_month": 1000}},
                    "thumbnail": {"url": f"https://{DOMAIN}/thumb.png"},
                    "languages": ["en"],
                    "configuration": {
                        "urls": {"streaming": double.url.replace("http://", "ws://")},  # the streaming server
                        "accounts": {"max_featured_tags": 10},
                        "statuses": {
                            "max_characters": double.max_characters,
                            "max_media_attachments": 4,
                            "characters_reserved_per_url": 23,
                        },
                    },
                    "registrations": {"enabled": True, "approval_required": False, "message": None},
                    "api_versions": {"mastodon": 6},
                    "contact": {"email": "", "account": None},
                    "rules": [],
                }
            )

        @app.get("/api/v1/accounts/verify_credentials")
        async def verify_credentials(request: Request) -> JSONResponse:
            if denied := unauthorized(request):
                return denied
            me = _account(double.bot_id, double.bot_username)
            return JSONResponse({**me, "url": f"https://{double.web_domain}/@{double.bot_username}"})

        def staff_account(account_id: str, name: str) -> dict[str, Any]:
            account = _admin_account(account_id, name, staff=True, role=double.roles.get(account_id, "everyone"))
            if account_id in double.permissions:
                account["role"] = {**account["role"], "id": "77", "permissions": str(double.permissions[account_id])}
            return {**account, **double.staff_flags.get(account_id, {})}

        @app.get("/api/v2/admin/accounts")
        async def admin_accounts(request: Request) -> JSONResponse:
            """AccountFilter as Mastodon applies it: origin, status, permissions=staff (roles that can manage
            reports), username (a prefix), email (ILIKE `value%`: Mastodon's own "same email domain" link
            asks for `%@domain`), newest first by id."""
            if denied := unauthorized(request) or out_of_scope("admin:read:accounts"):
                return denied
            params = request.query_params
            accounts = [staff_account(account_id, name) for account_id, name in double.staff]
            accounts.append(_admin_account(double.bot_id, double.bot_username, staff=False, role="admin"))
            accounts.extend(double.accounts)
            if params.get("origin") == "local":
                accounts = [account for account in accounts if account.get("domain") is None]
            if params.get("origin") == "remote":
                accounts = [account for account in accounts if account.get("domain") is not None]
            if params.get("status"):
                accounts = [account for account in accounts if _status_filter(params["status"], account)]
            if params.get("permissions") == "staff":
                accounts = [account for account in accounts if _can_manage_reports(account)]
            if params.get("by_domain"):  # AccountFilter: the domain's accounts (ILIKE, as `matches`)
                accounts = [account for account in accounts if _like(params["by_domain"], account.get("domain"))]
            if params.get("username"):
                prefix = params["username"].strip().removeprefix("@")  # unescaped, as Mastodon has it: `_` is any
                accounts = [account for account in accounts if _like(prefix + "%", account.get("username"))]
            if params.get("email"):
                pattern = params["email"].strip() + "%"
                accounts = [account for account in accounts if _like(pattern, account.get("email"))]
            kept = ("origin", "status", "permissions", "username", "email", "by_domain")
            return paginated(request, accounts, **{name: params[name] for name in kept if name in params})

        @app.get("/api/v1/accounts/lookup")
        async def lookup(request: Request) -> JSONResponse:
            """A local account by its username (`acct`, `@` and this domain allowed), suspended ones too."""
            double.requests.append((request.method, request.url.path))
            acct = request.query_params.get("acct", "").removeprefix("@")
            username, _, domain = acct.partition("@")
            if domain and domain.lower() != DOMAIN:
                return JSONResponse({"error": "Record not found"}, 404)
            for account_id, name in [*double.staff, (double.bot_id, double.bot_username)]:
                if name.lower() == username.lower():
                    return JSONResponse(_account(account_id, name))
            for account in double.accounts:
                if account.get("domain") is None and str(account.get("username")).lower() == username.lower():
                    return JSONResponse(_account(str(account["id"]), str(account["username"])))
            return JSONResponse({"error": "Record not found"}, 404)

        async def form_of(request: Request) -> dict[str, Any]:
            """The request's parameters, sent as JSON or form-encoded (Mastodon.py sends forms)."""
            if "json" in request.headers.get("content-type", ""):
                return dict(await request.json())
            return {name: values[-1] for name, values in parse_qs((await request.body()).decode()).items()}

        def out_of_scope(scope: str) -> JSONResponse | None:
            umbrella = scope.rsplit(":", 1)[0]
            if double.scopes is None or scope in double.scopes or umbrella in double.scopes:
                return None
            return JSONResponse({"error": "This action is outside the authorized scopes"}, 403)

        def admin_account_by_id(account_id: str) -> dict[str, Any] | None:
            for staff_id, name in double.staff:
                if staff_id == account_id:
                    return staff_account(staff_id, name)
            if account_id == double.bot_id:
                return _admin_account(double.bot_id, double.bot_username, staff=False, role="admin")
            found = next((account for account in double.accounts if account["id"] == account_id), None)
            if found is None:
                status = next((s for s in double.statuses if s["account"]["id"] == account_id), None)
                if status is None or "@" not in status["account"]["acct"]:
                    return None
                username, domain = status["account"]["acct"].split("@")
                return {**_admin_account(account_id, username, staff=False), "domain": domain, "role": None}
            return found

        @app.get("/api/v1/statuses/{status_id}")
        async def get_status(request: Request, status_id: str) -> JSONResponse:
            if denied := unauthorized(request):
                return denied
            found = next((s for s in double.statuses if s["id"] == status_id and not s.get("deleted")), None)
            if found is None:
                return JSONResponse({"error": "Record not found"}, 404)
            return JSONResponse({name: value for name, value in found.items() if name != "text"})

        @app.get("/api/v1/admin/accounts/{account_id}")
        async def admin_account(request: Request, account_id: str) -> JSONResponse:
            if denied := unauthorized(request):
                return denied
            found = admin_account_by_id(account_id)
            return JSONResponse(found) if found else JSONResponse({"error": "Record not found"}, 404)

        def rest_account(account_id: str) -> dict[str, Any] | None:
            """An account as anyone sees it (REST::AccountSerializer): `suspended` and `limited` (silenced)
            only when true, `hide_collections`, `followers_count` (a remote account's: its server's figure)."""
            found = next((account for account in double.accounts if account["id"] == account_id), None)
            if found is not None:
                rest = {**(found.get("account") or _account(account_id, str(found.get("username")))), "id": account_id}
                rest.pop("suspended", None)
                rest.pop("limited", None)
                if found.get("suspended"):
                    rest["suspended"] = True
                if found.get("silenced"):
                    rest["limited"] = True
                return rest
            for staff_id, name in [*double.staff, (double.bot_id, double.bot_username)]:
                if staff_id == account_id:
                    return _account(staff_id, name)
            follower = next((f["account"] for f in double.follows if f["account"]["id"] == account_id), None)
            return dict(follower) if follower is not None else None

        @app.get("/api/v1/accounts")
        async def accounts_by_id(request: Request) -> JSONResponse:
            """Api::V1::AccountsController#index (4.3+): the accounts of `id[]` Mastodon knows (others left
            out), at most 40 ids (check_accounts_limit: more is a 422)."""
            if denied := unauthorized(request):
                return denied
            ids = list(dict.fromkeys(request.query_params.getlist("id[]")))
            if len(ids) > 40:
                return JSONResponse({"error": "Validation failed"}, 422)
            return JSONResponse([rest for account_id in ids if (rest := rest_account(account_id)) is not None])

        @app.get("/api/v1/accounts/{account_id}/followers")
        async def followers(request: Request, account_id: str) -> JSONResponse:
            """Api::V1::Accounts::FollowerAccountsController: the follows the instance has of the account,
            newest follow first, paged by the follow's id (`limit` 40, at most 80; a next `Link` whenever a
            page is full, so the last full page is followed by an empty one); nothing for an account that is
            suspended or hides its network, whoever asks (an admin token included); 404 for an unknown id."""
            if denied := unauthorized(request):
                return denied
            target = rest_account(account_id)
            if target is None:
                return JSONResponse({"error": "Record not found"}, 404)
            if target.get("suspended") or target.get("hide_collections"):
                return JSONResponse([])
            rows = sorted((f for f in double.follows if f["target"] == account_id), key=lambda f: -int(f["id"]))
            params = request.query_params
            limit = min(int(params.get("limit") or 40), 80)
            if params.get("max_id"):
                rows = [f for f in rows if int(f["id"]) < int(params["max_id"])]
            if params.get("since_id"):
                rows = [f for f in rows if int(f["id"]) > int(params["since_id"])]
            page = rows[:limit]
            base = f"{double.url}/api/v1/accounts/{account_id}/followers?limit={limit}"
            links = []
            if len(page) == limit:
                links.append(f'<{base}&max_id={page[-1]["id"]}>; rel="next"')
            if page:
                links.append(f'<{base}&since_id={page[0]["id"]}>; rel="prev"')
            headers = {"Link": ", ".join(links)} if links else {}
            return JSONResponse([f["account"] for f in page], headers=headers)

        @app.post("/api/v1/admin/accounts/{account_id}/{action}")
        async def account_action(request: Request, account_id: str, action: str) -> JSONResponse:
            if denied := unauthorized(request) or out_of_scope("admin:write:accounts") or lacks("manage_users"):
                return denied
            if double.on_account_action is not None:
                double.on_account_action(account_id)
            found = admin_account_by_id(account_id)
            if found is None:
                return JSONResponse({"error": "Record not found"}, 404)
            if action in ("approve", "reject", "enable") and found.get("domain") is not None:
                # Api::V1::Admin::AccountsController#require_local_account!
                return JSONResponse({"error": "This method requires a local account"}, 403)
            if action == "action":
                form = await form_of(request)
                action = str(form.get("type"))
                if action not in ("none", "sensitive", "disable", "silence", "suspend"):
                    return JSONResponse({"error": "Validation failed: Type is not included in the list"}, 422)
                if action == "disable" and found.get("domain") is not None:  # a remote account has no user
                    return JSONResponse({"error": "Validation failed"}, 422)
                if form.get("text"):  # Mastodon shows it to the account as the moderators' message
                    double.messages_to_accounts.append((account_id, str(form["text"])))
            double.account_actions.append((account_id, action))
            if action in ("suspend", "unsuspend"):
                found["suspended"] = action == "suspend"
            if action in ("silence", "unsilence"):
                found["silenced"] = action == "silence"
            if action == "reject":
                double.accounts = [account for account in double.accounts if account["id"] != account_id]
                return JSONResponse({})
            if double.lost_action_answers:
                return JSONResponse({"error": "Bad Gateway"}, status_code=double.lost_action_answers.pop(0))
            return JSONResponse(found if action != "suspend" else {})

        @app.get("/api/v1/admin/email_domain_blocks")
        async def email_domain_blocks(request: Request) -> JSONResponse:
            if denied := unauthorized(request):
                return denied
            return paginated(request, double.email_domain_blocks)

        @app.post("/api/v1/admin/email_domain_blocks")
        async def create_email_domain_block(request: Request) -> JSONResponse:
            if denied := unauthorized(request) or out_of_scope("admin:write:email_domain_blocks"):
                return denied
            domain = str((await form_of(request)).get("domain") or "").lower()
            if not domain or any(block["domain"] == domain for block in double.email_domain_blocks):
                return JSONResponse({"error": "Validation failed: Domain has already been taken"}, 422)
            block = {
                "id": str(len(double.email_domain_blocks) + 1),
                "domain": domain,
                "created_at": _now(),
                "history": [],
                "allow_with_approval": False,
            }
            double.email_domain_blocks.append(block)
            return JSONResponse(block)

        @app.delete("/api/v1/admin/email_domain_blocks/{block_id}")
        async def delete_email_domain_block(request: Request, block_id: str) -> JSONResponse:
            if denied := unauthorized(request) or out_of_scope("admin:write:email_domain_blocks"):
                return denied
            if not any(block["id"] == block_id for block in double.email_domain_blocks):
                return JSONResponse({"error": "Record not found"}, 404)
            double.email_domain_blocks = [block for block in double.email_domain_blocks if block["id"] != block_id]
            return JSONResponse({})

        @app.get("/api/v1/notifications")
        async def notifications(request: Request) -> JSONResponse:
            """Newest first; `types[]`, `min_id` (the page right after it), `since_id`, `max_id`, `limit`."""
            if denied := unauthorized(request):
                return denied
            params = request.query_params
            types = params.getlist("types[]")
            found = [item for item in double.notifications if not types or item["type"] in types]
            limit = min(int(params.get("limit", 40)), 80)
            if params.get("max_id"):
                found = [item for item in found if int(item["id"]) < int(params["max_id"])]
            if params.get("since_id"):
                found = [item for item in found if int(item["id"]) > int(params["since_id"])]
            if params.get("min_id"):
                after = [item for item in found if int(item["id"]) > int(params["min_id"])]
                page = sorted(after, key=lambda item: int(item["id"]))[:limit]
            else:
                page = sorted(found, key=lambda item: int(item["id"]), reverse=True)[:limit]
            return JSONResponse(sorted(page, key=lambda item: int(item["id"]), reverse=True))

        @app.get("/api/v1/streaming/user/notification")
        async def notification_stream(request: Request) -> Any:
            """Server-sent events as Mastodon's streaming server sends them: the notifications made after the
            client connected, and a heartbeat comment (`:thump`) every `heartbeat` seconds."""
            if denied := unauthorized(request):
                return denied
            if not double.streaming:
                return JSONResponse({"error": "Streaming is unavailable"}, 503)

            async def events() -> AsyncIterator[bytes]:
                sent = len(double.notifications)
                beat = time.monotonic()
                yield b":)\n"
                while double.streaming:
                    while sent < len(double.notifications):
                        data = json.dumps(double.notifications[sent])
                        sent += 1
                        yield f"event: notification\ndata: {data}\n\n".encode()
                    if time.monotonic() - beat > double.heartbeat:
                        beat = time.monotonic()
                        yield b":thump\n"
                    await asyncio.sleep(0.02)

            return StreamingResponse(events(), media_type="text/event-stream")

        @app.get("/api/v1/admin/domain_blocks")
        async def domain_blocks(request: Request) -> JSONResponse:
            if denied := unauthorized(request):
                return denied
            return paginated(request, double.domain_blocks)

        @app.post("/api/v1/admin/domain_blocks")
        async def create_domain_block(request: Request) -> JSONResponse:
            if denied := unauthorized(request) or out_of_scope("admin:write:domain_blocks"):
                return denied
            form = await form_of(request)
            domain = str(form.get("domain") or "").lower()
            if not domain:
                return JSONResponse({"error": "Validation failed: Domain can't be blank"}, 422)
            existing = next((block for block in double.domain_blocks if block["domain"] == domain), None)
            if existing is not None:
                return JSONResponse({"error": "Validation failed", "existing_domain_block": existing}, 422)
            flags = {
                name: str(form.get(name, "false")).lower() in ("true", "1")
                for name in ("reject_media", "reject_reports", "obfuscate")
            }
            block = double.add_block(
                domain,
                severity=str(form.get("severity") or "silence"),
                private_comment=form.get("private_comment"),
                public_comment=form.get("public_comment"),
                **flags,
            )
            return JSONResponse(block)

        @app.put("/api/v1/admin/domain_blocks/{block_id}")
        async def update_domain_block(request: Request, block_id: str) -> JSONResponse:
            if denied := unauthorized(request) or out_of_scope("admin:write:domain_blocks"):
                return denied
            block = next((block for block in double.domain_blocks if block["id"] == block_id), None)
            if block is None:
                return JSONResponse({"error": "Record not found"}, 404)
            for name, value in (await form_of(request)).items():
                if name in ("reject_media", "reject_reports", "obfuscate"):
                    block[name] = str(value).lower() in ("true", "1")
                elif name in ("severity", "private_comment", "public_comment"):
                    block[name] = value
            return JSONResponse(block)

        @app.delete("/api/v1/admin/domain_blocks/{block_id}")
        async def delete_domain_block(request: Request, block_id: str) -> JSONResponse:
            if denied := unauthorized(request) or out_of_scope("admin:write:domain_blocks"):
                return denied
            double.domain_blocks = [block for block in double.domain_blocks if block["id"] != block_id]
            return JSONResponse({})

        @app.get("/api/v1/instance/peers")
        async def peers(request: Request) -> JSONResponse:
            if double.peers is None:
                return JSONResponse({"error": "Record not found"}, 404)
            blocked = {block["domain"] for block in double.domain_blocks}
            return JSONResponse([peer for peer in double.peers if peer not in blocked])

        @app.post("/api/v1/admin/measures")
        async def measures(request: Request) -> JSONResponse:
            if denied := unauthorized(request):
                return denied
            body = await request.json()
            result = []
            for key in body.get("keys", []):
                domain = (body.get(key) or {}).get("domain")
                follows, followers, accounts = double.measures.get(domain, (0, 0, 0))
                total = {"instance_follows": follows, "instance_followers": followers, "instance_accounts": accounts}
                if key in total:
                    result.append(
                        {
                            "key": key,
                            "unit": None,
                            "total": str(total[key]),
                            "data": [{"date": f"{body['start_at'][:10]}T00:00:00.000+00:00", "value": "0"}],
                        }
                    )
            return JSONResponse(result)

        def lacks(permission: str) -> JSONResponse | None:
            """The bot's role cannot do this (app/policies): 403, as Mastodon answers it."""
            flags = double.bot_permissions
            if flags is None or flags & (ADMINISTRATOR | ROLE_BITS[permission]):
                return None
            return JSONResponse({"error": "This action is not allowed"}, 403)

        @app.get("/api/v1/admin/reports")
        async def admin_reports(request: Request) -> JSONResponse:
            """ReportFilter: unresolved only unless `resolved` (4.6: both with `unresolved` too), and
            `account_id` / `target_account_id`; newest first, `limit` up to 200."""
            if denied := unauthorized(request) or out_of_scope("admin:read:reports") or lacks("manage_reports"):
                return denied
            params = request.query_params
            resolved = params.get("resolved") in ("true", "1", "True")
            both = resolved and params.get("unresolved") in ("true", "1", "True")
            selected = [r for r in double.reports if both or bool(r["action_taken"]) == resolved]
            if params.get("target_account_id"):
                selected = [r for r in selected if r["target_account"]["id"] == params["target_account_id"]]
            if params.get("account_id"):
                selected = [r for r in selected if r["account"]["id"] == params["account_id"]]
            kept = {name: params[name] for name in ("target_account_id", "account_id") if name in params}
            return paginated(request, selected, resolved=str(resolved).lower(), **kept)

        def report_by_id(report_id: str) -> dict[str, Any] | None:
            return next((report for report in double.reports if str(report["id"]) == report_id), None)

        @app.get("/api/v1/admin/reports/{report_id}")
        async def admin_report(request: Request, report_id: str) -> JSONResponse:
            if denied := unauthorized(request) or out_of_scope("admin:read:reports") or lacks("manage_reports"):
                return denied
            found = report_by_id(report_id)
            return JSONResponse(found) if found else JSONResponse({"error": "Record not found"}, 404)

        @app.post("/api/v1/admin/reports/{report_id}/{action}")
        async def report_action(request: Request, report_id: str, action: str) -> JSONResponse:
            """resolve, reopen, assign_to_self, unassign (Api::V1::Admin::ReportsController): Mastodon does
            each whatever the report's state (resolving a resolved report resolves it again)."""
            if action not in ("resolve", "reopen", "assign_to_self", "unassign"):
                return JSONResponse({"error": "Not found"}, 404)
            if denied := unauthorized(request) or out_of_scope("admin:write:reports") or lacks("manage_reports"):
                return denied
            with double._lock:
                found = report_by_id(report_id)
                if found is None:
                    return JSONResponse({"error": "Record not found"}, 404)
                double.report_actions.append((report_id, action))
                me = _admin_account(double.bot_id, double.bot_username, staff=False, role="admin")
                if action == "resolve":
                    found.update(action_taken=True, action_taken_at=_now(), action_taken_by_account=me)
                elif action == "reopen":
                    found.update(action_taken=False, action_taken_at=None, action_taken_by_account=None)
                elif action == "assign_to_self":
                    found["assigned_account"] = me
                else:
                    found["assigned_account"] = None
                found["updated_at"] = _now()
            return JSONResponse(found)

        @app.post("/api/v1/statuses")
        async def post_status(request: Request) -> JSONResponse:
            if denied := unauthorized(request):
                return denied
            with double._lock:
                if double.fail_next_posts:
                    code = double.fail_next_posts.pop(0)
                    headers = {}
                    if code == 429:
                        reset = (datetime.now(UTC) + timedelta(seconds=2)).isoformat(timespec="milliseconds")
                        headers = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
                    return JSONResponse({"error": "Injected failure"}, status_code=code, headers=headers)
            raw = await request.body()
            if request.headers.get("content-type", "").startswith("application/json"):
                form = json.loads(raw)
            else:  # Mastodon.py sends statuses form-encoded
                form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
            key = request.headers.get("idempotency-key")
            with double._lock:
                if key and key in double._idempotency:
                    return JSONResponse(double._idempotency[key])
                text = str(form.get("status", ""))
                reply_to = form.get("in_reply_to_id")
                if reply_to and not any(s["id"] == reply_to and not s.get("deleted") for s in double.statuses):
                    # Api::V1::StatusesController#set_thread: a reply to a status that is gone is a 404
                    error = "The post you are trying to reply to does not appear to exist."
                    return JSONResponse({"error": error}, status_code=404)
                if not text.strip():
                    return JSONResponse({"error": "Validation failed: Text can't be blank"}, status_code=422)
                from mastodon import Mastodon

                if Mastodon.get_status_length(text, str(form.get("spoiler_text") or "")) > double.max_characters:
                    return JSONResponse(
                        {"error": f"Validation failed: Text character limit of {double.max_characters} exceeded"},
                        status_code=422,
                    )
                status_id = str(117000000000000000 + len(double.statuses) + 1)
                status = json.loads((FIXTURES / "status.created.json").read_text())["object"]
                status.update(
                    id=status_id,
                    created_at=_now(),
                    visibility=form.get("visibility") or "public",
                    spoiler_text=form.get("spoiler_text") or "",
                    in_reply_to_id=form.get("in_reply_to_id"),
                    content=f"<p>{text}</p>",
                    text=text,
                    uri=f"https://{DOMAIN}/users/{double.bot_username}/statuses/{status_id}",
                    url=f"https://{DOMAIN}/@{double.bot_username}/{status_id}",
                    account=_account(double.bot_id, double.bot_username),
                    mentions=[
                        {"id": "0", "username": acct.split("@")[0], "url": f"https://{DOMAIN}/@{acct}", "acct": acct}
                        for acct in mentioned_accts(text)
                    ],
                    tags=[],
                    media_attachments=[],
                    application={"name": "Tocsin", "website": None},
                )
                double.statuses.append(status)
                if key:
                    double._idempotency[key] = status
            return JSONResponse(status)

        return app
