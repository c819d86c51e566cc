"""Sign-up surges: local sign-ups (`account.created`) far above their usual rate.

Counting is by the accounts' own `created_at`, in one Lua call per sign-up: a sorted set of recent
sign-ups (the window count, and what an alert shows) and hourly counters for the long baseline (28 days
of a busy instance cost ~700 numbers, not an entry per account). Whether that is a surge is decided by
pure functions; the clusters a DM shows (email domain, network, name pattern, invite, app) come from
`find_clusters`, a pure function over the window's sign-ups. `account.approved` and `account.updated`
keep each remembered account's state current, so escalations show who was approved or suspended since.

Only what intake kept reaches this module: an email's domain and a keyed hash of the IP's network.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import time
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import redis
from mastodon import MastodonError

from bot.actions import Action, Message, Proposal, ProposalItem
from bot.config import SignupSurgeSettings
from bot.context import Context
from bot.events import parse_time
from bot.families import Rejected
from bot.mastodon import as_webhook_json, pages_by_max_id, snowflake_at
from bot.privacy import email_domain, pii_key, reduce_admin_account
from bot.scripting import NAMED_ARGUMENTS, Lua
from bot.surges import (
    DAY,
    HOUR,
    OLDEST_TO_FORGET_FUNCTION,
    Alert,
    BaselineRatio,
    Decision,
    SurgeDetector,
    SurgeState,
    decide,
    rate_per_hour,
)
from bot.templating import render_text
from handlers.admin_urls import accounts_url, filters_by
from handlers.payloads import AdminAccount, slim_account

log = logging.getLogger(__name__)

BUCKET = "local"
"""Sign-ups are local by definition: one bucket."""

SIGNUPS = "tocsin:signups:times"  # sorted set: account id scored by created_at
SIGNUP_PREFIX = "tocsin:signup:"  # + account id: hash of what the detector keeps of a sign-up
HOURS = "tocsin:signups:hours"  # hash: hour number (epoch // 3600) -> sign-ups in that hour
FIRST_SEEN = "tocsin:signups:first"  # time of the earliest sign-up counted (how long we have observed)
SURGES = SurgeDetector(
    name="signup-surge",
    prefix="tocsin:signups:surge:",
    open_key="tocsin:signups:surges:open",
    quiet_seconds=lambda settings: settings.signup_surge.quiet_hours * HOUR,
    compose=lambda ctx, alert: compose_alert(ctx, alert),
)

KEEP_SECONDS = 7 * DAY
"""Sign-ups are remembered for a week: the spam detector shows a young account's sign-up path (email
domain, invite, app) next to its posts."""
KEEP_CAP = 20_000
"""... at most this many (~0.3 KB each), oldest forgotten first, so a flood of sign-ups stays bounded."""
PRUNE_BATCH = 100
"""Forgotten sign-ups removed per event: constant work per event, and still faster than any flood."""
DETAIL_SCAN_CAP = 2000
"""An alert's clusters are found among at most this many of the window's newest sign-ups."""
ACCOUNTS_PAGE = 200
"""Accounts asked for per request by backfill: GET /api/v2/admin/accounts allows up to 200."""
SHOWN_CLUSTERS = 4
"""Clusters a DM lists (largest first); its shorter rendering lists COMPACT_CLUSTERS."""
COMPACT_CLUSTERS = 2

MAIL_PROVIDERS_FILE = Path(__file__).with_name("mail_providers.toml")
"""Big mail providers, their address domains and their documented mail servers (the file says why and
where from): a cluster there is worth seeing, but blocking it would shut out ordinary people, so no DM
proposes it."""
ESTABLISHED_MIN = 3
"""An email domain at least this many established members signed up with (confirmed, not suspended,
made before the surge: see ESTABLISHED_BEFORE) is where people come from (a school, a company, a small
provider), not a throwaway spam domain: blocking it would refuse their peers, so it is not proposed. A
spammer's own domain has none; a few sleeper accounts stay under this, and the DM shows the cluster
either way."""
ESTABLISHED_BEFORE = DAY
"""An account is established when made at least this long before the surge's window: the day before a
wave may hold its vanguard (accounts made ahead, confirmed by the same script)."""
ESTABLISHED_PAGES = 2
"""Pages of older accounts read to count a domain's established members (GET /api/v2/admin/accounts
with Mastodon's own "same email domain" filter, `email=%domain`): two requests at most per alert and
domain; found no answer within them, the block is not proposed."""


# --- Pure: numbers, names, clusters --------------------------------------------------------------


@dataclass(frozen=True)
class SignupStats:
    """The window's numbers at the time of one sign-up."""

    count: int  # sign-ups in the window
    first_in_window: float | None  # time of the oldest of those
    baseline: int  # sign-ups in the baseline window (only counted when `count` reaches the minimum)
    observed_for: float  # seconds since the earliest sign-up counted


