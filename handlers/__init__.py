"""The event families: one package each (reports, signups, spam, scan, federation, incidents), plus
handlers/shared for what they share by name. handlers/families.py lists them for the platform.

A handler is `handle(ctx, event) -> None`: it updates counters in Redis and, when a detector decides,
enqueues an alert job. It does no Mastodon I/O itself; alert jobs do, on the urgent queue.
"""
