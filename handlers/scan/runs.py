"""A peer scan as a resumable run: tens of thousands of peers, a worker killed midway, Mastodon's rate limit.

A run lives in Redis under its id: the peer list, every peer's result as it comes (streamed, so memory
stays flat), which chunks of TOCSIN_SCAN_CHUNK peers are done, the follows looked up so far. It moves
through three steps, each an RQ job that can die and be run again without repeating finished work:

1. start: list the peers (one admin call), enqueue a reader per worker but one (not a job per chunk,
   so events, alerts and other background work are not queued behind a whole scan) and step 3;
2. read: a reader takes chunks one after another for READER_SECONDS, keeping TOCSIN_SCAN_CONCURRENCY fetches
   in flight across chunk boundaries; it skips peers whose result is stored, stores results in batches
   that renew the chunk's lease, and hands over to a fresh reader while chunks remain;
3. size and finish: match advisories against the results stored so far and look up follows for the
   servers the DM and proposals will name (the largest unaffected ones too, for the all-clear), paced
   to Tocsin's share of the API limit — while the peers are still being read, so the share of several
   rate-limit windows is used, not just the last one's.
   The job reschedules itself (for the window's reset when the share is spent; SIZE_POLL later while
   reading goes on; a worker never sleeps for either); once every chunk is read and every named
   server sized, it builds the report and DMs the moderators once.

The sweep resumes a scheduled run whose job vanished: a chunk taken but not done, without its lease,
whose job is neither waiting nor scheduled (its worker was killed, Redis restarted) gets a reader of its
own (which goes on to other chunks), at most MAX_ATTEMPTS times. `tocsin scan` drives the same steps
in its own process and waits out the limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from rq import Worker, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from bot.core import defaults, redis_text
from bot.mastodon.client import Impact, covering_block
from bot.mastodon.context import Context, get_context
from bot.mastodon.ratelimit import BudgetExhausted
from bot.pipeline.queue import SERIALIZER, enqueue_once, fails_at_once_on_permanent_errors
from handlers.reports.readers import servers_seen
from handlers.scan import metrics as scan_metrics
from handlers.scan.findings import (
    Exposure,
    Proposal,
    ScanReport,
    find,
    propose,
    refederation_candidates,
    sizing_targets,
)
from handlers.scan.messages import send_scan_messages
from handlers.shared import nodeinfo
from handlers.shared.advisories import load_advisories, load_forks
from handlers.shared.block_tags import tagged_advisory
from handlers.shared.nodeinfo import PeerResult
from handlers.shared.peers import peer_domains
from handlers.shared.settings import AdvisorySettings, PeerScanSettings

log = logging.getLogger(__name__)

RUN_PREFIX = "tocsin:scan:run:"  # + run id + ":" + part (meta, peers, results, done, impacts, jobs, lease:…)
CURRENT_RUN = "tocsin:scan:current"  # the scheduled run under way (the one the sweep resumes)
LAST_SCAN = "tocsin:scan:last"  # epoch seconds of the last completed scheduled scan (for `tocsin doctor`)
SCAN_CLAIM = "tocsin:scan:claimed"  # set, with the interval as TTL, by the sweep that starts a scan
SCAN_JOB_ID = "tocsin-scan"
RUN_TTL = 3 * 24 * 3600
"""A run's keys outlive its last change by this much: long enough to resume after a weekend outage."""
DONE_TTL = 3600
"""A finished run is kept an hour (its report can be looked at), then forgotten."""
MAX_ATTEMPTS = 5
"""A chunk or finish re-enqueued more often than this is left failed: something else is wrong."""
FINISH = "finish"  # the name of step 3 among the chunk numbers (leases, jobs)
SIZE_POLL = 5.0
"""Seconds between two sizing passes while peers are still being read."""
SPARE_WORKERS = 1
"""Workers left to other jobs while a scan reads (a reader holds its worker for READER_SECONDS): events
and alerts wait for no scan. With one worker, it reads in turns with the rest."""
READER = "reader"  # the unit name of reading jobs that take any chunk
READER_SECONDS = 30.0
"""A reading job takes new chunks for this long, then hands over to a fresh job (queued behind whatever
else waits): well within RQ's job timeout, since the fetches it started end within TOCSIN_SCAN_TIMEOUT."""


