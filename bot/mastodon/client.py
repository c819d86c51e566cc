"""Everything Tocsin asks of its own Mastodon instance, through Mastodon.py.

Mastodon.py runs with `ratelimit_method="throw"`: a worker must not sleep for minutes inside a job.
Admin calls are paced to Tocsin's share of the API limit (bot/mastodon/ratelimit.py) at the HTTP session
Mastodon.py sends every request through (PacedSession); a spent share, a 429, network errors and 5xx
surface as TRANSIENT_ERRORS and RQ retries the job with backoff (the scan reschedules itself for the
reset). Read-only look-ups that every worker repeats are cached in Redis.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
import requests
from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonNotFoundError,
    MastodonRatelimitError,
    MastodonServerError,
)

from bot.core import defaults, metrics
from bot.core.config import Settings
from bot.mastodon.ratelimit import UNKNOWN_RESET_WAIT, ApiBudget, BudgetExhausted

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    MastodonNetworkError,
    MastodonRatelimitError,
    MastodonServerError,
)
"""Worth retrying: 429, 5xx, timeouts, refused connections. Anything else (401, 403, 404, 422) is not."""

T = TypeVar("T")

BOT_ACCOUNT_ID = "bot-account-id"  # cache name (under defaults.CACHE_PREFIX) of the token's account id
INSTANCE_DOMAIN = "instance-domain"  # cache name of the instance's own domain (GET /api/v2/instance `domain`)
BOT_ID_MEMO = 60.0
"""Seconds a process keeps the bot's account id it read from Redis (the id never changes)."""
BOT_ID_RETRY = 300
"""After a failed lookup of the bot's account, seconds before the next try (from the sweep)."""

DOMAIN_BLOCKS_PAGE = 200
"""Domain blocks asked for per request: the most every Mastodon since 4.0 returns (4.3+ allows 500)."""


@dataclass(frozen=True)
class Impact:
    """What limiting a server would cut, from POST /api/v1/admin/measures (all-time totals)."""

    local_follows: int  # follows of accounts there by local accounts (instance_follows)
    remote_followers: int  # follows of local accounts by accounts there (instance_followers)
    known_accounts: int  # accounts from there known to this instance (instance_accounts)


@dataclass(frozen=True)
class DomainBlock:
    domain: str
    severity: str  # silence (shown as "Limit" in the admin UI) | suspend | noop
    reject_media: bool
    reject_reports: bool
    created_at: str | None
    id: str | None = None
    private_comment: str | None = None
    public_comment: str | None = None


ACCOUNTS_PER_REQUEST = 40
"""GET /api/v1/accounts?id[]= takes at most 40 ids (DEFAULT_ACCOUNTS_LIMIT; more is a 422); since 4.3."""
FOLLOWERS_PAGE = 80
"""GET /api/v1/accounts/:id/followers gives at most 80 a page (twice its default of 40)."""


@dataclass(frozen=True)
class Following:
    """How many of some remote accounts our (local) members follow, as far as Mastodon told: read from
    GET /api/v1/accounts/:id/followers, which lists the follows the instance has (only its own members'
    follows of a remote account ever reach it; any other is left out), and shows nothing for an account
    that hides its network (`hide_collections`), even to an admin token."""

    followed: int  # accounts (of those read) followed by at least one member
    members: int  # distinct members following any of them
    read: int  # accounts whose followers were read to the end
    asked: int  # accounts it was about (not suspended already, not gone)

    @property
    def complete(self) -> bool:
        return self.read >= self.asked


REQUEST_KINDS: tuple[tuple[re.Pattern[str], str, bool], ...] = (
    # What a request to Mastodon counts as, read from its path at the session (the HTTP method changes
    # nothing: reading, writing and paging an admin resource are all admin calls). `kind` labels
    # tocsin_mastodon_api_calls; a paced request waits for Tocsin's share of the rate limit first.
    #   path (after the API's base URL)      kind            paced
    (re.compile(r"/api/v\d+/admin(/|$)"), "admin", True),  # every admin call, its pages too
    (re.compile(r"/api/v1/instance/peers$"), "instance", True),  # the peer list a scan reads
    (re.compile(r"/api/v\d+/instance(/|$)"), "instance", False),  # the instance's own description
    (re.compile(r"/api/v\d+/statuses(/|$)"), "statuses", False),  # posts: an alert must go out
    (re.compile(r"/api/v\d+/notifications(/|$)"), "notifications", False),  # the mentions poll
    (re.compile(r"/api/v\d+/streaming(/|$)"), "streaming", False),  # the mentions stream
    (re.compile(r"/api/v1/accounts/[^/]+/followers$"), "accounts", True),  # who follows a reported account
    (re.compile(r"/api/v1/accounts$"), "accounts", True),  # reported accounts read by id (a surge DM)
    (re.compile(r"/api/v\d+/accounts(/|$)"), "accounts", False),  # the bot's own account, look-ups
)
"""Of each request, the first row whose pattern its path contains; none: kind "other", not paced."""


