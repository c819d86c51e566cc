"""What the sign-up and spam-wave families share about young accounts: the sign-ups remembered for a
week (written by the sign-up family, read by the spam family to show a wave's sign-up paths), keeping a
remembered account's state current, the sign-up paths a group of accounts shares (clusters), and which
email domain a proposal may block. The two families share state and code only through this module.

Only what intake kept reaches this module: an email's domain and a keyed hash of the IP's network.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import tomllib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import redis
from mastodon import MastodonError

from bot.core.privacy import email_domain
from bot.core.scripting import Lua
from bot.mastodon.client import as_webhook_json, pages_by_max_id, snowflake_at
from bot.mastodon.context import Context
from bot.pipeline.events import parse_time
from handlers.shared.payloads import AdminAccount

log = logging.getLogger(__name__)

SIGNUP_PREFIX = "tocsin:signup:"  # + account id: hash of what the sign-up detector keeps of a sign-up
ACCOUNTS_PAGE = 200
"""Accounts asked for per request (backfill, established members): GET /api/v2/admin/accounts allows up
to 200."""
MAIL_PROVIDERS_FILE = Path(__file__).with_name("mail_providers.toml")
"""Big mail providers, their address domains and their documented mail servers (the file says why and
where from): a cluster there is worth seeing, but blocking it would shut out ordinary people, so no DM
proposes it."""
ESTABLISHED_MIN = 3
"""An email domain at least this many established members signed up with (confirmed, not suspended,
made before the wave: the caller's `before`) is where people come from (a school, a company, a small
provider), not a throwaway spam domain: blocking it would refuse their peers, so it is not proposed. A
spammer's own domain has none; a few sleeper accounts stay under this, and the DM shows the cluster
either way."""
ESTABLISHED_PAGES = 2
"""Pages of older accounts read to count a domain's established members (GET /api/v2/admin/accounts
with Mastodon's own "same email domain" filter, `email=%domain`): two requests at most per alert and
domain; found no answer within them, the block is not proposed."""


# --- The remembered sign-ups and their state -----------------------------------------------------

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


def remembered_signups(connection: redis.Redis, account_ids: list[str]) -> dict[str, Signup]:
    """The sign-ups still remembered among these accounts (the spam detector's shared sign-up paths)."""
    pipe = connection.pipeline()
    for account_id in account_ids:
        pipe.hgetall(SIGNUP_PREFIX + account_id)
    rows = pipe.execute()
    return {
        account_id: Signup.from_redis(account_id, row) for account_id, row in zip(account_ids, rows, strict=True) if row
    }


UPDATE_ACCOUNT_STATE = Lua(__file__, "update_account_state")


def state_fields(account: AdminAccount) -> dict[str, str]:
    """The Admin::Account flags kept ("1"/"0"), those the payload tells."""
    return {name: "1" if value else "0" for name, value in account.flags.items()}


def update_account_state(connection: redis.Redis, key_prefix: str, event: dict[str, Any]) -> None:
    """account.approved / account.updated: keep the state flags the event tells current in the account's
    hash under `key_prefix`, if it is remembered there (a sign-up, a flagged account)."""
    account = AdminAccount.from_event(event)
    fields = state_fields(account)
    if fields:
        UPDATE_ACCOUNT_STATE(connection, [key_prefix + account.id], [item for pair in fields.items() for item in pair])


# --- Pure: the sign-up paths a group of accounts shares ------------------------------------------


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


def email_domains(clusters: Iterable[Cluster]) -> list[str]:
    return [cluster.value for cluster in clusters if cluster.kind == ClusterKind.EMAIL_DOMAIN]


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
