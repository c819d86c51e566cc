"""`tocsin` command line: run the processes, inspect and operate them."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import click
import redis
from rq import Queue

from bot import defaults
from bot.children import child_options
from bot.config import ConfigError, Settings, load_settings
from bot.context import Context, redis_from_url
from bot.embedded_redis import EmbeddedRedis, running_embedded_url
from bot.events import backlog, retry_failed
from bot.outbox import read_log
from bot.queue import SERIALIZER
from bot.supervise import STATUS_FILE, Child, CrashLoop, Supervisor, describe, read_status, tail_file

log = logging.getLogger("tocsin")


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _with_redis(settings: Settings) -> Settings:
    """Settings whose redis_url is set: the configured one, or the embedded server `tocsin serve` runs."""
    if settings.redis_url:
        return settings
    url = running_embedded_url(settings.data_dir / "redis")
    if url is None:
        raise click.ClickException(
            "TOCSIN_REDIS_URL is not set and no embedded Redis is running under "
            f"{settings.data_dir / 'redis'}; set TOCSIN_REDIS_URL, or start `tocsin serve` (or `tocsin redis`)"
        )
    return settings.model_copy(update={"redis_url": url})


def _webhook_secret(settings: Settings) -> str:
    """TOCSIN_WEBHOOK_SECRET, else one generated once and kept in the data dir (like Mastodon's 40 hex)."""
    if settings.webhook_secret is not None:
        return settings.webhook_secret.get_secret_value()
    path = settings.secret_file
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(20)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret


@click.group()
def main() -> None:
    """Tocsin: Mastodon admin webhooks in, moderator alerts out."""
    _setup_logging()


@main.command()
@click.option("--workers", type=int, default=None, help="Worker processes (default TOCSIN_WORKERS, 1).")
def serve(workers: int | None) -> None:
    """Everything in one process group: embedded Redis (unless TOCSIN_REDIS_URL), web, workers."""
    settings = _settings()
    embedded: EmbeddedRedis | None = None
    redis_url = settings.redis_url
    if redis_url is None:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        redis_url = embedded.url
        log.info("embedded redis-server on %s, data in %s", redis_url, embedded.directory)
    secret = _webhook_secret(settings)
    env = {**os.environ, "TOCSIN_REDIS_URL": redis_url, "TOCSIN_WEBHOOK_SECRET": secret}
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    mode = f"dry-run (see `tocsin outbox` or {base}/outbox)" if settings.is_dry_run else "live"
    click.echo(f"\nWebhook URL: {base}/webhooks/mastodon\nSecret:      {secret}\nMode:        {mode}\n", err=True)

    def process(role: str) -> Callable[[], subprocess.Popen[bytes]]:
        command = [sys.executable, "-m", "bot.cli", role]
        return lambda: subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **child_options()
        )

    children: list[Child] = []
    if embedded is not None:
        server = embedded
        children.append(Child("redis", lambda: server.start().running, lambda: tail_file(server.log_path)))
    children.append(Child("web", process("web")))
    children += [Child(f"worker-{n}", process("worker")) for n in range(1, (workers or settings.workers) + 1)]
    supervisor = Supervisor(children, settings.data_dir / STATUS_FILE)

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        supervisor.start_all()  # in order: the embedded Redis answers before web and workers start
        while not stopping:
            supervisor.step()
            time.sleep(0.2)
    except CrashLoop as error:
        raise click.ClickException(str(error)) from None
    finally:
        supervisor.stop_all()
        if embedded is not None:
            embedded.stop()


@main.command()
@click.option("--host", default=None, help="Address to listen on (default TOCSIN_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default $PORT, else TOCSIN_PORT, 8000).")
def web(host: str | None, port: int | None) -> None:
    """The web process (webhook intake, health, outbox page)."""
    import uvicorn

    from bot.web import create_app

    settings = _with_redis(_settings())
    if settings.webhook_secret is None:
        raise click.ClickException("TOCSIN_WEBHOOK_SECRET is not set (the secret Mastodon signs webhooks with)")
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or int(os.environ.get("PORT", settings.port)),  # PORT: set by Heroku-style platforms
        log_level="warning",
        access_log=False,
        proxy_headers=True,
    )


