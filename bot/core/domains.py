"""One spelling of a server's domain name, whoever wrote it: a moderator in a DM command or the CLI, an
operator in TOCSIN_WATCH_DOMAINS, Mastodon in its peer list or its domain blocks.

The spelling is the one Mastodon stores and browsers resolve: lower case, no trailing dot, no port or
path, internationalized names in their ASCII form by UTS 46 (non-transitional, as browsers: `ß` stays
a letter of its own, `straße` is not `strasse`), every full stop a dot (the ideographic `。`, the
fullwidth `．` and the halfwidth `｡` too: `social.example。` is the instance, not another name).
Anything else raises NotADomain; a caller that can go on without the name catches it.
"""

from __future__ import annotations

import re

import idna

FULL_STOPS = str.maketrans(dict.fromkeys("\u3002\uff0e\uff61", "."))
"""The full stops UTS 46 maps to a dot (IDNA's label separators), mapped before the name is split."""

_ASCII_NAME = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)+")
"""What is left after UTS 46 of a server's name: two labels or more, letters, digits and hyphens."""


class NotADomain(ValueError):
    """Text that names no server's domain (junk, a single label, a bad IDN, too long)."""

    def __init__(self, raw: str, why: str = "is not a server's domain") -> None:
        super().__init__(f"{raw[:80]!r} {why}")
        self.raw = raw


class NamesAnAccount(NotADomain):
    """Text that names an account (`user@host`, a profile or post URL), not a server alone."""

    def __init__(self, raw: str) -> None:
        super().__init__(raw, "names an account, not a server")


def normalized_domain(raw: str) -> str:
    """The domain `raw` names (a bare name, any case, a URL of the server, with a port, an IDN), in the
    one spelling above; NamesAnAccount for an account's handle or URL, NotADomain for anything else."""
    text = raw.strip().translate(FULL_STOPS)
    host, _, path = text.split("://", 1)[-1].partition("/")
    if "@" in host or "@" in path or path.lower().startswith("users/"):
        raise NamesAnAccount(raw)
    host = re.sub(r":\d+$", "", host)  # a port
    try:  # UTS 46 maps upper case itself (and not always as str.lower: a final sigma, say)
        ascii_name = idna.encode(host, uts46=True).decode("ascii").rstrip(".")
    except (idna.IDNAError, UnicodeError):
        raise NotADomain(raw) from None
    if not _ASCII_NAME.fullmatch(ascii_name):
        raise NotADomain(raw)
    return ascii_name
