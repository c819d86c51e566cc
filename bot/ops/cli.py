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
from pathlib import Path
from typing import Any

import click
import redis
from rq import Queue
from rq.job import Job

from bot.core import defaults
from bot.core.config import Settings
from bot.mastodon.context import Context, redis_from_url
from bot.mastodon.outbox import read_log
from bot.ops.children import child_options
from bot.ops.clitools import cli_context, settings_from_environment, with_redis
from bot.ops.embedded_redis import EmbeddedRedis, running_embedded_url
from bot.ops.replay import replay_command
from bot.ops.supervise import STATUS_FILE, Child, CrashLoop, Supervisor, describe, read_status, tail_file
from bot.pipeline.events import backlog, retry_failed
from bot.pipeline.families import registry
from bot.pipeline.queue import SERIALIZER

log = logging.getLogger("tocsin")


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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


def _web_port(settings: Settings) -> int:
    """Where `tocsin web` listens without --port: $PORT, which Heroku-style platforms set, else TOCSIN_PORT."""
    return int(os.environ.get("PORT", settings.port))


@click.group()
def main() -> None:
    """Tocsin: Mastodon admin webhooks in, moderator alerts out."""
    _setup_logging()


@main.command()
@click.option("--workers", type=int, default=None, help="Worker processes (default TOCSIN_WORKERS, 1).")
def serve(workers: int | None) -> None:
    """Everything in one process group: embedded Redis (unless TOCSIN_REDIS_URL), web, workers."""
    settings = settings_from_environment()
    embedded: EmbeddedRedis | None = None
    redis_url = settings.redis_url
    if redis_url is None:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        redis_url = embedded.url
        log.info("embedded redis-server on %s, data in %s", redis_url, embedded.directory)
    secret = _webhook_secret(settings)
    env = {**os.environ, "TOCSIN_REDIS_URL": redis_url, "TOCSIN_WEBHOOK_SECRET": secret}
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.data_dir / "metrics"))
    metrics_dir = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):  # the counters of an earlier run's processes
        stale.unlink()
    base = settings.public_url or f"http://{settings.host}:{_web_port(settings)}"  # where `web` (below) listens
    mode = f"dry-run (see `tocsin outbox` or {base}/outbox)" if settings.is_dry_run else "live"
    click.echo(f"\nWebhook URL: {base}/webhooks/mastodon\nSecret:      {secret}\nMode:        {mode}\n", err=True)

    def process(role: str) -> Callable[[], subprocess.Popen[bytes]]:
        command = [sys.executable, "-m", "bot.ops.cli", role]
        return lambda: subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **child_options()
        )

    children: list[Child] = []
    if embedded is not None:
        server = embedded
        children.append(Child("redis", lambda: server.start().running, lambda: tail_file(server.log_path)))
    children.append(Child("web", process("web")))
    children += [Child(f"worker-{n}", process("worker")) for n in range(1, (workers or settings.workers) + 1)]
    if settings.access_token is not None and settings.command_poll_seconds > 0:
        children.append(Child("listener", process("listen")))
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

    from bot.ops.web import create_app

    settings = with_redis(settings_from_environment())
    if settings.webhook_secret is None:
        raise click.ClickException("TOCSIN_WEBHOOK_SECRET is not set (the secret Mastodon signs webhooks with)")
    app = create_app(settings)
    if settings.metrics_port is not None:
        from bot.ops.scrape import serve_locally

        serve_locally(settings.metrics_port, settings.redis_url or "")
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or _web_port(settings),
        log_level="warning",
        access_log=False,
        proxy_headers=True,
    )


@main.command()
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's).")
def worker(burst: bool, name: str | None) -> None:
    """A worker: drains events, sends alerts, runs the sweep. Run as many as you like on one Redis."""
    from bot.ops.worker import run_worker

    run_worker(with_redis(settings_from_environment()), burst=burst, name=name)


@main.command()
def listen() -> None:
    """Hold the instance's notification stream and queue moderators' commands as they arrive."""
    from bot.dm.mentions import listen as listen_for_mentions

    settings = with_redis(settings_from_environment())
    if settings.access_token is None or settings.command_poll_seconds <= 0:
        # Idle rather than exit: a Procfile runner (honcho, foreman) stops every process when one exits.
        log.warning("DM commands are off (no TOCSIN_ACCESS_TOKEN, or TOCSIN_COMMAND_POLL_SECONDS=0): not listening")
        while True:
            time.sleep(3600)
    listen_for_mentions(Context(settings, redis_from_url(settings.redis_url or "")))


