"""The words of a command: the verb (and a near miss), item numbers, a server's domain. Pure."""

from __future__ import annotations

import difflib
import re

from bot.core.domains import NamesAnAccount, NotADomain, normalized_domain
from bot.core.privacy import neutralize
from bot.mastodon.actions import Refused


def parse(text: str, verbs: list[str]) -> tuple[str, str]:
    """(verb, the rest): the longest known verb the text starts with (`announce now`), else its first word."""
    words = text.split()
    lowered = [word.lower().strip(".,!:") for word in words]
    for size in (2, 1):
        verb = " ".join(lowered[:size])
        if len(lowered) >= size and verb in verbs:
            return verb, " ".join(words[size:])
    return (lowered[0] if lowered else ""), " ".join(words[1:])


def near_miss(verb: str, verbs: list[str]) -> str | None:
    found = difflib.get_close_matches(verb, verbs, n=1, cutoff=0.7)
    return found[0] if found else None


MAX_ITEM_DIGITS = 4
"""An item number longer than this is no item number (a proposal lists a few items, never 10,000)."""


def item_numbers(args: str, count: int) -> list[int]:
    """`approve 1,3` / `1 3` / `2-4`; nothing: the first item only (BARE_APPROVE). Raises Refused, naming
    the problem, for anything else: a word, a number the list does not have, a backward range — never read
    as "all"."""
    numbers: set[int] = set()
    for part in re.split(r"[,\s]+", args.strip()):
        if not part:
            continue
        low, dash, high = part.partition("-")
        if not _is_number(low) or (dash and not _is_number(high)):
            raise Refused(f"“{neutralize(part, 20)}” is not an item number; write e.g. approve 1,3")
        first, last = int(low), int(high if dash else low)
        if first > last:
            raise Refused(f"“{part}” counts backwards; write e.g. approve {last}-{first}")
        if first < 1 or last > count:
            raise Refused(f"the proposal has items 1 to {count}")
        numbers.update(range(first, last + 1))  # at most `count` numbers: checked above
    if not numbers and args.strip():
        raise Refused("write the item numbers, e.g. approve 1,3 (approve alone is item 1)")
    return sorted(numbers) or [1]


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= MAX_ITEM_DIGITS


def server_domain(raw: str) -> str:
    """A server's domain as a moderator may write it (bot/core/domains.py: upper case, a URL of the server,
    IDN); Refused if it is none — or if it names an account (`user@host`, a profile or post URL): acting
    on a whole server takes its domain written alone."""
    try:
        return normalized_domain(raw)
    except NamesAnAccount:
        raise Refused(
            f"“{neutralize(raw, 80)}” names an account; to act on its server, write the domain alone"
        ) from None
    except NotADomain:
        raise Refused(f"“{neutralize(raw, 80)}” is not a server's domain") from None


BARE_APPROVE = "item 1"
"""What `approve` alone carries out, in every DM: the first item only, never all. A proposal lists its
least-reaching item first (a report surge: limit the server before suspending its accounts; a local wave:
silence before suspend), and its items are often alternatives, not a package: a moderator who wants more
names them (`approve 1,2`), and two moderators answering `approve` to the same DM do the same one thing.
The answer names what else the DM offers."""
