"""Tocsin's share of Mastodon's API rate limit, shared by every process through Redis.

Mastodon limits API calls per account (300 per 5 minutes by default; fixed windows) and reports the
state on every answer: X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset (the window's end).
Moderators use the same instance while Tocsin scans, and other tools may share the account, so Tocsin
paces its admin calls to a share of the limit (TOCSIN_API_BUDGET, half by default): once that share of
the window is spent, a paced call is not made but raises BudgetExhausted with the seconds until the
reset. A job then reschedules itself for the reset (the scan) or RQ retries it; `tocsin scan` waits.
Posts are not paced (an alert must go out) but their answers update the count like any other.
"""

from __future__ import annotations

import time

import redis
from mastodon import MastodonRatelimitError

from bot.core import redis_text
from bot.core.scripting import Lua

BUDGET_KEY = "tocsin:api-budget"  # hash: limit, remaining, reset — as Mastodon last said
UNKNOWN_RESET_WAIT = 60.0
"""A 429 without a usable reset time: seconds to wait before trying again."""
BULK_SHARE = 0.8
"""Of Tocsin's share, what bulk work (a scan's follows, a backfill's pages) may spend: the rest of each
window stays for the routine calls (the domain-block poll every minute, the staff list, alerts' sizing),
so a scan never holds up the announcement of a moderator's block."""

RESERVE = Lua(__file__, "api_budget_reserve")
RECORD = Lua(__file__, "api_budget_record")


class BudgetExhausted(MastodonRatelimitError):
    """Tocsin's share of the window is spent (or Mastodon answered 429): try again after `wait` seconds.
    A MastodonRatelimitError, so jobs treat it as transient."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"Mastodon API budget spent for this window; it resets in {wait:.0f} s")
        self.wait = wait


class ApiBudget:
    def __init__(self, connection: redis.Redis, share: float) -> None:
        self.redis = connection
        self.share = share

    def reserve(self, bulk: bool = False) -> None:
        """Count one paced call, or raise BudgetExhausted."""
        share = self.share * BULK_SHARE if bulk else self.share
        wait = float(RESERVE(self.redis, [BUDGET_KEY], [repr(time.time()), repr(share)]))
        if wait > 0:
            raise BudgetExhausted(wait)

    def record(self, limit: int, remaining: int, reset: float) -> None:
        RECORD(self.redis, [BUDGET_KEY], [limit, remaining, repr(reset), repr(time.time())])

    def state(self) -> dict[str, float]:
        """limit, remaining, reset as last recorded (empty when nothing is known); for `tocsin doctor`."""
        raw = self.redis.hgetall(BUDGET_KEY)
        return {key: float(value) for key, value in redis_text.text_map(raw).items()}