def lease_seconds(scan_timeout: float) -> int:
    """A reading job stores results at least every scan_timeout + nodeinfo.STORE_EVERY seconds (each
    fetch ends by its timeout), renewing its lease each time; twice that and a margin means it is gone."""
    return int(2 * (scan_timeout + nodeinfo.STORE_EVERY) + 10)


@dataclass(frozen=True)
class Run:
    id: str

    def key(self, part: str) -> str:
        return f"{RUN_PREFIX}{self.id}:{part}"

    def meta(self, ctx: Context) -> dict[str, str]:
        return redis_text.text_map(ctx.redis.hgetall(self.key("meta")))

    def results(self, ctx: Context) -> Iterator[PeerResult]:
        for _domain, raw in ctx.redis.hscan_iter(self.key("results"), count=1000):
            yield PeerResult.from_json(raw)


@dataclass(frozen=True)
class Progress:
    total: int
    read: int
    started: float
    state: str  # reading | sizing | done
    sized: int = 0
    to_size: int = 0


def progress(ctx: Context, run: Run) -> Progress:
    meta = run.meta(ctx)
    return Progress(
        total=int(meta.get("total", 0)),
        read=int(ctx.redis.hlen(run.key("results"))),
        started=float(meta.get("started", 0)),
        state=meta.get("state", "gone"),
        sized=int(ctx.redis.hlen(run.key("impacts"))),
        to_size=int(meta.get("to_size", 0)),
    )


# --- Step 1: start -------------------------------------------------------------------------------


def start_run(ctx: Context, advisory_ids: Iterable[str] = (), fresh: bool = False, scheduled: bool = False) -> Run:
    """List the peers and record a new run (jobs are enqueued by scheduled_scan; `tocsin scan` reads here)."""
    blocks = ctx.mastodon.domain_blocks()
    # In an order of their own, not the alphabet's: the hundreds of names of one dead hosting service,
    # or of one slow provider, are spread over every chunk instead of stalling one (or hammering one).
    peers = sorted(
        peer_domains(ctx, blocks, servers_seen), key=lambda name: hashlib.blake2b(name.encode(), digest_size=8).digest()
    )
    run = Run(f"{int(time.time())}-{secrets.token_hex(3)}")
    size = ctx.settings.section(PeerScanSettings).chunk
    pipe = ctx.redis.pipeline()
    pipe.hset(
        run.key("meta"),
        mapping={
            "started": repr(time.time()),
            "total": len(peers),
            "chunk": size,
            "chunks": (len(peers) + size - 1) // size,
            "fresh": "1" if fresh else "",
            "advisories": json.dumps(sorted(advisory_ids)),
            # Blocked for an advisory: read again whatever the cache says, so an upgrade shows at once.
            "recheck": json.dumps(sorted(block.domain for block in blocks if tagged_advisory(block))),
            "state": "reading",
            "scheduled": "1" if scheduled else "",
        },
    )
    for start in range(0, len(peers), 1000):
        pipe.rpush(run.key("peers"), *peers[start : start + 1000])
    if scheduled:
        pipe.set(CURRENT_RUN, run.id, ex=RUN_TTL)
    for part in ("meta", "peers"):
        pipe.expire(run.key(part), RUN_TTL)
    pipe.execute()
    if not peers:
        ctx.redis.hset(run.key("meta"), "state", "sizing")
    return run


def chunk_count(meta: dict[str, str]) -> int:
    return int(meta.get("chunks", 0))


# --- Step 2: read chunks ------------------------------------------------------------------------


@dataclass
class _Chunk:
    """A chunk being read: its peers still out, their results not stored yet."""

    number: int
    lease: str
    out: int
    batch: list[PeerResult] = field(default_factory=list)
    stored_at: float = field(default_factory=time.monotonic)


