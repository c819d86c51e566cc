"""One module per event family or detector; handlers/families.py says what each brings to the platform.

A handler is `handle(ctx, event) -> None`: it updates counters in Redis and, when a detector decides,
enqueues an alert job. It does no Mastodon I/O itself; alert jobs do, on the urgent queue.
"""
