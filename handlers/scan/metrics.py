"""The peer scan's counters (Prometheus, multiprocess: bot.core.metrics chooses the directory first)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from bot.core import metrics as _platform_metrics  # noqa: F401  (sets PROMETHEUS_MULTIPROC_DIR before any counter)

SCAN_SECONDS = Histogram(
    "tocsin_scan_duration_seconds",
    "How long a peer scan took, from start to the moderators' DM.",
    buckets=(60, 300, 600, 1200, 1800, 3600, 7200, 14400),
)
SCAN_PEERS = Counter("tocsin_scan_peers", "Peers read by scans: read, or unreadable by reason.", ["result"])