def read_chunks(
    ctx: Context,
    run: Run,
    claim: Callable[[], int | None],
    seconds: float,
    on_results: Callable[[list[PeerResult]], None] | None = None,
    job_id: str | None = None,
) -> None:
    """Read the chunks `claim` hands out (None: no more) for `seconds`, keeping TOCSIN_SCAN_CONCURRENCY
    fetches in flight across chunk boundaries, so a chunk's slowest peers (a 10 s timeout) do not hold the
    next chunk back. Results are stored in batches, each renewing its chunk's lease; a chunk is done
    when its last peer is stored. Peers the run has, or the cache still holds, are not fetched."""
    meta = run.meta(ctx)
    size, chunks = int(meta["chunk"]), chunk_count(meta)
    recheck: set[str] | None = None if meta.get("fresh") else set(json.loads(meta.get("recheck", "[]")))
    fetcher = nodeinfo.make_fetcher(ctx.settings)
    ttl = lease_seconds(ctx.settings.section(PeerScanSettings).timeout)

    def store(chunk: _Chunk, results: list[PeerResult], fetched: bool) -> None:
        if fetched:
            nodeinfo.cache_results(ctx.redis, results)
        pipe = ctx.redis.pipeline(transaction=False)
        if results:
            pipe.hset(run.key("results"), mapping={result.domain: result.to_json() for result in results})
            pipe.expire(run.key("results"), RUN_TTL)
        pipe.set(chunk.lease, "1", ex=ttl)
        pipe.execute()
        chunk.stored_at = time.monotonic()
        if on_results is not None and results:
            on_results(results)

    def done(chunk: _Chunk) -> None:
        pipe = ctx.redis.pipeline()
        pipe.sadd(run.key("done"), chunk.number)
        pipe.expire(run.key("done"), RUN_TTL)
        pipe.scard(run.key("done"))
        pipe.delete(chunk.lease)
        if pipe.execute()[2] == chunks and ctx.redis.hsetnx(run.key("meta"), "read_at", repr(time.time())):
            _set_state(ctx, run, "sizing")  # the last chunk: exactly one reader moves the run on

    async def one(domain: str, chunk: _Chunk, limit: asyncio.Semaphore) -> None:
        try:
            result = await nodeinfo.read_peer(fetcher, domain)
        finally:
            limit.release()
        chunk.batch.append(result)
        chunk.out -= 1
        if (
            chunk.out == 0
            or len(chunk.batch) >= nodeinfo.STORE_BATCH
            or (time.monotonic() - chunk.stored_at >= nodeinfo.STORE_EVERY)
        ):
            batch, chunk.batch = chunk.batch, []
            store(chunk, batch, fetched=True)
        if chunk.out == 0:
            done(chunk)

    async def read() -> None:
        limit = asyncio.Semaphore(ctx.settings.section(PeerScanSettings).concurrency)
        running: set[asyncio.Task[None]] = set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and (number := claim()) is not None:
            chunk = _Chunk(number, run.key(f"lease:{number}"), 0)
            ctx.redis.set(chunk.lease, "1", ex=ttl)
            if job_id is not None:
                ctx.redis.hset(run.key("jobs"), str(number), job_id)
            domains = redis_text.texts(ctx.redis.lrange(run.key("peers"), number * size, (number + 1) * size - 1))
            stored = ctx.redis.hmget(run.key("results"), domains) if domains else []
            todo = [domain for domain, raw in zip(domains, stored, strict=True) if raw is None]
            known = nodeinfo.cached_results(ctx.redis, [d for d in todo if recheck is not None and d not in recheck])
            store(chunk, known, fetched=False)
            have = {result.domain for result in known}
            missing = [domain for domain in todo if domain not in have]
            chunk.out = len(missing)
            if not missing:
                done(chunk)
            for domain in missing:
                await limit.acquire()
                task = asyncio.create_task(one(domain, chunk, limit))
                running.add(task)
                task.add_done_callback(running.discard)
        await asyncio.gather(*running)

    asyncio.run(read())


def _claim_next(ctx: Context, run: Run) -> int | None:
    """The next chunk nobody has taken yet, taken; None when every chunk has been taken."""
    number = int(ctx.redis.hincrby(run.key("meta"), "next", 1)) - 1
    return number if number < chunk_count(run.meta(ctx)) else None


