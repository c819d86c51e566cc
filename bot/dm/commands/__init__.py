"""Moderators act from the DM: a reply to Tocsin is read as a command, carried out, answered once, audited.

bot/dm/mentions.py reads the bot's mention notifications and queues one `handle_mention` job per status.
The job (job.py) decides, in this order:

1. Whose words are these? Only a local account's own `direct` status counts: a boost, a remote account
   with the same username, a public mention, the quoted part of a reply are not a command.
   Anything else is counted (IGNORED) and never answered: the bot must not become an amplifier.
2. Is the sender staff *now*? Asked of the admin API at the time of the command (a read-only command may
   use a role read within the last minute). A non-moderator gets no answer; someone Tocsin writes to
   (TOCSIN_MODERATORS) who lost the role is told why nothing happens.
3. What is the command? The first line of the moderator's own text; a near miss gets "did you mean",
   anything else the help. In a thread, `approve`/`dismiss` act on that DM's proposal (bot/mastodon/actions.py)
   and the families' commands on their subjects (the incidents family's `cancel` on a held announcement).
4. Exactly one reply in the thread (keyed by the command's status id, sent even while paused), one
   audit entry (bot/core/audit.py), and the bookkeeping for `undo` and `yes`.

The outcome is stored before the reply: a job retried after a crash answers what it did the first time.

The package, one concept a module: keys.py (what is kept in Redis), reading.py (the moderator's own
words), grammar.py (verbs, item numbers, domains), permissions.py (the role now), verbs.py (the commands
every instance has, and finding one), job.py (the idempotent job).
"""