@main.command()
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's).")
def worker(burst: bool, name: str | None) -> None:
    """A worker: drains events, sends alerts, runs the sweep. Run as many as you like on one Redis."""
    from bot.worker import run_worker

    run_worker(_with_redis(_settings()), burst=burst, name=name)


@main.command("redis")
def redis_command() -> None:
    """Run only the embedded redis-server in the foreground (for a Procfile on one machine)."""
    settings = _settings()
    server = EmbeddedRedis(settings.data_dir / "redis").start()
    click.echo(f"redis-server on {server.url}; Ctrl-C to stop", err=True)
    try:
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@main.command()
def doctor() -> None:
    """Check configuration, Redis, workers, queues, failed jobs and the Mastodon connection."""
    from bot.mastodon import MastodonLink, make_client

    problems = 0

    def report(ok: bool, text: str) -> None:
        nonlocal problems
        problems += 0 if ok else 1
        click.echo(f"{'ok ' if ok else 'BAD'}  {text}")

    settings = _settings()
    for name, line in describe(read_status(settings.data_dir)).items():  # `tocsin serve`'s children
        report(not line.startswith("DOWN"), f"serve: {name} {line}")
    if not settings.redis_url and running_embedded_url(settings.data_dir / "redis") is None:
        report(False, f"Redis: TOCSIN_REDIS_URL is not set and no embedded Redis answers under {settings.data_dir}")
        raise SystemExit(1)
    settings = _with_redis(settings)
    connection = redis_from_url(settings.redis_url or "")
    try:
        connection.ping()
        report(True, "Redis answers")
    except redis.RedisError as error:
        report(False, f"Redis: {error}")
        raise SystemExit(1) from None
    from bot.web import _recent_workers

    workers = _recent_workers(connection)
    report(workers > 0, f"{workers} worker(s) seen in the last {defaults.WORKER_SEEN_SECONDS // 60} minutes")
    waiting = backlog(connection)
    report(
        waiting["stream"] < 10_000,
        f"events waiting: {waiting['stream']} ({waiting['pending']} being processed)",
    )
    failed_events = int(connection.llen(defaults.FAILED_EVENTS))
    report(failed_events == 0, f"failed events: {failed_events} (tocsin failed)")
    for name in defaults.QUEUES:
        queue = Queue(name, connection=connection, serializer=SERIALIZER)
        failed = queue.failed_job_registry.count
        report(failed == 0, f"queue {name}: {queue.count} queued, {failed} failed")
    mode = "dry-run" if settings.is_dry_run else "live"
    report(True, f"mode: {mode}{' (PAUSED: tocsin resume)' if connection.exists(defaults.PAUSED) else ''}")
    link = MastodonLink(settings, connection, make_client(settings))
    if link.client is None:
        report(settings.is_dry_run, "no TOCSIN_MASTODON_URL: alerts are rendered without impact data")
    else:
        try:
            report(True, f"instance answers; statuses up to {link.max_characters()} characters")
            if link.can_read_admin:
                report(True, f"token belongs to account id {link.bot_account_id()}")
                moderators = link.moderators()
                report(bool(moderators), f"alerts go to: {', '.join('@' + m for m in moderators) or 'nobody'}")
                report(True, f"{len(link.domain_blocks())} domain blocks readable")
                report(True, _watch_status(connection, settings))
        except Exception as error:  # doctor reports, it does not crash
            report(False, f"Mastodon: {type(error).__name__}: {error}")
    raise SystemExit(1 if problems else 0)


