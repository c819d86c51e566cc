"""Constants and Redis key names, each with the reason for its value.

All Tocsin keys start with `tocsin:` so one Redis can be shared with RQ (whose keys start `rq:`).
"""

from __future__ import annotations

SIGNATURE_PREFIX = "sha256="
"""Mastodon signs with `X-Hub-Signature: sha256=<lowercase hex HMAC-SHA256(secret, raw body)>`."""

# --- Queues (RQ), by urgency. Workers listen to them in this order.
QUEUE_URGENT = "tocsin-urgent"
"""Alerts to moderators: a DM minutes late is a DM too late."""
QUEUE_EVENTS = "tocsin-events"
"""Drain jobs that run webhook events through the detectors."""
QUEUE_BACKGROUND = "tocsin-background"
"""Backfill and periodic sweeps: may wait behind everything else."""
QUEUES = (QUEUE_URGENT, QUEUE_EVENTS, QUEUE_BACKGROUND)

# --- Event stream written by intake and read by drain jobs.
EVENT_STREAM = "tocsin:events"
EVENT_GROUP = "detectors"
DRAIN_FLAG = "tocsin:events:drain-scheduled"
"""Set while a drain job is queued or running, so intake enqueues one job per burst, not per event."""
DRAIN_FLAG_TTL = 15
"""A running drain refreshes the flag after every batch (well under a second). If the job dies, the flag
lapses soon and the next event, a restarted worker or the sweep starts a new drain; an extra drain is
harmless (the consumer group splits the entries)."""
DRAIN_BATCH = 200
"""Events read per XREADGROUP. Large enough to amortize RQ's ~20 Redis round trips per job."""
DRAIN_MAX_SECONDS = 20.0
"""A drain job hands over to a fresh job after this long, so no job nears RQ's job timeout."""
CLAIM_IDLE_MS = 60_000
"""Entries delivered to a consumer that has not acknowledged them for this long are reclaimed
(the worker died mid-batch)."""
FAILED_EVENTS = "tocsin:events:failed"
"""Events whose handler raised a non-transient error, kept for `tocsin doctor` / `tocsin failed --requeue`."""
FAILED_EVENTS_CAP = 1000

DEDUPE_PREFIX = "tocsin:seen:"
"""`tocsin:seen:<sha256 of body>`: Mastodon resends identical bytes on retry and has no delivery id."""
PII_KEY = "tocsin:secret:pii-key"
"""Random key for hashing IP prefixes; in Redis so every web process hashes alike."""
IGNORED_EVENTS = "tocsin:stats:ignored-events"
"""Hash: unknown event name -> count."""
INTAKE_COUNTS = "tocsin:stats:intake"
"""Hash: event name -> accepted deliveries."""
REJECTED_EVENTS = "tocsin:stats:rejected"
"""Hash: event name -> events a handler rejected as unusable (bot.pipeline.families.Rejected)."""
WATERMARK = "tocsin:clock:watermark"
"""Latest event time seen (epoch seconds): the detectors' clock, so replays behave like live runs."""

# --- Outbox.
OUTBOX_SENT_PREFIX = "tocsin:outbox:sent:"
"""Hash per logical message: part number -> status id. Checked before posting each part."""
OUTBOX_SENT_TTL = 90 * 24 * 3600
"""Far beyond any retry: a message key is never posted twice."""
OUTBOX_LOG = "tocsin:outbox:log"
"""Newest-first list of everything posted (or recorded, in dry-run), for `tocsin outbox` and /outbox."""
OUTBOX_LOG_CAP = 2000
THREAD_PREFIX = "tocsin:thread:"
"""+ a status id Tocsin posted: what its thread is about (Post.subject), so a reply to it is understood."""
THREAD_TTL = 30 * 86400
"""A month, like a proposal: a reply to an older DM is read as a command without a thread."""
PAUSED = "tocsin:paused"
"""Panic stop: while set, the outbox holds posts instead of sending them (`tocsin pause` / `tocsin resume`)."""
OUTBOX_HELD = "tocsin:outbox:held"
"""Hash: message key -> the post (JSON), held by the panic stop until `tocsin resume`."""

# --- Mastodon look-ups cached in Redis (shared by all workers).
CACHE_PREFIX = "tocsin:cache:"
INSTANCE_CACHE_TTL = 24 * 3600
"""max_characters rarely changes; re-read it daily."""
STAFF_CACHE_TTL = 60
"""Who is staff now (and which of TOCSIN_MODERATORS still are): alerts quote report comments, so a
moderator demoted, suspended or disabled in Mastodon stops receiving them within a minute, like a
command (STAFF_ROLE_TTL). One admin request a minute at most, and only while DMs are being sent."""
IMPACT_CACHE_TTL = 3600
"""Follow counts move slowly; a scan of hundreds of servers should not ask twice within the hour."""
DOMAIN_BLOCKS_CACHE_TTL = 60
"""Blocks change when moderators act on an alert; keep the view fresh."""
ALERT_MAX_STATUSES = 2
"""An alert DM takes at most this many statuses where it can (Message.shorter): each part of a thread
notifies every moderator again."""
DEFAULT_MAX_CHARACTERS = 500
"""Vanilla Mastodon's limit (StatusLengthValidator::MAX_CHARS), used when the instance cannot be asked."""