def surge_rule(cfg: SignupSurgeSettings) -> BaselineRatio:
    """The sign-up thresholds: no surge before sign-ups have been observed `learning_hours`."""
    return BaselineRatio(
        window=cfg.window_hours * HOUR,
        baseline=cfg.baseline_days * DAY,
        ratio=cfg.ratio,
        min_count=cfg.min_signups,
        learning=cfg.learning_hours * HOUR,
    )


def hourly_rate(stats: SignupStats, cfg: SignupSurgeSettings, now: float) -> float:
    return rate_per_hour(stats.count, stats.first_in_window, now, span=cfg.window_hours * HOUR)


def is_surge(stats: SignupStats, cfg: SignupSurgeSettings) -> bool:
    return surge_rule(cfg).is_surge(stats.count, stats.baseline, stats.observed_for)


def assess(stats: SignupStats, state: SurgeState | None, cfg: SignupSurgeSettings, now: float) -> Decision | None:
    """Open a surge, escalate it (count and rate both grew by the escalation factor), or nothing."""
    return decide(
        state,
        is_surge(stats, cfg),
        stats.count,
        hourly_rate(stats, cfg, now),
        now,
        cfg.escalation_factor,
        cfg.escalation_cooldown_minutes,
    )


_NAME_WITH_NUMBER = re.compile(r"^([a-z][a-z_]*?[a-z])_?\d{2,}$", re.IGNORECASE)
_VOWELS = frozenset("aeiouy")


def name_stem(username: str) -> str | None:
    """`cryptodeals_4821` → `cryptodeals`: a shared stem with numbers is how scripts name accounts."""
    match = _NAME_WITH_NUMBER.match(username)
    return match.group(1).lower() if match and len(match.group(1)) >= 3 else None


def looks_generated(username: str) -> bool:
    """Random-looking: long, and hardly pronounceable or letters and digits mixed (`xk7qv9tz2w`)."""
    name = username.lower()
    if len(name) < 8 or not name.isalnum():
        return False
    letters = [char for char in name if char.isalpha()]
    if not letters:
        return False
    switches = sum(1 for a, b in itertools.pairwise(name) if a.isdigit() != b.isdigit())
    vowel_share = sum(char in _VOWELS for char in letters) / len(letters)
    longest_run = max(len(run) for run in re.split(r"[aeiouy0-9]+", name))
    return switches >= 3 or vowel_share < 0.2 or longest_run >= 6