def _watch_status(connection: redis.Redis, settings: Settings) -> str:
    """When domain blocks were last polled and peers last scanned (the workers' periodic jobs)."""
    from handlers.domain_blocks import LAST_POLL
    from handlers.scan import LAST_SCAN

    def ago(raw: bytes | None) -> str:
        return "never" if raw is None else f"{(time.time() - float(raw)) / 60:.0f} min ago"

    polled = ago(connection.get(LAST_POLL)) if settings.domain_poll_seconds else "off"
    return f"domain blocks polled: {polled}; peers scanned: {ago(connection.get(LAST_SCAN))}"


@main.command()
@click.option("--requeue", is_flag=True, help="Put failed events back on the stream and requeue failed jobs.")
def failed(requeue: bool) -> None:
    """List (or requeue) failed events and jobs."""
    settings = _with_redis(_settings())
    connection = redis_from_url(settings.redis_url or "")
    for raw in connection.lrange(defaults.FAILED_EVENTS, 0, 49):
        record = json.loads(raw)
        event = json.loads(record["event"]).get("event", "?")
        click.echo(f"event {event}: {record['error']}")
    for name in defaults.QUEUES:
        queue = Queue(name, connection=connection, serializer=SERIALIZER)
        registry = queue.failed_job_registry
        for job_id in registry.get_job_ids():
            job = queue.fetch_job(job_id)
            last = (job.exc_info or "").strip().splitlines()[-1:] if job else []
            click.echo(f"job {name} {job_id} {job.func_name if job else '?'}: {last[0] if last else ''}")
            if requeue:
                registry.requeue(job_id)
    if requeue:
        click.echo(f"{retry_failed(connection, settings.retry_delays)} events put back on the stream")


@main.command()
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def outbox(limit: int, as_json: bool) -> None:
    """What Tocsin posted (or, in dry-run, would have posted), newest first."""
    settings = _with_redis(_settings())
    for entry in read_log(redis_from_url(settings.redis_url or ""), limit):
        if as_json:
            click.echo(json.dumps(entry, ensure_ascii=False))
            continue
        when = datetime.fromtimestamp(float(entry["at"]), UTC).strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[arg-type]
        click.echo(f"--- {when} {entry['visibility']} {entry['mode']} {entry['key']} ({entry['part']}/{entry['of']})")
        click.echo(str(entry["text"]))


@main.command()
def pause() -> None:
    """Panic stop: record posts in the outbox instead of sending them, until `tocsin resume`."""
    settings = _with_redis(_settings())
    redis_from_url(settings.redis_url or "").set(defaults.PAUSED, str(time.time()))
    click.echo("paused: nothing will be posted until `tocsin resume`")


@main.command()
def resume() -> None:
    """End the panic stop."""
    settings = _with_redis(_settings())
    redis_from_url(settings.redis_url or "").delete(defaults.PAUSED)
    click.echo("resumed")


@main.command()
@click.option("--days", type=float, default=None, help="How far back (default: each detector's baseline window).")
def backfill(days: float | None) -> None:
    """Seed the report and sign-up baselines from the admin API (no alerts are raised for history)."""
    from handlers.accounts import backfill_signups
    from handlers.reports import backfill_reports

    settings = _with_redis(_settings())
    if settings.access_token is None:
        raise click.ClickException(
            "backfill reads the admin API: set TOCSIN_ACCESS_TOKEN (scopes admin:read:reports, admin:read:accounts)"
        )
    ctx = Context(settings, redis_from_url(settings.redis_url or ""))
    reports = backfill_reports(ctx, days if days is not None else settings.report_baseline_days)
    click.echo(f"{reports} reports recorded")
    signups = backfill_signups(ctx, days if days is not None else settings.signup_baseline_days)
    click.echo(f"{signups} sign-ups recorded")


def _context() -> Context:
    settings = _with_redis(_settings())
    return Context(settings, redis_from_url(settings.redis_url or ""))