# --- Jobs.
JOB_TIMEOUT = 120
"""Seconds. Mastodon calls time out after TOCSIN_REQUEST_TIMEOUT (15 s) each."""
SWEEP_INTERVAL = 60
"""Seconds between periodic sweeps (quiet surges, stalled event streams)."""
SWEEP_JOB_ID = "tocsin-sweep"
WORKER_SEEN_SECONDS = 600
"""/readyz wants a worker heartbeat at most this old."""
PUBSUB_STOP_SECONDS = 1.0
"""A stopping worker waits this long for its RQ command listener (a thread reading a socket) to finish,
as RQ itself did before redis-py 8.2; the listener normally leaves at once (bot/ops/worker.py)."""

# --- Commands from moderators' DMs (bot/dm/commands/, bot/dm/mentions.py).
MENTIONS_JOB_ID = "tocsin-mentions"
"""Prefix of the mention-poll jobs, one per time slot (like the sweep's)."""
MENTIONS_WAITING = "tocsin:mentions:waiting"
"""Hash: status id -> a mention read (JSON) whose command job has not finished: kept by bot/dm/mentions.py
(which queues the job, and again should it be lost), dropped by bot/dm/commands/ when the job is done."""
STAFF_ROLE_TTL = 60
"""Seconds a moderator's role is trusted without asking Mastodon again (read-only commands only: a
command that changes something always asks): a demoted moderator is refused within a minute."""
UNDO_SECONDS = 30 * 60
"""`undo` reverses the moderator's last action within this long."""
CONFIRM_SECONDS = 10 * 60
"""A destructive command waits this long for its `yes`."""
COMMAND_MAX_AGE = 24 * 3600
"""A command read later than this after it was written (Tocsin was down) is not carried out: the
moderator is asked to send it again if it still stands."""

# --- Report floods closed from the DM (handlers/reports/surge.py, bot/dm/wave.py, bot/mastodon/actions.py).
REPORT_PAGES_PER_DM = 5
"""Pages of open reports (200 each, newest first) a surge DM reads to count what `approve 3` would
resolve. The admin API cannot filter reports by server, but the wave is recent: reading stops at the
first page that reaches back before the wave, so this bounds only an instance with more than 1,000 open
reports in the wave's few hours, whose DM then says "1000+"."""
FOLLOWED_ACCOUNTS_PER_DM = 80
"""Reported accounts a surge DM asks Mastodon about (GET /api/v1/accounts, 40 to a request: two
requests) before reading who follows them; the others are "not known" and the DM says "at least"."""
FOLLOWER_PAGES_PER_DM = 40
"""Pages of followers (GET /api/v1/accounts/:id/followers, 80 to a page) a surge DM reads at most, the
most-followed accounts first: a quarter of Tocsin's default share of a window (150 calls), whatever the
wave's size. It stops sooner once the follows found are all those our members have of that server (its
`instance_follows` measure: a spam server's few, or none at all, which needs no page). When the cap
runs out first (a big server) or the share is spent, the DM says "at least"."""
WAVE_ACCOUNT_LOCK_SECONDS = 60
"""A paced job acting on a wave's accounts holds a lock around each account's call, so `undo` stops it
between two accounts and knows exactly which were done: held this long beyond the calls' longest (a
connect and a read timeout, TOCSIN_REQUEST_TIMEOUT each: bot/mastodon/actions.py, _account_lock)."""

# --- `tocsin replay` (bot/ops/replay.py).
REPLAY_SINCE_DAYS = 90.0
"""History replayed by default: a season of an instance's waves, ~13 weeks of reports and sign-ups."""
REPLAY_ACTION_DAYS = 7.0
"""An alert about a server is a hit when moderators limited or suspended it within this long after; none
then is a likely false alarm (a week covers a weekend and a team that meets once a week)."""
REPLAY_MISS_REPORTS = 10
"""A block is a miss when this many reports against its server came in the day before it, with no alert:
the brief's smallest wave that mattered was ~20 reports in an hour; half of that in a day is a burst."""
REPLAY_MISS_HOURS = 24.0
"""... counted over this long before the block."""
REPLAY_SWEEP_SECONDS = 60.0
"""Events further apart than the sweep interval are not one drained batch: live, they arrive apart."""
REPLAY_CACHE_FILE = "replay/history.json"
"""Under TOCSIN_DATA_DIR: the history as downloaded (reduced like intake), read again by later runs."""
