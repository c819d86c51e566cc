"""A peer scan as a resumable run: tens of thousands of peers, a worker killed midway, Mastodon's rate limit.

A run lives in Redis under its id: the peer list, every peer's result as it comes (streamed, so memory
stays flat), which chunks of TOCSIN_SCAN_CHUNK peers are done, the follows looked up so far. It moves
through three steps, each an RQ job that can die and be run again without repeating finished work:

1. start: list the peers (one admin call), hand out the first chunks (one job each, a few at a time so
   other background work is not queued behind a whole scan) and start step 3;
2. read a chunk: skip peers whose result is stored, read the others' NodeInfo, store results in batches,
   renewing the chunk's lease; then hand out the next chunk;
3. size and finish: match advisories against the results stored so far and look up follows for the
   servers the DM and proposals will name, paced to Tocsin's share of the API limit — while the peers
   are still being read, so the share of several rate-limit windows is used, not just the last one's.
   The job reschedules itself (for the window's reset when the share is spent; SIZE_POLL later while
   reading goes on; a worker never sleeps for either); once every chunk is read and every named
   server sized, it builds the report and DMs the moderators once.

The sweep resumes a scheduled run whose job vanished: a chunk without its lease whose job is neither
waiting nor scheduled (its worker was killed, Redis restarted) is enqueued again, at most
MAX_ATTEMPTS times. `tocsin scan` drives the same steps in its own process and waits out the limit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from bot import defaults
from bot.context import Context, get_context
from bot.mastodon import Impact, covering_block
from bot.queue import SERIALIZER, enqueue_once, fails_at_once_on_permanent_errors
from bot.ratelimit import BudgetExhausted
from handlers import nodeinfo
from handlers.advisories import load_advisories, load_forks
from handlers.domain_blocks import tagged_advisory
from handlers.findings import (
    Exposure,
    Proposal,
    ScanReport,
    find,
    propose,
    refederation_candidates,
    sizing_targets,
)
from handlers.nodeinfo import PeerResult
from handlers.scan import peer_domains, send_scan_messages

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
MIN_READERS = 2
"""Chunks handed out at once: this many, or one per registered worker if there are more."""


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
        raw = ctx.redis.hgetall(self.key("meta"))
        return {key.decode(): value.decode() for key, value in raw.items()}  # type: ignore[union-attr]

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
    """List the peers and record a new run (no job enqueued: see enqueue_chunks)."""
    blocks = ctx.mastodon.domain_blocks()
    # In an order of their own, not the alphabet's: the hundreds of names of one dead hosting service,
    # or of one slow provider, are spread over every chunk instead of stalling one (or hammering one).
    peers = sorted(peer_domains(ctx, blocks), key=lambda name: hashlib.blake2b(name.encode(), digest_size=8).digest())
    run = Run(f"{int(time.time())}-{secrets.token_hex(3)}")
    size = ctx.settings.scan_chunk
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


# --- Step 2: read a chunk ------------------------------------------------------------------------


def read_chunk(ctx: Context, run: Run, chunk: int) -> bool:
    """Read one chunk's peers not read yet; True when this made every chunk done (then finish)."""
    meta = run.meta(ctx)
    if meta.get("state") != "reading" or ctx.redis.sismember(run.key("done"), chunk):
        return False
    size = int(meta["chunk"])
    domains = [raw.decode() for raw in ctx.redis.lrange(run.key("peers"), chunk * size, (chunk + 1) * size - 1)]
    lease = run.key(f"lease:{chunk}")
    _read(ctx, run, meta, domains, lease, None)
    pipe = ctx.redis.pipeline()
    pipe.sadd(run.key("done"), chunk)
    pipe.expire(run.key("done"), RUN_TTL)
    pipe.scard(run.key("done"))
    pipe.delete(lease)
    done = pipe.execute()[2]
    if done < chunk_count(meta) or not ctx.redis.hsetnx(run.key("meta"), "read_at", repr(time.time())):
        return False
    _set_state(ctx, run, "sizing")  # the last chunk: exactly one caller moves the run on
    return True


def _read(
    ctx: Context,
    run: Run,
    meta: dict[str, str],
    domains: list[str],
    lease: str,
    on_results: Callable[[list[PeerResult]], None] | None,
) -> None:
    """Read the domains whose result the run does not have yet, storing results as they come and
    renewing `lease` with each batch."""
    ttl = lease_seconds(ctx.settings.scan_timeout)
    ctx.redis.set(lease, "1", ex=ttl)
    stored = ctx.redis.hmget(run.key("results"), domains) if domains else []
    todo = [domain for domain, raw in zip(domains, stored, strict=True) if raw is None]
    recheck: bool | list[str] = True if meta.get("fresh") else json.loads(meta.get("recheck", "[]"))

    def store(batch: list[PeerResult]) -> None:
        pipe = ctx.redis.pipeline(transaction=False)
        pipe.hset(run.key("results"), mapping={result.domain: result.to_json() for result in batch})
        pipe.expire(run.key("results"), RUN_TTL)
        pipe.set(lease, "1", ex=ttl)
        pipe.execute()
        if on_results is not None:
            on_results(batch)

    if todo:
        nodeinfo.read_peers_streamed(ctx, nodeinfo.make_fetcher(ctx.settings), todo, store, recheck)
    ctx.redis.delete(lease)


def _set_state(ctx: Context, run: Run, state: str) -> None:
    ctx.redis.hset(run.key("meta"), "state", state)


# --- Step 3: finish ------------------------------------------------------------------------------