def _set_state(ctx: Context, run: Run, state: str) -> None:
    ctx.redis.hset(run.key("meta"), "state", state)


# --- Step 3: finish ------------------------------------------------------------------------------


def build_report(ctx: Context, run: Run) -> ScanReport:
    """Match the stored results, look up follows for the servers named (stored as they come, so a spent
    rate-limit share only pauses this), and assemble the report. Raises BudgetExhausted to pause."""
    meta = run.meta(ctx)
    advisories = load_advisories(ctx.settings.section(AdvisorySettings).dir)
    wanted = set(json.loads(meta.get("advisories", "[]")))
    if wanted:
        advisories = [advisory for advisory in advisories if advisory.id in wanted]
    forks = load_forks(ctx.settings.section(AdvisorySettings).dir)
    results = list(run.results(ctx))
    findings = [finding for finding in (find(advisory, results, forks) for advisory in advisories) if finding.total]
    impacts = _size(ctx, run, sizing_targets(findings, complete=meta.get("state") != "reading"))
    blocks = ctx.mastodon.domain_blocks()
    by_domain = {block.domain: block for block in blocks}

    def named(item: Exposure) -> Exposure:
        return replace(item, impact=impacts.get(item.domain), block=covering_block(item.domain, by_domain))

    proposals: dict[str, list[Proposal]] = {}
    for finding in findings:
        finding.vulnerable = [named(item) for item in finding.vulnerable]
        finding.uncertain = [named(item) for item in finding.uncertain]
        finding.fixed = [named(item) for item in finding.fixed]  # the all-clear's follows
        proposals[finding.advisory.id] = propose(finding, ctx.settings.section(PeerScanSettings).limit_above_follows)
    unreadable = Counter(result.error for result in results if result.error)
    software = Counter(result.software.name for result in results if result.software)
    return ScanReport(
        scanned=len(results),
        unreadable=dict(unreadable.most_common()),
        software=software.most_common(8),
        findings=findings,
        proposals=proposals,
        refederate=refederation_candidates(
            blocks, {result.domain: result for result in results}, {a.id: a for a in advisories}, forks
        ),
        seconds=time.time() - float(meta.get("started", time.time())),
    )


def _size(ctx: Context, run: Run, targets: list[str]) -> dict[str, Impact | None]:
    """Follows both ways for each target, from this run's store, else asked (paced) and stored."""
    key = run.key("impacts")
    ctx.redis.hset(run.key("meta"), "to_size", len(targets))
    stored = ctx.redis.hmget(key, targets) if targets else []
    impacts: dict[str, Impact | None] = {}
    for domain, raw in zip(targets, stored, strict=True):
        if raw is None:
            with ctx.mastodon.bulk():
                impact = ctx.mastodon.impact(domain)  # BudgetExhausted pauses here; what is stored stays
            ctx.redis.hset(key, domain, json.dumps(asdict(impact) if impact else None))
            ctx.redis.expire(key, RUN_TTL)
        else:
            data = json.loads(raw)
            impact = Impact(**data) if data else None
        impacts[domain] = impact
    return impacts


def complete(ctx: Context, run: Run, report: ScanReport, send: bool) -> int:
    """The run's end, once: the moderators' DM (when `send`), the doctor's timestamp, the keys' expiry."""
    if not ctx.redis.hsetnx(run.key("meta"), "completed", repr(time.time())):
        return 0
    scan_metrics.SCAN_SECONDS.observe(report.seconds)
    scan_metrics.SCAN_PEERS.labels("read").inc(report.scanned - sum(report.unreadable.values()))
    for reason, count in report.unreadable.items():
        scan_metrics.SCAN_PEERS.labels(reason).inc(count)
    sent = send_scan_messages(ctx, report) if send else 0
    pipe = ctx.redis.pipeline()
    pipe.hset(run.key("meta"), "state", "done")
    if run.meta(ctx).get("scheduled"):
        pipe.set(LAST_SCAN, repr(time.time()))
        pipe.delete(CURRENT_RUN)
    for part in ("meta", "peers", "results", "done", "impacts", "jobs"):
        pipe.expire(run.key(part), DONE_TTL)
    pipe.execute()
    return sent