def request_kind(url: str) -> tuple[str, bool]:
    """(kind, paced) of a request to `url`, by REQUEST_KINDS."""
    path = urlsplit(url).path
    return next(((kind, paced) for pattern, kind, paced in REQUEST_KINDS if pattern.search(path)), ("other", False))


class Refusal(requests.Response):
    """What the session hands Mastodon.py instead of an answer: Tocsin's share of the window is spent (no
    request was made) or Mastodon answered 429. Reading its body raises BudgetExhausted.

    Mastodon.py turns whatever its session raises into MastodonNetworkError ("Could not complete
    request"), which would lose the wait; but the first thing it does with an error answer is read its
    body for the message (mastodon/internals.py, __api_request), outside that handler and before its own
    429 handling. So the BudgetExhausted raised there reaches the caller as it is, the wait with it."""

    def __init__(self, spent: BudgetExhausted, url: str) -> None:
        super().__init__()
        self.spent = spent
        self.status_code = 429
        self.reason = "Too Many Requests"
        self.url = url

    def json(self, **kwargs: Any) -> Any:
        raise self.spent


class PacedSession(requests.Session):
    """The HTTP session Mastodon.py sends every request through (its `session=`), so every request is
    paced and counted here, once, whatever Mastodon.py method made it.

    Before a paced request (REQUEST_KINDS) one call is reserved from Tocsin's share (bot/mastodon/ratelimit.py);
    every answer's X-RateLimit-* headers are recorded for every process, a 429's too. A spent share and a
    429 reach the caller as BudgetExhausted with the seconds until the reset (see Refusal), unless
    `wait_when_spent` is set: then it is called with those seconds and the request goes again.
    """

    def __init__(self, budget: ApiBudget) -> None:
        super().__init__()
        self.budget = budget
        self.wait_when_spent: Callable[[float], None] | None = None
        """Set (by commands) to wait out a spent share or a 429 and go on; jobs leave it unset and raise."""
        self._bulk = threading.local()

    @contextlib.contextmanager
    def bulk(self) -> Iterator[None]:
        """Requests made inside (by this thread) count as bulk work (ratelimit.BULK_SHARE)."""
        self._bulk.on = True
        try:
            yield
        finally:
            self._bulk.on = False

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kind, paced = request_kind(str(url))
        while True:
            try:
                return self._once(kind, paced, method, url, *args, **kwargs)
            except BudgetExhausted as spent:
                if self.wait_when_spent is None:
                    return Refusal(spent, str(url))
                self.wait_when_spent(spent.wait)

    def _once(self, kind: str, paced: bool, method: str, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        if paced:
            self.budget.reserve(bulk=getattr(self._bulk, "on", False))
        try:
            response = super().request(method, url, *args, **kwargs)
        except Exception:  # Mastodon.py raises it as MastodonNetworkError
            metrics.API_CALLS.labels(kind, "network").inc()
            raise
        now = time.time()
        reset = reset_time(response.headers, now)
        limit = _header_int(response.headers, "X-RateLimit-Limit")
        remaining = _header_int(response.headers, "X-RateLimit-Remaining")
        if reset is not None and limit is not None and remaining is not None:
            self.budget.record(limit, remaining, reset)
        if response.status_code == 429:
            metrics.API_CALLS.labels(kind, "429").inc()
            response.close()
            raise BudgetExhausted(max(reset - now if reset is not None else UNKNOWN_RESET_WAIT, 1.0))
        metrics.API_CALLS.labels(kind, "ok" if response.ok else str(response.status_code)).inc()
        return response


def reset_time(headers: Mapping[str, str], now: float) -> float | None:
    """When the rate-limit window ends by this process's clock (X-RateLimit-Reset, moved by how far the
    server's Date is from `now`), or None when the answer does not say or the time has passed.

    Mastodon writes the reset as ISO 8601, others as seconds since the epoch (Mastodon.py reads both)."""
    reset = _header_time(headers, "X-RateLimit-Reset")
    if reset is None:
        return None
    server_now = _header_time(headers, "Date")
    if server_now is not None:  # else the server's clock is taken as ours
        reset += now - server_now
    return reset if reset > now else None


def _header_time(headers: Mapping[str, str], name: str) -> float | None:
    """A time header as seconds since the epoch: ISO 8601, an HTTP date, or seconds; None if none of them."""
    raw = (headers.get(name) or "").strip()
    if raw.isdigit():
        return float(raw)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        try:
            moment = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(headers.get(name) or "")
    except ValueError:
        return None


def paced_session(client: Mastodon | None) -> PacedSession | None:
    session = getattr(client, "session", None)
    return session if isinstance(session, PacedSession) else None


def make_client(settings: Settings, connection: redis.Redis) -> Mastodon | None:
    """Mastodon.py sending through a PacedSession. Its own rate limiting stays "throw": its "wait" and
    "pace" sleep inside the call, which a worker must not do for minutes; and it never sees a 429 of
    ours (the session answers a Refusal instead), so Tocsin's pacing is the only one."""
    if settings.mastodon_url is None:
        return None
    token = settings.access_token.get_secret_value() if settings.access_token else None
    return Mastodon(
        access_token=token,
        api_base_url=settings.mastodon_url,
        ratelimit_method="throw",
        request_timeout=settings.request_timeout,
        user_agent=f"Tocsin/0.1 (+{settings.public_url or settings.mastodon_url})",
        session=PacedSession(ApiBudget(connection, settings.api_budget)),
    )


class MastodonLink:
    """The instance as Tocsin sees it. `client` is None when no TOCSIN_MASTODON_URL is set.

    `is_staff` tells, from a role's permissions bitmask, whether it makes its holder staff (bot.mastodon.actions
    owns that rule, and imports this module: the rule is handed in rather than imported back).
    """

    def __init__(
        self,
        settings: Settings,
        connection: redis.Redis,
        client: Mastodon | None,
        *,
        is_staff: Callable[[int], bool],
    ) -> None:
        self.settings = settings
        self.redis = connection
        self.client = client
        self.is_staff = is_staff
        self._bot_id: tuple[float, str | None] | None = None  # (read at, id): known_bot_account_id's memo

    @property
    def can_read_admin(self) -> bool:
        return self.client is not None and self.settings.access_token is not None

    def _cached(self, name: str, ttl: int, compute: Callable[[], T]) -> T:
        key = defaults.CACHE_PREFIX + name
        raw = self.redis.get(key)
        if raw is not None:
            return json.loads(raw)  # type: ignore[no-any-return]
        value = compute()
        self.redis.set(key, json.dumps(value), ex=ttl)
        return value

    @contextlib.contextmanager
    def bulk(self) -> Iterator[None]:
        """Admin calls made inside are bulk work: they stop short of Tocsin's whole share of the rate
        limit, leaving room for the routine ones (bot/mastodon/ratelimit.py, BULK_SHARE)."""
        session = paced_session(self.client)
        if session is not None:
            with session.bulk():
                yield
        else:
            yield

    def wait_out_spent_share(self, wait: Callable[[float], None]) -> None:
        """For commands, not jobs: a spent share or a 429 calls `wait(seconds)`, then the request goes again."""
        session = paced_session(self.client)
        if session is not None:
            session.wait_when_spent = wait

    def max_characters(self) -> int:
        if self.client is None:
            return defaults.DEFAULT_MAX_CHARACTERS

        def read() -> int:
            instance = self.client.instance_v2()  # type: ignore[union-attr]
            statuses = (instance.get("configuration") or {}).get("statuses") or {}
            return int(statuses.get("max_characters") or defaults.DEFAULT_MAX_CHARACTERS)

        return self._cached("max-characters", defaults.INSTANCE_CACHE_TTL, read)

    def bot_account_id(self) -> str | None:
        """The id of the token's account: its own reports and statuses come back as webhooks."""
        if not self.can_read_admin:
            return None
        return self._cached(
            BOT_ACCOUNT_ID,
            defaults.INSTANCE_CACHE_TTL,
            lambda: str(self.client.account_verify_credentials()["id"]),  # type: ignore[union-attr]
        )

    def known_bot_account_id(self) -> str | None:
        """The bot's own account id as last looked up, from Redis only: the event path never waits for
        Mastodon (an unreachable instance would stall detection exactly when it is in trouble)."""
        if not self.can_read_admin:
            return None
        now = time.monotonic()
        if self._bot_id is None or now - self._bot_id[0] > BOT_ID_MEMO:
            raw = self.redis.get(defaults.CACHE_PREFIX + BOT_ACCOUNT_ID)  # one read a minute, not per event
            self._bot_id = (now, str(json.loads(raw)) if raw else None)
        return self._bot_id[1]

    def refresh_bot_account_id(self) -> str | None:
        """At worker start and on the sweep: look the id up when it is not known, unless Mastodon failed
        in the last minutes (a negative cache, so an outage costs one request per few minutes)."""
        if not self.can_read_admin or self.known_bot_account_id() is not None:
            return self.known_bot_account_id()
        if not self.redis.set(defaults.CACHE_PREFIX + BOT_ACCOUNT_ID + ":failed", "1", nx=True, ex=BOT_ID_RETRY):
            return None
        try:
            found = self.bot_account_id()
        except MastodonError as error:
            log.warning("could not look up the bot's own account: %s", type(error).__name__)
            return None
        self.redis.delete(defaults.CACHE_PREFIX + BOT_ACCOUNT_ID + ":failed")
        self._bot_id = (time.monotonic(), found)
        return found

    def instance_domain(self) -> str | None:
        """The instance's own domain (LOCAL_DOMAIN, `domain` of GET /api/v2/instance, a public endpoint),
        read once a day: TOCSIN_MASTODON_URL's host may be 127.0.0.1 or a private network's name."""
        if self.client is None:
            return None

        def read() -> str:
            return str(self.client.instance_v2().get("domain") or "").lower()  # type: ignore[union-attr]

        return self._cached(INSTANCE_DOMAIN, defaults.INSTANCE_CACHE_TTL, read) or None

    def refresh_instance_domain(self) -> str | None:
        """At worker start and on the sweep: look the domain up when it is not known, so the pages (which
        never ask Mastodon) can name the instance; after a failure, not again for a few minutes."""
        if self.client is None:
            return None
        known = known_instance_domain(self.redis)
        if known is not None:
            return known
        if not self.redis.set(defaults.CACHE_PREFIX + INSTANCE_DOMAIN + ":failed", "1", nx=True, ex=BOT_ID_RETRY):
            return None
        try:
            found = self.instance_domain()
        except MastodonError as error:
            log.warning("could not read the instance's domain: %s", type(error).__name__)
            return None
        self.redis.delete(defaults.CACHE_PREFIX + INSTANCE_DOMAIN + ":failed")
        return found

    def own_domains(self) -> list[str]:
        """This instance's names: its LOCAL_DOMAIN (the instance's `domain`), its WEB_DOMAIN (the host of
        the bot's profile URL) and the host Tocsin reaches it at (TOCSIN_MASTODON_URL)."""
        names = {urlsplit(self.settings.mastodon_url or "").hostname or ""}
        if self.can_read_admin:

            def read() -> list[str]:
                instance = self.client.instance_v2()  # type: ignore[union-attr]
                me = self.client.account_verify_credentials()  # type: ignore[union-attr]
                return [str(instance.get("domain") or ""), urlsplit(str(me.get("url") or "")).hostname or ""]

            names.update(self._cached("own-domains", defaults.INSTANCE_CACHE_TTL, read))
        return sorted(name.lower() for name in names if name)

    def status(self, status_id: str) -> dict[str, Any] | None:
        """A status as it is now (None: deleted, or not visible to the bot)."""
        try:
            found = self._admin(lambda client: client.status(status_id))
        except MastodonNotFoundError:
            return None
        return dict(as_webhook_json(dict(found)))

    def moderators(self) -> list[str]:
        """Accts to address alerts to, asked for at send time: those of TOCSIN_MODERATORS who are local staff
        now (all of them when the admin API cannot be read), else the instance's local staff."""
        if self.settings.moderators:
            return self.moderator_check()[0] if self.can_read_admin else list(self.settings.moderators)
        if not self.can_read_admin:
            return []
        return self.staff()

    def staff(self) -> list[str]:
        """Usernames of the local accounts that are staff now (bot excepted), cached STAFF_CACHE_TTL.

        One request: Mastodon's `permissions=staff` lists the accounts whose role can manage reports
        (administrators included), suspended ones left out by `status=active`; a disabled login, or a role
        that is not staff by Tocsin's rule, is left out here.
        """

        def read() -> list[str]:
            bot_id = self.bot_account_id()
            listed = self.client.admin_accounts_v2(  # type: ignore[union-attr]
                origin="local", status="active", permissions="staff", limit=200
            )
            return sorted(
                str(account["username"])
                for account in listed
                if str(account["id"]) != bot_id and self._is_staff_account(account)
            )

        return self._cached("staff", defaults.STAFF_CACHE_TTL, read)

    def moderator_check(self, fresh: bool = False) -> tuple[list[str], list[str]]:
        """TOCSIN_MODERATORS split into (local staff now, not): a moderator removed, demoted, suspended or
        disabled in Mastodon, or an account of another server, gets no alert (alerts quote reports).

        Cached STAFF_CACHE_TTL: a demotion stops DMs within a minute. The staff list answers for most; an
        acct it does not name (a role that is staff without managing reports, or no staff at all) is
        looked up on its own, two requests. A 403 (the token or the bot's role cannot list accounts) means
        the admin API cannot tell: every configured acct is kept, and the log says so.
        """
        key = "moderators:" + hashlib.sha256("\n".join(self.settings.moderators).encode()).hexdigest()[:16]
        if fresh:
            self.redis.delete(defaults.CACHE_PREFIX + key, defaults.CACHE_PREFIX + "staff")

        def read() -> list[list[str]]:
            try:
                staff = {name.lower() for name in self.staff()}
                kept: list[str] = []
                dropped: list[str] = []
                for acct in self.settings.moderators:
                    username = self._local_username(acct)
                    is_staff = username is not None and (username.lower() in staff or self._staff_by_name(username))
                    (kept if is_staff else dropped).append(acct)
            except MastodonAPIError as error:
                if http_status(error) != 403:
                    raise
                log.warning("TOCSIN_MODERATORS not checked against current staff: the admin API answered 403")
                return [list(self.settings.moderators), []]
            for position, acct in enumerate(self.settings.moderators, start=1):
                if acct in dropped:  # its position only: which account is for `tocsin doctor` to say
                    log.warning(
                        "TOCSIN_MODERATORS entry %d of %d is not local staff now: no alerts for it (tocsin doctor)",
                        position,
                        len(self.settings.moderators),
                    )
            return [kept, dropped]

        kept, dropped = self._cached(key, defaults.STAFF_CACHE_TTL, read)
        return kept, dropped

    def _is_staff_account(self, account: dict[str, Any]) -> bool:
        """An Admin::Account that is local staff now: local, not suspended, login not disabled, a staff role."""
        role = account.get("role") or {}
        return (
            account.get("domain") is None
            and not account.get("suspended")
            and not account.get("disabled")
            and self.is_staff(int(role.get("permissions") or 0))
        )

    def _staff_by_name(self, username: str) -> bool:
        """A configured moderator the staff list does not name, looked up (exactly, by name) and read."""
        try:
            found = self.client.account_lookup(username)  # type: ignore[union-attr]
            account = self.client.admin_account(found["id"])  # type: ignore[union-attr]
        except MastodonNotFoundError:
            return False
        return self._is_staff_account(as_webhook_json(dict(account)))

    def _local_username(self, acct: str) -> str | None:
        """`alice` or `alice@<this instance>` → `alice`; None for an account of another server."""
        username, _, domain = acct.lstrip("@").partition("@")
        if not domain:
            return username
        return username if domain.lower() in self._local_domains() else None

    def _local_domains(self) -> set[str]:
        """This instance's account domain (LOCAL_DOMAIN, which may differ from the API's host) and host."""
        host = (urlsplit(self.settings.mastodon_url or "").hostname or "").lower()
        domain = self._cached(
            "local-domain",
            defaults.INSTANCE_CACHE_TTL,
            lambda: str(self.client.instance_v2().get("domain") or ""),  # type: ignore[union-attr]
        )
        return {host, domain.lower()} - {""}

    def domain_blocks(self) -> list[DomainBlock]:
        if not self.can_read_admin:
            return []

        def read() -> list[dict[str, Any]]:
            blocks = self.all_domain_blocks()
            return [
                asdict(
                    DomainBlock(
                        domain=str(block["domain"]),
                        severity=str(block["severity"]),
                        reject_media=bool(block.get("reject_media")),
                        reject_reports=bool(block.get("reject_reports")),
                        created_at=_iso(block.get("created_at")),
                        id=str(block["id"]),
                        private_comment=block.get("private_comment"),
                        public_comment=block.get("public_comment"),
                    )
                )
                for block in blocks
            ]

        return [DomainBlock(**item) for item in self._cached("domain-blocks", defaults.DOMAIN_BLOCKS_CACHE_TTL, read)]

    def all_domain_blocks(self) -> list[Any]:
        if self.client is None:
            raise RuntimeError("reading domain blocks needs TOCSIN_MASTODON_URL and TOCSIN_ACCESS_TOKEN")
        return [
            block
            for page in pages_by_max_id(self.client.admin_domain_blocks, limit=DOMAIN_BLOCKS_PAGE)
            for block in page
        ]

    def block_for(self, domain: str) -> DomainBlock | None:
        """The block covering `domain`: its own, else the nearest parent domain's (Mastodon's rule)."""
        return covering_block(domain, {block.domain: block for block in self.domain_blocks()})

    def impact(self, domain: str, fresh: bool = False) -> Impact | None:
        """Follows both ways and accounts known, cached for an hour (scans ask for many servers); `fresh`:
        read now (a surge DM's figures, which what it says of the reported accounts is checked against)."""
        if not self.can_read_admin:
            return None
        if fresh:
            self.redis.delete(defaults.CACHE_PREFIX + f"impact:{domain}")
        cached = self._cached(f"impact:{domain}", defaults.IMPACT_CACHE_TTL, lambda: self._read_impact(domain))
        return Impact(**cached) if cached else None

    def _read_impact(self, domain: str) -> dict[str, int] | None:
        end = datetime.now(UTC)  # `total` of instance_* measures is all-time whatever the range
        try:
            measures = self.client.admin_measures(  # type: ignore[union-attr]
                start_at=end - timedelta(days=1),
                end_at=end,
                instance_follows=domain,
                instance_followers=domain,
                instance_accounts=domain,
            )
        except TRANSIENT_ERRORS:
            raise
        except MastodonAPIError as error:  # 403: the token lacks admin:read or the role lacks view_dashboard
            log.warning("admin measures unavailable: %s", http_status(error) or error)
            return None
        totals = {str(measure["key"]): int(measure.get("total") or 0) for measure in measures}
        return asdict(
            Impact(
                local_follows=totals.get("instance_follows", 0),
                remote_followers=totals.get("instance_followers", 0),
                known_accounts=totals.get("instance_accounts", 0),
            )
        )

    def create_domain_block(self, domain: str, *, private_comment: str, **fields: Any) -> dict[str, Any]:
        """An admin write: a new domain block (422 if the domain is blocked already), as Mastodon answers
        it; the cached list is dropped so the next read sees it."""
        created = self._admin(
            lambda client: client.admin_create_domain_block(domain, private_comment=private_comment, **fields),
            "domain-blocks",
        )
        return dict(as_webhook_json(dict(created)))

    def delete_domain_block(self, block_id: str) -> None:
        """An admin write: lift a domain block; the cached list is dropped."""
        self._admin(lambda client: client.admin_delete_domain_block(block_id), "domain-blocks")

    def domain_block(self, domain: str) -> dict[str, Any] | None:
        """The block of exactly `domain`, read now (not from the cache): an admin write decides by it."""
        found = next((block for block in self.all_domain_blocks() if str(block["domain"]) == domain), None)
        return None if found is None else as_webhook_json(dict(found))

    def update_domain_block(self, block_id: str, **fields: Any) -> dict[str, Any]:
        """An admin write: change a domain block; the block as Mastodon answers it."""
        updated = self._admin(lambda client: client.admin_update_domain_block(block_id, **fields), "domain-blocks")
        return dict(as_webhook_json(dict(updated)))

    def create_email_domain_block(self, domain: str) -> str:
        """An admin write: new sign-ups from addresses at `domain` are refused; the block's id."""
        created = self._admin(lambda client: client.admin_create_email_domain_block(domain))
        return str(created["id"])

    def delete_email_domain_block(self, block_id: str) -> None:
        self._admin(lambda client: client.admin_delete_email_domain_block(block_id))

    def admin_account(self, account_id: str) -> dict[str, Any]:
        """An account as moderators see it (its role and permissions, whether it is local), read now."""
        account: dict[str, Any] = as_webhook_json(dict(self._admin(lambda client: client.admin_account(account_id))))
        return account

    def moderate_account(self, account_id: str, action: str, text: str | None = None) -> None:
        """POST /api/v1/admin/accounts/:id/action (suspend, silence, …); no email to the account: the
        accounts Tocsin acts on are spam accounts, and the email would go to the spammer."""
        self._admin(
            lambda client: client.admin_account_moderate(account_id, action, text=text, send_email_notification=False)
        )

    def accounts_by_id(self, account_ids: list[str]) -> dict[str, dict[str, Any]] | None:
        """Accounts as anyone sees them (REST::Account: `suspended` and `limited` set when they are,
        `hide_collections`, the remote server's `followers_count`), 40 to a request (GET /api/v1/accounts,
        Mastodon 4.3+); an id Mastodon does not know is left out. None when this Mastodon has no such
        endpoint (404)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(account_ids), ACCOUNTS_PER_REQUEST):
            chunk = account_ids[start : start + ACCOUNTS_PER_REQUEST]
            try:
                answer = self._admin(lambda client, ids=chunk: client.accounts(ids))  # type: ignore[misc]
            except MastodonNotFoundError:
                return None
            found.update((str(item["id"]), as_webhook_json(dict(item))) for item in answer)
        return found

    def followed_by_members(
        self, account_ids: list[str], domain_follows: int | None, max_accounts: int, max_pages: int
    ) -> Following:
        """How many of these remote accounts (of one server) our members follow, and how many members.

        The accounts are read first (at most `max_accounts`, one request per 40), then their followers,
        most-followed first (by their server's count), at most `max_pages` pages in all. `domain_follows`
        is how many follows our members have of that server's accounts (its `instance_follows` measure,
        read just before): once the follows found add up to it, the accounts not read yet have none, those
        hiding their network included. Stops early, with what it read, when Tocsin's share of the rate
        limit is spent or Mastodon fails: the answer says how much it read. Only local followers count (an
        `acct` without a domain)."""
        unread = Following(0, 0, 0, len(account_ids))
        if self.client is None:  # a replay's instance: nothing is read
            return unread
        try:
            accounts = self.accounts_by_id(account_ids[:max_accounts])
        except MastodonError as error:  # the share spent among them: a DM does not wait for the budget
            log.warning("who follows the reported accounts not read: %s", type(error).__name__)
            return unread
        if accounts is None:
            return unread
        # Suspended already (suspending cuts nothing more) or gone: not what the question is about.
        alive = [account for account in accounts.values() if not account.get("suspended")]
        asked = len(alive) + max(len(account_ids) - max_accounts, 0)
        # An account hiding its network lists no follower to anyone: it stays unread ("at least").
        readable = sorted(
            (account for account in alive if not account.get("hide_collections")),
            key=lambda account: -_followers_count(account),
        )
        followed, read, found, pages_left = 0, 0, 0, max_pages
        members: set[str] = set()
        for account in readable:
            if domain_follows is not None and found >= domain_follows:
                return Following(followed, len(members), asked, asked)  # every follow there is accounted for
            if pages_left <= 0:
                break
            try:
                local, pages, whole = self._local_followers(str(account["id"]), pages_left)
            except MastodonNotFoundError:  # gone meanwhile: followed by nobody
                pages_left -= 1
                read += 1
                continue
            except MastodonError as error:
                log.warning("who follows the reported accounts read in part: %s", type(error).__name__)
                break
            pages_left -= pages
            members |= local
            found += len(local)
            followed += 1 if local else 0
            read += 1 if whole else 0
        if domain_follows is not None and found >= domain_follows:
            read = asked
        return Following(followed, len(members), read, asked)

    def _local_followers(self, account_id: str, max_pages: int) -> tuple[set[str], int, bool]:
        """The local followers of one account from at most `max_pages` pages (the `Link` header's next
        page: the endpoint pages by follow, not by account id), the pages read, and whether that is all."""
        page: Any = self._admin(lambda client: client.account_followers(account_id, limit=FOLLOWERS_PAGE))
        pages = 1
        local: set[str] = set()
        while True:
            local.update(str(item["id"]) for item in page if "@" not in str(item.get("acct") or "@"))
            if not page or getattr(page, "_pagination_next", None) is None:
                return local, pages, True
            if pages >= max_pages:
                return local, pages, False
            page = self._admin(lambda client, previous=page: client.fetch_next(previous))  # type: ignore[misc]
            pages += 1
            if page is None:
                return local, pages, True

    def open_reports(
        self, since: float | None = None, max_pages: int | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """The unresolved reports, newest first, down to the first page that reaches back to `since`
        (reports are numbered as they come: older ones are on later pages) and at most `max_pages` pages;
        and whether that is all of them from `since` on."""
        reports: list[dict[str, Any]] = []

        def read(client: Mastodon) -> bool:
            for number, page in enumerate(pages_by_max_id(client.admin_reports, resolved=False, limit=200), start=1):
                items = [as_webhook_json(dict(item)) for item in page]
                reports.extend(items)
                times = [epoch_of(item.get("created_at")) for item in items]
                if since is not None and any(at is not None and at <= since for at in times):
                    return True
                if max_pages is not None and number >= max_pages:
                    return False
            return True

        complete = self._admin(read)
        return reports, complete

    def resolve_report(self, report_id: str) -> None:
        """POST /api/v1/admin/reports/:id/resolve (Manage Reports)."""
        self._admin(lambda client: client.admin_report_resolve(report_id))

    def unsilence_account(self, account_id: str) -> None:
        self._admin(lambda client: client.admin_account_unsilence(account_id))

    def unsuspend_account(self, account_id: str) -> None:
        self._admin(lambda client: client.admin_account_unsuspend(account_id))

    def reject_account(self, account_id: str) -> None:
        """Reject a pending sign-up: Mastodon deletes the account (there is no undoing it)."""
        self._admin(lambda client: client.admin_account_reject(account_id))

    def mentions(self, after: str | None, limit: int = 40) -> list[dict[str, Any]]:
        """Mention notifications newer than the notification `after` (the oldest first): the page right
        after it (min_id), so a long backlog is read in order, page by page."""
        if self.client is None or self.settings.access_token is None:
            return []
        page = self.client.notifications(types=["mention"], min_id=after, limit=limit)
        return sorted((as_webhook_json(dict(item)) for item in page), key=lambda item: int(item["id"]))

    def _admin(self, call: Callable[[Mastodon], T], cached: str | None = None) -> T:
        """An admin call, read or write; `cached` names the cached look-up a write makes stale."""
        if self.client is None or self.settings.access_token is None:
            raise RuntimeError("acting on the instance needs TOCSIN_MASTODON_URL and TOCSIN_ACCESS_TOKEN")
        try:
            return call(self.client)
        finally:
            if cached is not None:
                self.redis.delete(defaults.CACHE_PREFIX + cached)

    def post_status(
        self,
        text: str,
        *,
        visibility: str,
        idempotency_key: str,
        in_reply_to_id: str | None = None,
        spoiler_text: str | None = None,
    ) -> str:
        if self.client is None or self.settings.access_token is None:
            raise RuntimeError("posting needs TOCSIN_MASTODON_URL and TOCSIN_ACCESS_TOKEN")
        status = self.client.status_post(
            text,
            visibility=visibility,
            idempotency_key=idempotency_key,
            in_reply_to_id=in_reply_to_id,
            spoiler_text=spoiler_text,
        )
        return str(status["id"])


def http_status(error: MastodonError) -> int | None:
    """The HTTP status of Mastodon's answer behind `error`, or None when it carries none.

    Mastodon.py raises an error answer as `(message, status, reason, detail)` (mastodon/internals.py,
    __api_request); its other errors (a body it could not parse as JSON, a network failure, a bad
    argument) have a message and maybe a text in their place, never a status."""
    status = error.args[1] if len(error.args) > 1 else None
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return None
    return status


def epoch_of(value: object) -> float | None:
    """Epoch seconds of an ISO 8601 time as Mastodon writes it; None for anything else."""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() if value else None
    except ValueError:
        return None


def _followers_count(account: dict[str, Any]) -> float:
    """An account's followers as its server counts them; a hidden count (negative, or none) as the most."""
    count = account.get("followers_count")
    return float(count) if isinstance(count, int) and count >= 0 else float("inf")


def known_instance_domain(connection: redis.Redis) -> str | None:
    """The instance's domain as last read (MastodonLink.instance_domain), from Redis only."""
    raw = connection.get(defaults.CACHE_PREFIX + INSTANCE_DOMAIN)
    return (str(json.loads(raw)) or None) if raw else None


def covering_block(domain: str, by_domain: dict[str, DomainBlock]) -> DomainBlock | None:
    """The block of `domain` or of its nearest parent domain, from blocks indexed by domain."""
    parts = domain.split(".")
    for start in range(len(parts) - 1):
        block = by_domain.get(".".join(parts[start:]))
        if block is not None:
            return block
    return None


def pages_by_max_id(
    fetch: Callable[..., list[Any]], *, before_id: int | None = None, **params: Any
) -> Iterator[list[Any]]:
    """Every page of a newest-first listing, asked for by max_id (from `before_id` down, when given).

    Mastodon.py 2.3.3's fetch_next cannot cast the next page of endpoints typed as a plain list or a
    Union (admin_domain_blocks, admin_accounts_v2), so Tocsin pages itself. A page can be shorter than
    asked (servers cap `limit` differently by version), so only an empty page ends the listing.
    """
    max_id: int | None = before_id
    while True:
        page = fetch(max_id=max_id, **params)
        oldest = min((int(item["id"]) for item in page), default=None)
        if oldest is None or (max_id is not None and oldest >= max_id):  # the end (or max_id ignored)
            return
        yield page
        max_id = oldest


def snowflake_at(moment: float) -> int:
    """The smallest id Mastodon gives a row made at `moment` (statuses, accounts: Mastodon::Snowflake,
    milliseconds since the epoch shifted 16 bits): `max_id` of it lists what was made before."""
    return int(moment * 1000) << 16


def _iso(value: object) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return None if value is None else str(value)


def as_webhook_json(value: Any) -> Any:
    """A Mastodon.py entity as webhook JSON: string ids, ISO times."""
    if isinstance(value, dict):
        return {
            key: (str(item) if key.endswith("id") and isinstance(item, int) else as_webhook_json(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [as_webhook_json(item) for item in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value