@dataclass(frozen=True)
class Signup:
    id: str
    username: str
    created_at: float
    email_domain: str | None = None
    network: str | None = None  # keyed hash of the sign-up IP's /24 or /48
    invite: str | None = None  # id of the inviting account
    app: str | None = None  # id of the application used to sign up
    approved: bool | None = None
    confirmed: bool | None = None
    suspended: bool = False

    @property
    def pending(self) -> bool:
        """Not yet able to post: waiting for email confirmation or for a moderator's approval."""
        return not self.suspended and (self.approved is False or self.confirmed is False)

    @property
    def able_to_post(self) -> bool:
        return not self.suspended and bool(self.approved) and bool(self.confirmed)

    @classmethod
    def from_redis(cls, account_id: str, raw: dict[bytes, bytes]) -> Signup:
        fields = {key.decode(): value.decode() for key, value in raw.items()}

        def flag(name: str) -> bool | None:
            return None if name not in fields else fields[name] == "1"

        return cls(
            id=account_id,
            username=fields.get("username", ""),
            created_at=float(fields.get("created_at", 0)),
            email_domain=fields.get("email_domain") or None,
            network=fields.get("network") or None,
            invite=fields.get("invite") or None,
            app=fields.get("app") or None,
            approved=flag("approved"),
            confirmed=flag("confirmed"),
            suspended=bool(flag("suspended")),
        )


class ClusterKind(StrEnum):
    EMAIL_DOMAIN = "email domain"
    NETWORK = "network"
    NAME_PATTERN = "name pattern"
    GENERATED_NAMES = "generated-looking names"
    INVITE = "invite"
    APP = "app"


@dataclass(frozen=True)
class Cluster:
    kind: ClusterKind
    value: str
    members: tuple[Signup, ...]  # newest first, suspended ones included

    @property
    def active(self) -> list[Signup]:
        return [signup for signup in self.members if not signup.suspended]

    @property
    def size(self) -> int:
        """Suspended accounts leave the count: they are dealt with."""
        return len(self.active)

    @property
    def pending(self) -> int:
        return sum(signup.pending for signup in self.members)

    @property
    def suspended(self) -> int:
        return sum(signup.suspended for signup in self.members)

    @property
    def shared_provider(self) -> bool:
        """An email domain no block may be proposed for, whatever the instance: a big provider's."""
        return self.kind == ClusterKind.EMAIL_DOMAIN and provider_refusal(self.value) is not None


# --- Pure: which email domains a block must never be proposed for --------------------------------


@dataclass(frozen=True)
class MailProvider:
    name: str
    domains: tuple[str, ...]  # of the addresses people have there
    mx: tuple[str, ...]  # its documented mail servers
    source: str


def _domain_name(raw: object) -> str:
    return str(raw).strip().lower().rstrip(".")


@functools.cache
def mail_providers() -> tuple[MailProvider, ...]:
    data = tomllib.loads(MAIL_PROVIDERS_FILE.read_text(encoding="utf-8"))
    return tuple(
        MailProvider(
            name=str(item["name"]),
            domains=tuple(_domain_name(domain) for domain in item.get("domains", [])),
            mx=tuple(_domain_name(host) for host in item.get("mx", [])),
            source=str(item["source"]),
        )
        for item in data["provider"]
    )


@functools.cache
def _protected() -> tuple[dict[str, tuple[str, bool]], dict[str, tuple[str, bool]]]:
    """(every provider domain and mail server, every proper parent domain of one): name -> (provider,
    whether it is about mail servers)."""
    names: dict[str, tuple[str, bool]] = {}
    parents: dict[str, tuple[str, bool]] = {}
    for provider in mail_providers():
        for mx, listed in ((False, provider.domains), (True, provider.mx)):
            for name in listed:
                names.setdefault(name, (provider.name, mx))
                labels = name.split(".")
                for start in range(1, len(labels)):
                    parents.setdefault(".".join(labels[start:]), (provider.name, mx))
    return names, parents