# --- In one process: `tocsin scan` ---------------------------------------------------------------


def run_scan(
    ctx: Context,
    advisory_ids: Iterable[str] = (),
    fresh: bool = False,
    on_results: Callable[[list[PeerResult]], None] | None = None,
    run: Run | None = None,
) -> ScanReport:
    """A whole scan here and now, every peer in one pass, then the report (a command's Mastodon client
    waits out a spent share of the rate limit, see bot/ops/clitools.py). The caller sends the messages."""
    run = run or start_run(ctx, advisory_ids, fresh)
    read_chunks(ctx, run, lambda: _claim_next(ctx, run), math.inf, on_results)
    _set_state(ctx, run, "sizing")  # also when there were no peers at all
    report = build_report(ctx, run)
    complete(ctx, run, report, send=False)
    return report


# --- As jobs: the scheduled scan -----------------------------------------------------------------


def _enqueue(
    ctx: Context,
    run: Run,
    unit: int | str,
    function: Callable[..., Any],
    *args: Any,
    delay: float | None = None,
    attempt: bool = True,
) -> bool:
    """Enqueue a job for a unit of the run (a chunk whose reader died, a reader, the finish) under a new
    job id, remembered as the unit's; `attempt`: count it against MAX_ATTEMPTS (a reader handing over,
    or a finish waiting for the rate limit's reset, is no new attempt)."""
    if attempt and ctx.redis.hincrby(run.key("jobs"), f"{unit}:attempts", 1) > MAX_ATTEMPTS:
        log.error("scan %s: %s was started %d times; left alone", run.id, unit, MAX_ATTEMPTS)
        return False
    job_id = f"{SCAN_JOB_ID}-{run.id}-{unit}-{ctx.redis.hincrby(run.key('jobs'), f'{unit}:jobs', 1)}"
    ctx.redis.hset(run.key("jobs"), str(unit), job_id)
    ctx.redis.expire(run.key("jobs"), RUN_TTL)
    return enqueue_once(
        ctx.redis,
        defaults.QUEUE_BACKGROUND,
        function,
        *args,
        job_id=job_id,
        retry_delays=ctx.settings.retry_delays,
        delay_seconds=delay,
    )


@fails_at_once_on_permanent_errors
def scheduled_scan() -> dict[str, Any]:
    """RQ job (background queue): start the daily scan: its readers and its sizing."""
    ctx = get_context()
    run = start_run(ctx, scheduled=True)
    for _reader in range(max(1, Worker.count(connection=ctx.redis) - SPARE_WORKERS)):
        _enqueue(ctx, run, READER, read_job, run.id, None, attempt=False)
    _enqueue(ctx, run, FINISH, finish_job, run.id)
    return {"run": run.id, "chunks": chunk_count(run.meta(ctx))}


def read_job(run_id: str, chunk: int | None) -> None:
    """RQ job: read `chunk` (one whose reader died) if given, then chunks nobody has taken, for
    READER_SECONDS; then hand over to a fresh reader while chunks remain."""
    ctx = get_context()
    run = Run(run_id)
    if run.meta(ctx).get("state") != "reading":
        return
    first = [chunk] if chunk is not None else []
    job = get_current_job()
    read_chunks(
        ctx,
        run,
        lambda: first.pop() if first else _claim_next(ctx, run),
        READER_SECONDS,
        job_id=job.id if job is not None else None,
    )
    meta = run.meta(ctx)
    if int(meta.get("next", 0)) < chunk_count(meta):
        _enqueue(ctx, run, READER, read_job, run.id, None, attempt=False)