def build_report(ctx: Context, run: Run) -> ScanReport:
    """Match the stored results, look up follows for the servers named (stored as they come, so a spent
    rate-limit share only pauses this), and assemble the report. Raises BudgetExhausted to pause."""
    meta = run.meta(ctx)
    advisories = load_advisories(ctx.settings.advisory_dir)
    wanted = set(json.loads(meta.get("advisories", "[]")))
    if wanted:
        advisories = [advisory for advisory in advisories if advisory.id in wanted]
    forks = load_forks(ctx.settings.advisory_dir)
    results = list(run.results(ctx))
    findings = [finding for finding in (find(advisory, results, forks) for advisory in advisories) if finding.total]
    impacts = _size(ctx, run, sizing_targets(findings))
    blocks = ctx.mastodon.domain_blocks()
    by_domain = {block.domain: block for block in blocks}

    def named(item: Exposure) -> Exposure:
        return replace(item, impact=impacts.get(item.domain), block=covering_block(item.domain, by_domain))

    proposals: dict[str, list[Proposal]] = {}
    for finding in findings:
        finding.vulnerable = [named(item) for item in finding.vulnerable]
        finding.uncertain = [named(item) for item in finding.uncertain]
        proposals[finding.advisory.id] = propose(finding, ctx.settings.scan_limit_above_follows)
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
    waits out a spent share of the rate limit, see bot/clitools.py). The caller sends the messages."""
    run = run or start_run(ctx, advisory_ids, fresh)
    # One process, one pass over every peer: chunks only matter to jobs that may die.
    peers = [raw.decode() for raw in ctx.redis.lrange(run.key("peers"), 0, -1)]
    _read(ctx, run, run.meta(ctx), peers, run.key("lease:here"), on_results)
    _set_state(ctx, run, "sizing")
    report = build_report(ctx, run)
    complete(ctx, run, report, send=False)
    return report


# --- As jobs: the scheduled scan -----------------------------------------------------------------


def _enqueue(ctx: Context, run: Run, unit: int | str, delay: float | None = None, attempt: bool = True) -> bool:
    """Enqueue a chunk (or the finish) of the run under a new job id; `attempt`: count it against
    MAX_ATTEMPTS (a finish waiting for the rate limit's reset is no new attempt)."""
    if attempt and ctx.redis.hincrby(run.key("jobs"), f"{unit}:attempts", 1) > MAX_ATTEMPTS:
        log.error("scan %s: %s was started %d times; left alone", run.id, unit, MAX_ATTEMPTS)
        return False
    job_id = f"{SCAN_JOB_ID}-{run.id}-{unit}-{ctx.redis.hincrby(run.key('jobs'), f'{unit}:jobs', 1)}"
    ctx.redis.hset(run.key("jobs"), str(unit), job_id)
    ctx.redis.expire(run.key("jobs"), RUN_TTL)
    if unit == FINISH:
        return enqueue_once(
            ctx.redis,
            defaults.QUEUE_BACKGROUND,
            finish_job,
            run.id,
            job_id=job_id,
            retry_delays=ctx.settings.retry_delays,
            delay_seconds=delay,
        )
    return enqueue_once(
        ctx.redis,
        defaults.QUEUE_BACKGROUND,
        read_chunk_job,
        run.id,
        unit,
        job_id=job_id,
        retry_delays=ctx.settings.retry_delays,
    )


@fails_at_once_on_permanent_errors
def scheduled_scan() -> dict[str, Any]:
    """RQ job (background queue): start the daily scan: its first chunks and its sizing."""
    ctx = get_context()
    run = start_run(ctx, scheduled=True)
    for _reader in range(max(MIN_READERS, Worker.count(connection=ctx.redis))):
        _hand_out(ctx, run)
    _enqueue(ctx, run, FINISH)
    return {"run": run.id, "chunks": chunk_count(run.meta(ctx))}


def _hand_out(ctx: Context, run: Run) -> None:
    """Enqueue the next chunk nobody has been given yet, if any."""
    chunk = int(ctx.redis.hincrby(run.key("meta"), "next", 1)) - 1
    if chunk < chunk_count(run.meta(ctx)):
        _enqueue(ctx, run, chunk)


def read_chunk_job(run_id: str, chunk: int) -> None:
    """RQ job: read one chunk, then hand out the next."""
    ctx = get_context()
    run = Run(run_id)
    read_chunk(ctx, run, chunk)
    _hand_out(ctx, run)


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
    ctx.redis.set(lease, "1", ex=lease_seconds(ctx.settings.scan_timeout))
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
    _enqueue(ctx, run, FINISH, delay=delay, attempt=False)  # waiting is no failed attempt


def schedule_scan(ctx: Context, now: float) -> bool:
    """Start the scan when the last one is older than TOCSIN_SCAN_INTERVAL_HOURS."""
    interval = ctx.settings.scan_interval_hours * 3600
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
    run = Run(raw.decode())
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
            _set_state(ctx, run, "sizing")  # the last chunk's worker died before saying so
    if float(meta.get("finish_due", 0)) <= now:
        pending.append(FINISH)
    resumed = []
    jobs = ctx.redis.hgetall(run.key("jobs"))
    for unit in pending:
        if ctx.redis.exists(run.key(f"lease:{unit}")):
            continue
        job_id = jobs.get(str(unit).encode())  # type: ignore[union-attr]
        if job_id is not None and _waiting(ctx, job_id.decode()):
            continue
        if _enqueue(ctx, run, unit):
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