def provider_refusal(domain: str) -> str | None:
    """Why an email-domain block on `domain` must never be proposed, or None: it is a big provider's
    domain or mail server (mail_providers.toml), a subdomain or a parent domain of one, or a top-level
    domain. Mastodon matches a block against an address's domain, its MX hosts and all their parent
    domains, so any of these would refuse a provider's every address."""
    name = _domain_name(domain)
    if "." not in name:
        return "a top-level domain"
    names, parents = _protected()
    labels = name.split(".")
    relations = [  # (provider, about its mail servers, how `domain` relates to the name)
        (*names[suffix], "is" if start == 0 else "a subdomain of")
        for start in range(len(labels))
        if (suffix := ".".join(labels[start:])) in names
    ]
    if name in parents:
        relations.append((*parents[name], "a parent domain of"))
    if not relations:
        return None
    provider, mx, how = relations[0]
    if how == "is" and not mx:
        return f"a big mail provider ({provider})"
    mail_servers = next((provider for provider, mx, _how in relations if mx), None)
    if mail_servers is not None:
        return (
            f"it covers the mail servers of {mail_servers} (Mastodon matches a block against sign-ups' mail"
            " servers too: every address they serve would be refused)"
        )
    return f"{how} a big mail provider's ({provider})"


def _cluster_keys(signup: Signup) -> list[tuple[ClusterKind, str]]:
    keys = []
    if signup.email_domain:
        keys.append((ClusterKind.EMAIL_DOMAIN, signup.email_domain))
    if signup.network:
        keys.append((ClusterKind.NETWORK, signup.network))
    if (stem := name_stem(signup.username)) is not None:
        keys.append((ClusterKind.NAME_PATTERN, stem))
    if looks_generated(signup.username):
        keys.append((ClusterKind.GENERATED_NAMES, ""))
    if signup.invite:
        keys.append((ClusterKind.INVITE, signup.invite))
    if signup.app:
        keys.append((ClusterKind.APP, signup.app))
    return keys


def find_clusters(signups: list[Signup], min_size: int) -> list[Cluster]:
    """Groups of at least `min_size` active sign-ups sharing one trait, largest first."""
    groups: dict[tuple[ClusterKind, str], list[Signup]] = defaultdict(list)
    for signup in sorted(signups, key=lambda item: item.created_at, reverse=True):
        for key in _cluster_keys(signup):
            groups[key].append(signup)
    clusters = [Cluster(kind, value, tuple(members)) for (kind, value), members in groups.items()]
    found = [cluster for cluster in clusters if cluster.size >= min_size]
    return sorted(found, key=lambda cluster: (-cluster.size, cluster.kind, cluster.value))


# --- Redis glue -----------------------------------------------------------------------------------

RECORD_SIGNUP = Lua(__file__, "record_signup", include=[NAMED_ARGUMENTS, OLDEST_TO_FORGET_FUNCTION])
UPDATE_ACCOUNT_STATE = Lua(__file__, "update_account_state")
"""Keeps a remembered account's state current (used by the spam detector for its flagged accounts too)."""


def state_fields(account: AdminAccount) -> dict[str, str]:
    """The Admin::Account flags kept ("1"/"0"), those the payload tells."""
    return {name: "1" if value else "0" for name, value in account.flags.items()}


def record_signup(ctx: Context, account: AdminAccount) -> tuple[str, float, SignupStats, SurgeState | None] | None:
    """Count one local sign-up; None for something that is not one (a remote account)."""
    if account.created_at is None:
        raise Rejected("sign-up without created_at")
    if account.domain:
        return None  # account.created fires for local sign-ups only; anything else is not one
    account_id, created = account.id, account.created_at
    cfg = ctx.settings.signup_surge
    fields = {
        "username": account.username,
        "created_at": repr(created),
        "email_domain": account.email_domain,
        "network": account.network,
        "invite": account.invite,
        "app": account.app,
        **state_fields(account),
    }
    count, oldest, base, observed, state_raw = RECORD_SIGNUP.call(
        ctx.redis,
        keys={
            "signups": SIGNUPS,
            "hours": HOURS,
            "first_seen": FIRST_SEEN,
            "signup": SIGNUP_PREFIX + account_id,
            "surge": SURGES.key(BUCKET),
        },
        args={
            "account_id": account_id,
            "time": repr(created),
            "window": cfg.window_hours * HOUR,
            "baseline": cfg.baseline_days * DAY,
            "min_signups": cfg.min_signups,
            "fields": [item for pair in fields.items() for item in pair],
            "keep_seconds": int(KEEP_SECONDS),
            "keep_cap": KEEP_CAP,
            "signup_prefix": SIGNUP_PREFIX,
            "prune_batch": PRUNE_BATCH,
        },
    )
    stats = SignupStats(
        count=int(count),
        first_in_window=float(oldest) if oldest else None,
        baseline=int(base),
        observed_for=float(observed),
    )
    return account_id, created, stats, SurgeState.from_redis(state_raw)