@fails_at_once_on_permanent_errors
def finish_job(run_id: str) -> dict[str, int] | None:
    """RQ job: size what is known; reschedule while reading goes on or the API share is spent; at the
    end, the report and its DM."""
    ctx = get_context()
    run = Run(run_id)
    state = run.meta(ctx).get("state")
    if state not in ("reading", "sizing"):
        return None
    lease = run.key(f"lease:{FINISH}")
    ctx.redis.set(lease, "1", ex=lease_seconds(ctx.settings.section(PeerScanSettings).timeout))
    try:
        report = build_report(ctx, run)
    except BudgetExhausted as spent:
        log.info("scan %s: API share spent, sizing resumes in %.0f s", run.id, spent.wait)
        _again(ctx, run, spent.wait + 1)
        return None
    finally:
        ctx.redis.delete(lease)
    if state == "reading":  # built from what was read so far: only to size early
        _again(ctx, run, SIZE_POLL)
        return None
    sent = complete(ctx, run, report, send=True)
    return {"scanned": report.scanned, "messages": sent}


def _again(ctx: Context, run: Run, delay: float) -> None:
    ctx.redis.hset(run.key("meta"), "finish_due", repr(time.time() + delay))
    _enqueue(ctx, run, FINISH, finish_job, run.id, delay=delay, attempt=False)


def schedule_scan(ctx: Context, now: float) -> bool:
    """Start the scan when the last one is older than TOCSIN_SCAN_INTERVAL_HOURS."""
    interval = ctx.settings.section(PeerScanSettings).interval_hours * 3600
    if interval <= 0 or ctx.mastodon.client is None:
        return False
    # One job per interval, whichever worker's sweep gets here first.
    if not ctx.redis.set(SCAN_CLAIM, "1", nx=True, ex=max(int(interval), 60)):
        return False
    return enqueue_once(
        ctx.redis,
        defaults.QUEUE_BACKGROUND,
        scheduled_scan,
        job_id=f"{SCAN_JOB_ID}-{int(now)}",
        retry_delays=ctx.settings.retry_delays,
    )


WAITING = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED})


def resume_stalled(ctx: Context, now: float) -> list[str]:
    """Enqueue again the parts of the scheduled run whose job is gone: not waiting, not holding a lease.
    Returns what was resumed (chunk numbers, "finish")."""
    raw = ctx.redis.get(CURRENT_RUN)
    if raw is None:
        return []
    run = Run(redis_text.text(raw))
    meta = run.meta(ctx)
    state = meta.get("state")
    if state not in ("reading", "sizing"):
        return []
    pending: list[int | str] = []
    if state == "reading":
        done = {int(member) for member in ctx.redis.smembers(run.key("done"))}
        handed_out = min(int(meta.get("next", 0)), chunk_count(meta))
        pending = [chunk for chunk in range(handed_out) if chunk not in done]
        if len(done) == chunk_count(meta):
            _set_state(ctx, run, "sizing")  # the last chunk's reader died before saying so
    if float(meta.get("finish_due", 0)) <= now:
        pending.append(FINISH)
    resumed = []
    jobs = redis_text.text_map(ctx.redis.hgetall(run.key("jobs")))
    for unit in pending:
        if ctx.redis.exists(run.key(f"lease:{unit}")):
            continue
        job_id = jobs.get(str(unit))
        if job_id is not None and _waiting(ctx, job_id):
            continue
        again = (
            _enqueue(ctx, run, FINISH, finish_job, run.id)
            if unit == FINISH
            else (_enqueue(ctx, run, unit, read_job, run.id, unit))
        )
        if again:
            resumed.append(str(unit))
    if resumed:
        log.warning("scan %s: resumed %s (their worker stopped)", run.id, ", ".join(resumed))
    return resumed


def _waiting(ctx: Context, job_id: str) -> bool:
    """The job is queued or scheduled; a job its dead worker left as started is deleted."""
    try:
        job = Job.fetch(job_id, connection=ctx.redis, serializer=SERIALIZER)
    except NoSuchJobError:
        return False
    status = job.get_status()
    if status in WAITING:
        return True
    if status == JobStatus.STARTED:
        job.delete()  # its worker is gone (no lease): RQ would report it abandoned much later
    return False


def sweep(ctx: Context, now: float) -> None:
    resume_stalled(ctx, now)
    schedule_scan(ctx, now)
