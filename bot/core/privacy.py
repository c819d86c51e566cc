"""Personal data: reduce it at intake, neutralize user text before it is quoted in a post.

Webhook payloads carry emails, sign-up and login IPs and invite-request text. A detector needs at most
an email's domain and a stable pseudonym for an IP's network, so intake keeps exactly that.
"""

from __future__ import annotations

import hmac
import re
import secrets
import socket
from typing import Any

import redis

from bot.core import defaults

IPV4_PREFIX = 24
IPV6_PREFIX = 48
"""Networks, not hosts: sign-up surges come from ranges, and a /24 or /48 names no person."""

_DROPPED_ACCOUNT_FIELDS = ("email", "ip", "ips", "invite_request")


def pii_key(connection: redis.Redis) -> bytes:
    """The shared key for IP-prefix hashes (created by the first process that needs it)."""
    connection.set(defaults.PII_KEY, secrets.token_hex(32), nx=True)
    return bytes(connection.get(defaults.PII_KEY))  # type: ignore[arg-type]


def ip_prefix_hash(ip: str, key: bytes) -> str | None:
    """Keyed hash of the IP's /24 (IPv4) or /48 (IPv6); None for something that is not an IP."""
    network = _network_bytes(ip.strip())
    if network is None:
        return None
    return hmac.digest(key, network, "sha256").hex()[:16]


def _network_bytes(ip: str) -> bytes | None:
    # inet_pton is strict (no leading zeros, no scope ids) and ~10x cheaper than `ipaddress` on this path.
    try:
        return b"4" + socket.inet_pton(socket.AF_INET, ip)[: IPV4_PREFIX // 8]
    except (OSError, ValueError):  # ValueError: NUL bytes, lone surrogates
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, ip)
    except (OSError, ValueError):
        return None
    if packed[:12] == _IPV4_MAPPED:
        return b"4" + packed[12 : 12 + IPV4_PREFIX // 8]
    return b"6" + packed[: IPV6_PREFIX // 8]


_IPV4_MAPPED = bytes(10) + b"\xff\xff"


def email_domain(email: object) -> str | None:
    if not isinstance(email, str) or "@" not in email:
        return None
    return email.rsplit("@", 1)[1].strip().lower() or None


def reduce_admin_account(account: dict[str, Any], key: bytes) -> dict[str, Any]:
    """An Admin::Account without email, IPs or invite text, plus what detectors may use of them."""
    reduced = dict(account)
    for name in _DROPPED_ACCOUNT_FIELDS:
        reduced.pop(name, None)
    if account.get("email") is not None:
        reduced["email_domain"] = email_domain(account["email"])
    ip = account.get("ip")
    if isinstance(ip, str):
        reduced["ip_prefix_hash"] = ip_prefix_hash(ip, key)
    return reduced


_ADMIN_ACCOUNT_FIELDS_IN_REPORT = ("account", "target_account", "assigned_account", "action_taken_by_account")


def reduce_event(event: dict[str, Any], key: bytes) -> dict[str, Any]:
    """The webhook envelope with personal data removed from its object."""
    name = event.get("event")
    obj = event.get("object")
    if not isinstance(obj, dict):
        return event
    if isinstance(name, str) and name.startswith("account."):
        obj = reduce_admin_account(obj, key)
    elif isinstance(name, str) and name.startswith("report."):
        obj = dict(obj)
        for field in _ADMIN_ACCOUNT_FIELDS_IN_REPORT:
            if isinstance(obj.get(field), dict):
                obj[field] = reduce_admin_account(obj[field], key)
    return {**event, "object": obj}


ZERO_WIDTH_SPACE = "\u200b"
# Mastodon's Account::MENTION_RE (app/models/account.rb) reads a mention at an "@" followed by
# [a-z0-9_] and preceded by anything but "=", "/" or a Ruby [[:word:]] character (letters, marks,
# decimal digits, connector punctuation: not Python's \w, which also takes "½", "²", "Ⅻ" and misses
# marks). Guessing that class is a hole, so every "@" is broken: a zero-width space after it leaves
# no [a-z0-9_] there, whatever precedes it.
_AT = re.compile("@(?!" + ZERO_WIDTH_SPACE + ")")
# Mastodon links http(s), dat, dweb, ipfs, ipns, ssb, gopher and gemini URLs only with their "://",
# and xmpp: and magnet: URIs (config/initializers/twitter_regex.rb), whatever precedes them.
_LINK = re.compile(r"(://)|(xmpp|magnet)(:)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


RECIPIENT = re.compile(
    r"[a-z0-9_]+(?:[.-]+[a-z0-9_]+)*(?:@[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)?", re.IGNORECASE | re.ASCII
)
"""An acct a post may be addressed to: Mastodon's USERNAME_RE, then an ASCII domain."""


def unmention(text: str) -> str:
    """`text` with no "@" that Mastodon could read as the start of a mention (it still reads the same)."""
    return _AT.sub("@" + ZERO_WIDTH_SPACE, text)


def _unlink(match: re.Match[str]) -> str:
    return "[:]//" if match.group(1) else f"{match.group(2)}[:]"


def neutralize(text: object, limit: int = 280) -> str:
    """User-supplied text made safe to quote in a status: it mentions no one and links nowhere.

    A direct message is delivered to every account it mentions, so an unescaped `@victim@example.org`
    in a quoted report comment would send the moderators' DM to the victim. (The outbox breaks every
    "@" of a post's body too, bot/mastodon/outbox.py: this is the first of two locks.)
    """
    if text is None:
        return ""
    clean = " ".join(_CONTROL.sub(" ", str(text)).split())
    if len(clean) > limit:
        clean = clean[: limit - 1].rstrip() + "…"
    return unmention(_LINK.sub(_unlink, clean))
