"""What the command channel keeps in Redis, and for how long."""

from __future__ import annotations

IGNORED = "tocsin:stats:commands-ignored"
"""Hash: why a mention was not a command (not staff, not direct, remote, boost) -> count. Nothing else
about those mentions is kept."""


HANDLED_PREFIX = "tocsin:commands:handled:"  # + status id: this command is done (its job is a no-op)


OUTCOME_PREFIX = "tocsin:commands:outcome:"  # + status id: what the command did (JSON), before replying


ROLE_PREFIX = "tocsin:commands:role:"  # + account id: permissions bitmask, or "-" (not local staff)


LAST_PREFIX = "tocsin:commands:last:"  # + account id: the moderator's last undoable action (JSON)


CONFIRM_PREFIX = "tocsin:commands:confirm:"  # + question status id: the command waiting for its `yes` (JSON)


ASKED_PREFIX = "tocsin:commands:asked:"  # + account id: sorted set, question status id -> when it lapses


ACTED_BY_PREFIX = "tocsin:commands:acted-by:"  # + target: who last acted on it through Tocsin (undo window)


KEEP_SECONDS = 30 * 86400


NOT_STAFF = b"-"