@main.command("redis")
def redis_command() -> None:
    """Run only the embedded redis-server in the foreground (for a Procfile on one machine)."""
    settings = settings_from_environment()
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
    from bot.dm.mentions import STREAMING
    from bot.mastodon.actions import is_staff, missing_scopes
    from bot.mastodon.client import MastodonLink, make_client

    problems = 0

    def report(ok: bool, text: str) -> None:
        nonlocal problems
        problems += 0 if ok else 1
        click.echo(f"{'ok ' if ok else 'BAD'}  {text}")

    settings = settings_from_environment()
    for name, line in describe(read_status(settings.data_dir)).items():  # `tocsin serve`'s children
        report(not line.startswith("DOWN"), f"serve: {name} {line}")
    if not settings.redis_url and running_embedded_url(settings.data_dir / "redis") is None:
        report(False, f"Redis: TOCSIN_REDIS_URL is not set and no embedded Redis answers under {settings.data_dir}")
        raise SystemExit(1)
    settings = with_redis(settings)
    connection = redis_from_url(settings.redis_url or "")
    try:
        connection.ping()
        report(True, "Redis answers")
    except redis.RedisError as error:
        report(False, f"Redis: {error}")
        raise SystemExit(1) from None
    from bot.ops.web import recent_workers

    workers = recent_workers(connection)
    report(workers > 0, f"{workers} worker(s) seen in the last {defaults.WORKER_SEEN_SECONDS // 60} minutes")
    waiting = backlog(connection)
    report(
        waiting["stream"] < 10_000,
        f"events waiting: {waiting['stream']} ({waiting['pending']} being processed)",
    )
    failed_events = int(connection.llen(defaults.FAILED_EVENTS))
    report(failed_events == 0, f"failed events: {failed_events} (tocsin failed)")
    rejected: dict[bytes, bytes] = connection.hgetall(defaults.REJECTED_EVENTS)  # type: ignore[assignment]
    if rejected:
        shown = ", ".join(f"{name.decode()} {int(count)}" for name, count in sorted(rejected.items()))
        report(True, f"events rejected as unusable (odd shapes): {shown}")
    for name in defaults.QUEUES:
        queue = Queue(name, connection=connection, serializer=SERIALIZER)
        failed = queue.failed_job_registry.count
        report(failed == 0, f"queue {name}: {queue.count} queued, {failed} failed")
        for job_id in queue.failed_job_registry.get_job_ids()[-3:]:  # the newest reasons
            last = _failure(queue.fetch_job(job_id))
            if last and "PermanentError" in last[0]:
                report(False, f"  {job_id}: {last[0].removeprefix('bot.pipeline.queue.PermanentError: ')}")
    mode = "dry-run" if settings.is_dry_run else "live"
    held = int(connection.hlen(defaults.OUTBOX_HELD))
    paused = f" (PAUSED, {held} post(s) held: tocsin resume)" if connection.exists(defaults.PAUSED) else ""
    report(True, f"mode: {mode}{paused}")
    link = MastodonLink(settings, connection, make_client(settings, connection), is_staff=is_staff)
    if link.client is None:
        report(settings.is_dry_run, "no TOCSIN_MASTODON_URL: alerts are rendered without impact data")
    else:
        try:
            report(True, f"instance answers; statuses up to {link.max_characters()} characters")
            if link.can_read_admin:
                report(True, f"token belongs to account id {link.bot_account_id()}")
                if settings.moderators:  # read now, not from the cache: the doctor says how things are
                    kept, dropped = link.moderator_check(fresh=True)
                    gone = ", ".join("@" + acct for acct in dropped)
                    report(
                        not dropped,
                        f"TOCSIN_MODERATORS not local staff now (no alerts for them): {gone}"
                        if dropped
                        else f"TOCSIN_MODERATORS: all {len(kept)} are local staff now",
                    )
                moderators = link.moderators()
                report(bool(moderators), f"alerts go to: {', '.join('@' + m for m in moderators) or 'nobody'}")
                report(True, f"{len(link.domain_blocks())} domain blocks readable")
                if settings.command_poll_seconds > 0:
                    missing = missing_scopes(link)
                    scopes = f"the token lacks {', '.join(missing)}: refused" if missing else "the token has them"
                    every = f"{settings.command_poll_seconds:g} s"
                    stream = "stream connected" if connection.exists(STREAMING) else "no stream (tocsin listen)"
                    report(not missing, f"DM commands: {stream}, polled every {every}; write scopes: {scopes}")
        except Exception as error:  # doctor reports, it does not crash
            report(False, f"Mastodon: {type(error).__name__}: {error}")
    ctx = Context(settings, connection)
    for family in registry().families:
        for ok, text in family.doctor(ctx) if family.doctor is not None else ():
            report(ok, text)
    raise SystemExit(1 if problems else 0)