def handle_signup(ctx: Context, event: dict[str, Any]) -> None:
    """account.created."""
    recorded = record_signup(ctx, AdminAccount.from_event(event))
    if recorded is None:
        return
    account_id, created, stats, state = recorded
    cfg = ctx.settings.signup_surge
    decision = assess(stats, state, cfg, created)
    rate = hourly_rate(stats, cfg, created)
    alert = SURGES.advance(
        ctx.redis, BUCKET, decision, account_id, created, stats.count, rate, state, cfg.escalation_cooldown_minutes
    )
    if alert is not None:
        rule = surge_rule(cfg)
        alert = replace(
            alert,
            expected=round(rule.expected_in_window(stats.baseline, stats.observed_for), 2),
            baseline=stats.baseline,
            baseline_days=round(rule.baseline_span(stats.observed_for) / DAY, 1),
        )
        SURGES.enqueue_alert(ctx, alert)
    if state is not None and is_surge(stats, cfg):
        SURGES.touch(ctx.redis, BUCKET, created)  # still at surge level: not "back to normal" yet


def account_state(event: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """account.approved / account.updated: the account's id and the state flags the event tells."""
    account = AdminAccount.from_event(event)
    return account.id, state_fields(account)


def handle_account_update(ctx: Context, event: dict[str, Any]) -> None:
    """account.approved and account.updated: keep a remembered sign-up's state current."""
    account_id, fields = account_state(event)
    if fields:
        UPDATE_ACCOUNT_STATE(
            ctx.redis, [SIGNUP_PREFIX + account_id], [item for pair in fields.items() for item in pair]
        )


def remembered_signups(connection: redis.Redis, account_ids: list[str]) -> dict[str, Signup]:
    """The sign-ups still remembered among these accounts (the spam detector's shared sign-up paths)."""
    pipe = connection.pipeline()
    for account_id in account_ids:
        pipe.hgetall(SIGNUP_PREFIX + account_id)
    rows = pipe.execute()
    return {
        account_id: Signup.from_redis(account_id, row) for account_id, row in zip(account_ids, rows, strict=True) if row
    }


def signup_history(ctx: Context, since: float) -> Iterator[dict[str, Any]]:
    """The local sign-ups since `since`, read from the admin API, as `account.created` webhook events of
    what the handler reads (`slim_account`; not reduced yet): what `tocsin backfill` records and
    `tocsin replay` replays. Newest first."""
    client = ctx.mastodon.client
    if client is None:
        raise RuntimeError("reading sign-ups needs TOCSIN_MASTODON_URL")
    for page in pages_by_max_id(client.admin_accounts_v2, origin="local", limit=ACCOUNTS_PAGE):
        for item in page:
            account = as_webhook_json(item)
            created = parse_time(account.get("created_at"))
            if created is None or created < since:
                return
            yield {"event": "account.created", "created_at": account["created_at"], "object": slim_account(account)}


def backfill_signups(ctx: Context, days: float) -> int:
    """Record the last `days` of local sign-ups from the admin API, without alerting (a baseline)."""
    key = pii_key(ctx.redis)
    recorded = 0
    for event in signup_history(ctx, time.time() - days * DAY):
        if record_signup(ctx, AdminAccount.parse(reduce_admin_account(event["object"], key))) is not None:
            recorded += 1
    return recorded


# --- Which email domain a proposal may block (reads the admin API) -------------------------------


def established_members(ctx: Context, domain: str, before: float) -> int | None:
    """Local accounts made before `before`, confirmed and not suspended, with an address at `domain` or
    under it (a block on a domain refuses its subdomains too), counted up to ESTABLISHED_MIN; None when
    the admin API cannot tell (no token, an error, Tocsin's share of the rate limit spent, or more pages
    than ESTABLISHED_PAGES). Read now, not kept: Tocsin remembers sign-ups for a week, members joined
    years ago. The addresses are reduced to their domain as they are read, as at intake."""
    client = ctx.mastodon.client
    if client is None or not ctx.mastodon.can_read_admin:
        return None
    found = 0
    pages = pages_by_max_id(
        client.admin_accounts_v2,
        before_id=snowflake_at(before),  # skips the surge's own accounts
        origin="local",
        status="active",
        email=f"%{domain}",  # ILIKE '%domain%': the exact domain is picked below
        limit=ACCOUNTS_PAGE,
    )
    try:
        for number, page in enumerate(pages, start=1):
            for item in page:
                account = as_webhook_json(dict(item))
                at = email_domain(account.get("email")) or ""
                created = parse_time(account.get("created_at"))
                if (
                    (at == domain or at.endswith("." + domain))
                    and account.get("confirmed")
                    and not account.get("suspended")
                    and created is not None
                    and created < before
                ):
                    found += 1
            if found >= ESTABLISHED_MIN:
                return found
            if number == ESTABLISHED_PAGES:
                return None  # more may follow: not known
    except MastodonError as error:  # BudgetExhausted among them: an alert does not wait for the budget
        log.warning("established members of an email domain not counted: %s", type(error).__name__)
        return None
    return found


def email_block_refusals(ctx: Context, domains: Iterable[str], before: float) -> dict[str, str]:
    """Why each of these email domains (a DM's clusters, largest first) will not be proposed for a block:
    a big provider's (every one), or established members use it (asked of Mastodon for the candidates in
    order, until the first that may be blocked: a DM proposes one email block)."""
    candidates = list(dict.fromkeys(domains))
    refused = {domain: reason for domain in candidates if (reason := provider_refusal(domain)) is not None}
    for domain in candidates:
        if domain in refused:
            continue
        members = established_members(ctx, domain, before)
        if members is None:
            refused[domain] = "Tocsin could not count the established members using it (admin API)"
        elif members >= ESTABLISHED_MIN:
            refused[domain] = f"{members}+ established members (confirmed, joined before this) use it"
        else:
            break
    return refused


def static_refusals(domains: Iterable[str]) -> dict[str, str]:
    """The refusals that need no API: big providers only (renderings from fixtures)."""
    return {domain: reason for domain in domains if (reason := provider_refusal(domain)) is not None}


# --- Alert job: read the window, find clusters, render, post -------------------------------------


def window_signups(ctx: Context, at: float) -> tuple[int, list[Signup]]:
    """How many sign-ups the window holds, and the newest of them as remembered now (approved or
    suspended since, as it happens)."""
    window = ctx.settings.signup_surge.window_hours * HOUR
    total = int(ctx.redis.zcount(SIGNUPS, f"({at - window}", at))
    ids = [raw.decode() for raw in ctx.redis.zrevrangebyscore(SIGNUPS, at, f"({at - window}", 0, DETAIL_SCAN_CAP)]
    pipe = ctx.redis.pipeline()
    for account_id in ids:
        pipe.hgetall(SIGNUP_PREFIX + account_id)
    rows = pipe.execute()
    return total, [Signup.from_redis(account_id, raw) for account_id, raw in zip(ids, rows, strict=True) if raw]


def admin_links(instance_url: str) -> dict[str, str]:
    return {
        "account": f"{instance_url}/admin/accounts/",
        "pending": accounts_url(instance_url, pending=True),
        "registrations": f"{instance_url}/admin/settings/registrations",
        "email_block": f"{instance_url}/admin/email_domain_blocks/new",
        "ip_block": f"{instance_url}/admin/ip_blocks/new",
        "invites": f"{instance_url}/admin/invites",
    }


def render_alert(
    alert: Alert,
    total: int,
    signups: list[Signup],
    cfg: SignupSurgeSettings,
    instance_url: str,
    template_dir: Any = None,
    refused: Mapping[str, str] | None = None,
    compact: bool = False,
) -> str:
    """The DM text for one alert: pure, so tests render it from fixtures. `refused`: email domains not to
    propose blocking, and why (email_block_refusals; without it, the big providers). `compact`: fewer
    clusters (the rendering sent when the full one would take more than two statuses)."""
    clusters = find_clusters(signups, cfg.cluster_min)
    if refused is None:
        refused = static_refusals(email_domains(clusters))
    proposal = propose(alert, clusters, refused)
    return render_text(
        template_dir,
        "signup_quiet.txt.j2" if alert.kind == "quiet" else "signup_surge.txt.j2",
        alert=alert,
        count=total,
        pending=sum(signup.pending for signup in signups),
        suspended=sum(signup.suspended for signup in signups),
        able_to_post=sum(signup.able_to_post for signup in signups),
        clusters=clusters[: COMPACT_CLUSTERS if compact else SHOWN_CLUSTERS],
        largest=clusters[0] if clusters else None,
        cfg=cfg,
        links=admin_links(instance_url),
        accounts_url=lambda cluster: (
            accounts_url(instance_url, cluster.kind, cluster.value) if filters_by(cluster.kind) else None
        ),
        hours=lambda seconds: round(seconds / HOUR, 1),
        proposal=proposal or Proposal(),
        refused=refused,
    )


def email_domains(clusters: Iterable[Cluster]) -> list[str]:
    return [cluster.value for cluster in clusters if cluster.kind == ClusterKind.EMAIL_DOMAIN]


def propose(alert: Alert, clusters: list[Cluster], refused: Mapping[str, str]) -> Proposal | None:
    """What `approve` does for a sign-up surge: block the email domain most of the wave shares (never a
    big provider's, nor one established members use: `refused`), and reject that cluster's pending
    sign-ups (or the largest cluster's)."""
    if alert.kind == "quiet" or not clusters:
        return None
    by_email = next(  # among the clusters shown, those email_block_refusals looked at
        (
            cluster
            for cluster in clusters[:SHOWN_CLUSTERS]
            if cluster.kind == ClusterKind.EMAIL_DOMAIN and cluster.value not in refused and not cluster.shared_provider
        ),
        None,
    )
    target = by_email or clusters[0]
    items = []
    if by_email is not None:
        block = Action("email_domain_block", by_email.value, f"block sign-ups from {by_email.value}")
        items.append(ProposalItem(f"block sign-ups with email addresses at {by_email.value}", (block,)))
    pending = [signup for signup in target.members if signup.pending]
    if pending:
        rejections = tuple(
            Action("reject_account", signup.id, f"reject {signup.username} (#{signup.id})") for signup in pending
        )
        items.append(ProposalItem(f"reject the {len(pending)} pending sign-ups of that cluster", rejections))
    return Proposal(items=tuple(items)) if items else None


def compose_alert(ctx: Context, alert: Alert) -> Message:
    """The alert job's DM: gather what it needs now (it may read Mastodon), render it."""
    cfg = ctx.settings.signup_surge
    total, signups = window_signups(ctx, alert.at)
    clusters = find_clusters(signups, cfg.cluster_min)
    refused: Mapping[str, str] = {}
    if alert.kind != "quiet":
        before = alert.at - cfg.window_hours * HOUR - ESTABLISHED_BEFORE
        refused = email_block_refusals(ctx, email_domains(clusters[:SHOWN_CLUSTERS]), before)
    texts = [
        render_alert(alert, total, signups, cfg, ctx.settings.instance_url, ctx.settings.template_dir, refused, compact)
        for compact in (False, True)
    ]
    return Message(texts[0], propose(alert, clusters, refused), shorter=(texts[1],))
