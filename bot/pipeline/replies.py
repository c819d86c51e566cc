"""What a family's DM reply command is: the contract between the command channel (bot/dm/commands/)
and the families that bring their own verbs (`Family.replies`). It sits in the pipeline layer so that a
family, and the registry that collects the families, need nothing of the channel's machinery."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.mastodon.actions import can
from bot.mastodon.context import Context


@dataclass(frozen=True)
class Moderator:
    account_id: str
    handle: str  # local username
    permissions: int

    def can(self, flag: str) -> bool:
        return can(self.permissions, flag)


@dataclass(frozen=True)
class Request:
    command_id: str  # the id of the status that carried the command
    moderator: Moderator
    verb: str
    args: str
    subject: str | None  # what the thread it was written in is about (Post.subject), if anything
    text: str  # the command as written
    confirmed: bool = False  # a `yes` answered it
    replying_to: str | None = None  # the status the command replies to


@dataclass(frozen=True)
class Outcome:
    kind: str  # done | refused | asked (for a `yes`) | help
    text: str
    api: str = ""
    undo: tuple[dict[str, Any], ...] = ()
    everyone: bool = False
    """The reply goes to every moderator (something changed), not only to the one who asked."""
    command: str = ""
    """The command carried out, when not the one written (a `yes` carries out the one it answers)."""


def refused(text: str) -> Outcome:
    return Outcome("refused", f"Not done: {text}")


@dataclass(frozen=True)
class ReplyCommand:
    verb: str  # one or two words, lower case
    usage: str  # as the help shows it ("" for none)
    run: Callable[[Context, Request], Outcome]
    subject: str | None = None
    """Only in a thread whose subject starts with this ("announce:"); None: anywhere."""
    thread: str = ""
    """How the help names such a thread ("a DM about a held announcement"), for a command with a subject."""
    changes: bool = True
    """It changes something: the sender's role is asked of Mastodon now, not taken from the cache, and
    the command's status is read again before acting (deleted or edited since: not carried out)."""
    permission: str | None = None
    """The role permission Mastodon requires for what this command does (bot.mastodon.actions.ROLE_FLAGS);
    None: any staff role, or the command checks its own targets' (approve, undo, dismiss, limit …)."""