@main.command()
@click.option("--days", type=float, default=None, help="How far back (default: each detector's baseline window).")
def backfill(days: float | None) -> None:
    """Seed the detectors' baselines from the admin API (reports, local accounts); no alerts for history."""
    ctx = cli_context()
    if ctx.settings.access_token is None:
        raise click.ClickException(
            "backfill reads the admin API: set TOCSIN_ACCESS_TOKEN (scopes admin:read:reports, admin:read:accounts)"
        )
    for family in registry().families:
        if family.backfill is not None:
            click.echo(family.backfill(ctx, days))


main.add_command(replay_command)

for _family in registry().families:  # the families' own commands (scan, blocks, incident, …)
    for _command in _family.commands:
        main.add_command(_command)


def _failure(job: Job | None) -> list[str]:
    """The last line of a failed job's exception (its reason), if any."""
    result = job.latest_result() if job is not None else None
    return (result.exc_string or "").strip().splitlines()[-1:] if result is not None else []


@main.command()
@click.option("--requeue", is_flag=True, help="Put failed events back on the stream and requeue failed jobs.")
def failed(requeue: bool) -> None:
    """List (or requeue) failed events and jobs."""
    settings = with_redis(settings_from_environment())
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
            last = _failure(job)
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
    settings = with_redis(settings_from_environment())
    for entry in read_log(redis_from_url(settings.redis_url or ""), limit):
        if as_json:
            click.echo(json.dumps(entry, ensure_ascii=False))
            continue
        when = datetime.fromtimestamp(float(entry["at"]), UTC).strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[arg-type]
        click.echo(f"--- {when} {entry['visibility']} {entry['mode']} {entry['key']} ({entry['part']}/{entry['of']})")
        click.echo(str(entry["text"]))


@main.group(invoke_without_command=True)
@click.option("--since", type=click.DateTime(), default=None, help="Only entries from this date (UTC) on.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def audit(click_ctx: click.Context, since: datetime | None, as_json: bool) -> None:
    """The moderators' commands from DMs and what Tocsin did (oldest first)."""
    if click_ctx.invoked_subcommand is not None:
        return
    from bot.core import audit as audit_log

    settings = with_redis(settings_from_environment())
    start = since.replace(tzinfo=UTC).timestamp() if since else None
    for entry in audit_log.read(redis_from_url(settings.redis_url or ""), start):
        click.echo(audit_log.as_json(entry) if as_json else audit_log.describe(entry))


@audit.command("export")
@click.option("--output", type=click.File("w", encoding="utf-8"), default="-", help="A file (default: stdout).")
def audit_export(output: Any) -> None:
    """The whole audit log as JSON lines (for an archive, or another tool)."""
    from bot.core import audit as audit_log

    settings = with_redis(settings_from_environment())
    for entry in audit_log.read(redis_from_url(settings.redis_url or "")):
        output.write(audit_log.as_json(entry) + "\n")


@main.command("export")
@click.option("--output", type=click.File("w", encoding="utf-8"), default="-", help="A file (default: stdout).")
def export_state(output: Any) -> None:
    """The state that matters (incidents, announcements, proposals, audit log, baselines…) as JSON lines."""
    from bot.ops.backup import export_lines

    settings = with_redis(settings_from_environment())
    connection = redis_from_url(settings.redis_url or "")
    waiting = backlog(connection)
    if waiting["stream"]:
        click.echo(f"note: {waiting['stream']} events not processed yet are not exported", err=True)
    count = -1  # the header line
    for line in export_lines(connection):
        output.write(line + "\n")
        count += 1
    click.echo(f"{count} keys exported", err=True)


@main.command("import")
@click.argument("source", type=click.File("r", encoding="utf-8"))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def import_state(source: Any, yes: bool) -> None:
    """Write back an export (each key it holds replaces the key of that name)."""
    from bot.ops.backup import import_lines

    settings = with_redis(settings_from_environment())
    if not yes:
        click.confirm(f"Replace the keys of this export in {settings.redis_url}?", abort=True)
    try:
        written = import_lines(redis_from_url(settings.redis_url or ""), source)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{written} keys imported")


@main.command()
def pause() -> None:
    """Panic stop: hold posts back (shown in the outbox) until `tocsin resume`."""
    from bot.mastodon.outbox import pause as pause_posts

    settings = with_redis(settings_from_environment())
    pause_posts(redis_from_url(settings.redis_url or ""))
    click.echo("paused: nothing will be posted until `tocsin resume`")


@main.command()
@click.option("--drop", is_flag=True, help="Discard the posts held while paused instead of sending them.")
def resume(drop: bool) -> None:
    """End the panic stop: the posts held meanwhile are sent (or, with --drop, discarded)."""
    from bot.dm.held import resume as resume_posts

    settings = with_redis(settings_from_environment())
    _was_paused, count = resume_posts(redis_from_url(settings.redis_url or ""), settings.retry_delays, drop)
    click.echo(f"resumed; {count} held post(s) {'discarded' if drop else 'being sent'}")


if __name__ == "__main__":
    main()
