"""Prometheus metrics, through the official client in its multiprocess mode.

Web and workers are separate processes: each writes its counters to files (memory-mapped, a few
microseconds an increment) in PROMETHEUS_MULTIPROC_DIR, and GET /metrics adds them up. The directory is
`<TOCSIN_DATA_DIR>/metrics` unless PROMETHEUS_MULTIPROC_DIR is set; it must be chosen before the client
is imported (this module sets it first), be shared by the processes of one machine, and be emptied when
they all restart (`tocsin serve` does it; the systemd units' ExecStartPre does). What is state rather
than a count (backlog, queues, held announcements, the API's remaining calls) is read from Redis when
scraped, so it is right whichever process serves it and wherever the workers run.

A family's own counters live in the family (handlers/scan/metrics.py), importing this module first.
What a scrape shows is put together in bot/ops/scrape.py. Exposed by the web process at /metrics when
TOCSIN_METRICS=true, or on a separate listener bound to 127.0.0.1:TOCSIN_METRICS_PORT, so the public
webhook listener never shows it by accident.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", str(Path(os.environ.get("TOCSIN_DATA_DIR", "tocsin-data")) / "metrics")
)
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

from prometheus_client import Counter  # noqa: E402  (the directory above is set first)

WEBHOOKS = Counter("tocsin_webhooks", "Webhook deliveries answered, by event and HTTP status.", ["event", "status"])
SIGNATURE_FAILURES = Counter("tocsin_webhook_signature_failures", "Deliveries with a missing or wrong signature.")
DUPLICATES = Counter("tocsin_webhook_duplicates", "Deliveries of a body already accepted (Mastodon's retries).")
TOO_LARGE = Counter("tocsin_webhook_too_large", "Deliveries refused for a body over TOCSIN_MAX_BODY_BYTES.")
EVENTS = Counter("tocsin_events", "Events handled by each family, by outcome.", ["family", "outcome"])
SURGES = Counter("tocsin_surge_transitions", "Surges opened, escalated and closed, by detector.", ["detector", "kind"])
POSTS = Counter("tocsin_posts", "Statuses posted (or not), by kind of message and outcome.", ["kind", "outcome"])
API_CALLS = Counter("tocsin_mastodon_api_calls", "Calls to Mastodon's API, by class and status.", ["kind", "status"])
COMMANDS = Counter("tocsin_commands", "Moderators' DM commands, by outcome (ignored: not one).", ["outcome"])