@main.command()
@click.option("--advisory", "advisory_ids", multiple=True, help="Only this advisory (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="The whole report as JSON, for machines.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the proposed blocks as Mastodon CSV.")
@click.option("--fresh", is_flag=True, help="Read every peer again, ignoring cached NodeInfo.")
@click.option("--dm", is_flag=True, help="Also DM the moderators the summary, as the daily scan does.")
def scan(advisory_ids: tuple[str, ...], as_json: bool, csv_path: str | None, fresh: bool, dm: bool) -> None:
    """Scan the peers' software for known advisories, size the impact, propose blocks."""
    from handlers.scan import blocks_csv, peer_domains, run_scan, send_scan_messages

    ctx = _context()
    domains = peer_domains(ctx, ctx.mastodon.domain_blocks())
    if as_json:
        report = run_scan(ctx, advisory_ids, fresh=fresh, domains=domains)
    else:
        with click.progressbar(length=len(domains), label=f"Reading {len(domains)} peers", file=sys.stderr) as bar:
            report = run_scan(ctx, advisory_ids, fresh=fresh, domains=domains, progress=lambda _result: bar.update(1))
    proposals = [proposal for items in report.proposals.values() for proposal in items]
    if csv_path:
        with open(csv_path, "w", encoding="utf-8") as out:
            out.write(blocks_csv(proposals))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print_scan(report)
        if csv_path:
            click.echo(f"\n{len(proposals)} proposed blocks written to {csv_path}: tocsin blocks apply {csv_path}")
    if dm:
        click.echo(f"{send_scan_messages(ctx, report)} message(s) to the moderators", err=True)


def _print_scan(report: object) -> None:
    from handlers.scan import ScanReport, impact_buckets

    assert isinstance(report, ScanReport)
    unreadable = sum(report.unreadable.values())
    click.echo(f"{report.scanned} servers in {report.seconds:.1f} s; {unreadable} unreadable", nl=False)
    click.echo(f" ({', '.join(f'{reason} {n}' for reason, n in report.unreadable.items())})" if unreadable else "")
    click.echo("software: " + ", ".join(f"{name} {n}" for name, n in report.software))
    for finding in report.findings:
        advisory = finding.advisory
        groups = ", ".join(f"{n} run {version}" for version, n in finding.version_groups())
        click.echo(f"\n{advisory.id} ({advisory.severity}, {'/'.join(advisory.software)}): {advisory.summary}")
        exploited = "; exploited" if advisory.exploited else ""
        click.echo(f"  exposes: {advisory.exposure_words}{exploited}")
        uncertain = f", {len(finding.uncertain)} uncertain" if finding.uncertain else ""
        click.echo(
            f"  {finding.total} servers: {len(finding.fixed)} fixed"
            f"{', ' + groups if groups else ''}{uncertain} -> {len(finding.vulnerable)} vulnerable"
        )
        buckets = "; ".join(f"{n} with {label}" for label, n in impact_buckets(finding.vulnerable))
        if buckets:
            click.echo(f"  follows either way: {buckets}")
        click.echo(f"  {'domain':<40} {'version':<32} {'follows':>8} {'followers':>9}  proposed")
        proposals = {proposal.domain: proposal for proposal in report.proposals.get(advisory.id, [])}
        outreach = {item.domain for item in finding.outreach}
        listed = [(item, "") for item in finding.vulnerable] + [(item, "uncertain") for item in finding.uncertain]
        for item, note in sorted(listed, key=lambda pair: -(pair[0].follows or 0)):
            proposal = proposals.get(item.domain)
            action = (proposal.severity + (f" ({proposal.reason})" if proposal.reason else "")) if proposal else "-"
            if item.block is not None:
                action = f"already {item.block.severity}" if proposal is None else action
            if item.domain in outreach:
                action = f"tell their admins: tocsin outreach {item.domain}"
            action = note or action
            follows = str(item.impact.local_follows) if item.impact else "?"
            followers = str(item.impact.remote_followers) if item.impact else "?"
            click.echo(f"  {item.domain:<40} {item.shown[:32]:<32} {follows:>8} {followers:>9}  {action}")
    for block, advisory, peer in report.refederate:
        fixed = f"{block.domain} now runs {peer.shown}, not affected by {advisory.id}"
        click.echo(f"\n{fixed}: tocsin blocks lift {block.domain}")


@main.group()
def blocks() -> None:
    """Poll the domain blocks now; apply proposed blocks, or lift Tocsin's."""


@blocks.command("poll")
def blocks_poll() -> None:
    """Read the domain blocks now and queue what changed since the last poll (workers do it every minute)."""
    from handlers.domain_blocks import poll

    ctx = _context()
    if not ctx.mastodon.can_read_admin:
        raise click.ClickException("polling domain blocks needs TOCSIN_ACCESS_TOKEN (admin:read:domain_blocks)")
    click.echo(f"{poll(ctx)} change(s) queued")


@blocks.command("apply")
@click.argument("csv_file", type=click.File("r", encoding="utf-8"))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def blocks_apply(csv_file: object, yes: bool) -> None:
    """Create the domain blocks of a CSV (Mastodon's format) through the admin API, tagged as Tocsin's."""
    from mastodon import MastodonAPIError

    from handlers.advisories import load_advisories
    from handlers.scan import BLOCK_TAG, read_blocks_csv

    ctx = _context()
    client = ctx.mastodon.client
    if client is None or ctx.settings.access_token is None:
        raise click.ClickException("applying blocks needs TOCSIN_ACCESS_TOKEN with admin:write:domain_blocks")
    rows = read_blocks_csv(csv_file.read())  # type: ignore[attr-defined]
    known = {advisory.id for advisory in load_advisories(ctx.settings.advisory_dir)}
    click.echo(f"{len(rows)} domain blocks:")
    for row in rows:
        click.echo(f"  {row.get('severity', 'silence'):<8} {row['domain']}  {row.get('public_comment', '')[:80]}")
    if not yes:
        click.confirm("Create these blocks on the instance?", abort=True)
    created = 0
    for row in rows:
        comment = row.get("public_comment", "")
        advisory = next((ident for ident in sorted(known) if ident in comment), None)
        tag = BLOCK_TAG.format(id=advisory) if advisory else "[tocsin]"
        try:
            client.admin_create_domain_block(
                row["domain"],
                severity=row.get("severity") or "silence",
                reject_media=row.get("reject_media") == "true",
                reject_reports=row.get("reject_reports") == "true",
                private_comment=f"{tag} proposed by a Tocsin scan",
                public_comment=comment or None,
                obfuscate=row.get("obfuscate") == "true",
            )
            created += 1
        except MastodonAPIError as error:  # 422: already blocked
            click.echo(f"  {row['domain']}: not created ({error.args[-1] if error.args else error})", err=True)
    ctx.redis.delete(defaults.CACHE_PREFIX + "domain-blocks")
    click.echo(f"{created} blocks created")


@blocks.command("lift")
@click.argument("domain")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def blocks_lift(domain: str, yes: bool) -> None:
    """Lift the block of DOMAIN (refederate), if Tocsin applied it."""
    from handlers.scan import tagged_advisory

    ctx = _context()
    block = next((block for block in ctx.mastodon.domain_blocks() if block.domain == domain.lower()), None)
    if block is None or block.id is None:
        raise click.ClickException(f"{domain} is not blocked")
    if tagged_advisory(block) is None and "[tocsin]" not in (block.private_comment or ""):
        raise click.ClickException(f"{domain}'s block was not made by Tocsin; lift it in the admin interface")
    if not yes:
        click.confirm(f"Lift the {block.severity} block of {domain}?", abort=True)
    ctx.mastodon.client.admin_delete_domain_block(block.id)  # type: ignore[union-attr]
    ctx.redis.delete(defaults.CACHE_PREFIX + "domain-blocks")
    click.echo(f"{domain}: block lifted")


@main.command()
@click.argument("domain")
@click.option("--send", is_flag=True, help="DM it to the server's contact account (after confirmation).")
def outreach(domain: str, send: bool) -> None:
    """The message for a vulnerable server's admins, with its public contact; --send DMs it."""
    from handlers.scan import outreach_message

    ctx = _context()
    try:
        message = outreach_message(ctx, domain.lower())
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    click.echo(message.text)
    click.echo(
        f"\ncontact: account {message.contact_acct or 'none public'}; email {message.contact_email or 'none public'}"
    )
    if send:
        if message.contact_acct is None:
            raise click.ClickException(f"{domain} publishes no contact account; write to its email instead")
        click.confirm(f"Send this as a direct message to @{message.contact_acct}?", abort=True)
        ids = ctx.outbox.send(message.post())
        click.echo(f"sent ({len(ids)} part(s))")


@main.group()
def incident() -> None:
    """Open, list and update incidents (the public pages at /incidents)."""


@incident.command("open")
@click.option(
    "--cause",
    type=click.Choice(["spam wave", "vulnerability", "policy", "correction"]),
    default="policy",
    show_default=True,
)
@click.option("--title", required=True)
@click.option("--summary", required=True, help="Public: shown on the page and in announcements.")
@click.argument("domains", nargs=-1)
def incident_open(cause: str, title: str, summary: str, domains: tuple[str, ...]) -> None:
    """Open an incident; blocks of DOMAINS (made now or later) are recorded in it."""
    from handlers import incidents

    ctx = _context()
    slug = incidents.open_incident(ctx.redis, cause, title, summary, time.time())
    for domain in domains:
        incidents.attach(ctx.redis, slug, domain.lower())
    click.echo(f"opened {slug}")


@incident.command("list")
def incident_list() -> None:
    from handlers import incidents

    for item in incidents.list_incidents(_context().redis):
        servers = ", ".join(f"{server.shown} ({server.action})" for server in item.servers)
        click.echo(f"{item.slug}  {item.status:<10} {item.cause:<13} {item.title}  [{servers}]")


@incident.command("status")
@click.argument("slug")
@click.argument("status", type=click.Choice(["open", "monitoring", "resolved"]))
@click.option("--note", default=None, help="Public timeline entry.")
def incident_status(slug: str, status: str, note: str | None) -> None:
    from handlers import incidents

    ctx = _context()
    if incidents.load(ctx.redis, slug) is None:
        raise click.ClickException(f"no incident {slug}")
    incidents.set_status(ctx.redis, slug, incidents.Status(status), time.time(), note)
    click.echo(f"{slug}: {status}")


@main.group(invoke_without_command=True)
@click.pass_context
def announcements(click_ctx: click.Context) -> None:
    """Announcements waiting for their hold-off to end: list, cancel, mark a lift as a correction."""
    if click_ctx.invoked_subcommand is None:
        from handlers.announcements import pending

        for batch_id, due, items in pending(_context().redis):
            click.echo(f"batch {batch_id}, posted at {datetime.fromtimestamp(due, UTC):%H:%M:%S} UTC:")
            for item in items:
                change = item.block
                flags = " [cancelled]" if item.cancelled else (" [correction]" if item.correction else "")
                click.echo(f"  {change.kind:<8} {change.domain} ({change.severity}){flags}")


@announcements.command("cancel")
@click.argument("batch_id")
@click.argument("domain", required=False)
def announcements_cancel(batch_id: str, domain: str | None) -> None:
    """Do not announce this batch (or only DOMAIN's change in it)."""
    from handlers.announcements import cancel

    changed = cancel(_context().redis, batch_id, domain)
    if not changed:
        raise click.ClickException("nothing pending matches (already posted?)")
    click.echo(f"{changed} change(s) will not be announced")


@announcements.command("correction")
@click.argument("batch_id")
@click.argument("domain")
@click.option("--not", "undo", is_flag=True, help="Announce it as an ordinary lift after all.")
def announcements_correction(batch_id: str, domain: str, undo: bool) -> None:
    """Word DOMAIN's lift in this batch as the correction of a mistake."""
    from handlers.announcements import mark_correction

    if not mark_correction(_context().redis, batch_id, domain.lower(), not undo):
        raise click.ClickException("nothing pending matches (already posted?)")
    click.echo(f"{domain}: {'ordinary lift' if undo else 'correction'}")


if __name__ == "__main__":
    main()
