"""Domain actions: the block poller, incidents following the blocks, announcements, incident pages."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from fastapi.testclient import TestClient

from bot.core import defaults
from bot.mastodon.client import known_instance_domain
from bot.mastodon.context import Context
from bot.ops import sweep
from bot.ops.web import create_app
from bot.pipeline.events import drain_with
from handlers.incidents import announcements
from handlers.incidents import store as incidents
from handlers.incidents.announcements import Held, render_batch
from handlers.incidents.blocks import STATE, Change, diff_blocks, poll
from handlers.incidents.pages import PAGE_CSP
from handlers.incidents.store import BlockChange, public_domain
from tests.helpers import feed, make_settings, run, run_until
from tests.mastodon_double import DOMAIN, MastodonDouble
from tests.waves import burst

PUBLIC = "https://tocsin.example.org"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def actx(make_context: Callable[..., Context]) -> Context:
    """A context that announces at once (hold-off of a second) with public incident links."""
    return make_context(announce_hold_minutes=0, public_url=PUBLIC, rules_url=f"{PUBLIC}/rules")


def block(domain: str, severity: str = "silence", **extra: Any) -> dict[str, Any]:
    return {"domain": domain, "severity": severity, "reject_media": False, "reject_reports": False,
            "obfuscate": False, "public_comment": "", **extra}  # fmt: skip


# --- pure


def test_diff_finds_created_updated_and_removed() -> None:
    old = {"a.example": block("a.example"), "b.example": block("b.example"), "c.example": block("c.example")}
    new = {"a.example": block("a.example"), "b.example": block("b.example", "suspend"), "d.example": block("d.example")}
    changes = diff_blocks(old, new)
    assert [(change.kind, change.domain) for change in changes] == [
        ("created", "d.example"),
        ("updated", "b.example"),
        ("removed", "c.example"),
    ]
    assert diff_blocks(new, new) == []
    assert diff_blocks(old, {**old, "a.example": block("a.example", id="9")}) == []  # only public fields count


@pytest.mark.parametrize(
    ("domain", "shown"),
    [("spam.example", "spam.****ple"), ("a.b", "a.*"), ("social.example.org", "socia*.*******.org")],
)
def test_obfuscated_domains_are_shown_as_mastodon_shows_them(domain: str, shown: str) -> None:
    assert public_domain(domain, obfuscate=True) == shown
    assert public_domain(domain, obfuscate=False) == domain


def change(kind: str, domain: str, severity: str = "silence", **extra: Any) -> BlockChange:
    values: dict[str, Any] = {
        "change_id": f"{kind}-{domain}",
        "kind": kind,
        "domain": domain,
        "shown": domain,
        "severity": severity,
        "previous_severity": None,
        "public_comment": "",
        "advisory": None,
        "at": 0.0,
        "block_created_at": None,
    }
    values.update(extra)
    return BlockChange(**values)


def held(item: BlockChange, correction: bool = False) -> Held:
    from dataclasses import asdict

    return Held(asdict(item), None, False, correction)


VIEW = {"name": "Social Example", "rules_url": None, "contact": None}


def test_announcement_of_new_blocks() -> None:
    items = [
        held(change("created", "spam1.example", public_comment="Crypto spam to our members")),
        held(change("created", "spam2.example")),
        held(change("created", "worse.example", "suspend")),
    ]
    assert render_batch(items, None, f"{PUBLIC}/incidents/x", VIEW, None) == (
        "🛡 Social Example moderation: we have limited spam1.example, spam2.example; suspended worse.example.\n\n"
        "Why: Crypto spam to our members\n\n"
        f"Details: {PUBLIC}/incidents/x"
    )


def test_announcement_of_a_change_and_of_lifts() -> None:
    items = [
        held(change("updated", "spam1.example", "suspend", previous_severity="silence")),
        held(change("removed", "spam2.example")),
        held(change("removed", "oops.example"), correction=True),
    ]
    assert render_batch(items, None, f"{PUBLIC}/incidents/x", VIEW, None) == (
        "Update: spam1.example is now suspended (was limited).\n"
        "spam2.example is no longer limited.\n"
        "Correction: oops.example was limited by mistake. That is undone; sorry for the trouble.\n\n"
        f"Details: {PUBLIC}/incidents/x"
    )


HOSTILE_COMMENT = '<script>alert(1)</script> ask @victim@example.org or see https://evil.example/x "quoted"'


def test_hostile_public_comment_is_neutralized_in_posts() -> None:
    long_domain = "a" * 60 + "." + "b" * 60 + ".example"
    items = [held(change("created", long_domain, public_comment=HOSTILE_COMMENT))]
    text = render_batch(items, None, f"{PUBLIC}/incidents/x", VIEW, None)
    assert "@victim" not in text and "@\u200bvictim@\u200bexample.org" in text  # no mention
    assert "https://evil" not in text and "https[:]//evil.example/x" in text  # no link
    assert long_domain[:100] in text


# --- the poller


def test_first_poll_records_existing_blocks_without_announcing(actx: Context, mastodon: MastodonDouble) -> None:
    mastodon.add_block("old.example")
    assert poll(actx) == 0
    assert actx.redis.xlen(defaults.EVENT_STREAM) == 0
    assert actx.redis.hexists(STATE, "old.example")


def test_changes_made_while_stopped_are_seen_once_across_pages(actx: Context, mastodon: MastodonDouble) -> None:
    for n in range(250):  # more than one page (200)
        mastodon.add_block(f"s{n}.example")
    poll(actx)
    # Tocsin is down; moderators act.
    mastodon.domain_blocks = [item for item in mastodon.domain_blocks if item["domain"] != "s3.example"]
    mastodon.domain_blocks[0]["severity"] = "suspend"
    mastodon.add_block("new.example")
    actx.redis.delete("tocsin:cache:domain-blocks")
    # A restart: a fresh process, the same Redis.
    fresh = Context(actx.settings, actx.redis)
    assert poll(fresh) == 3
    [event] = [json.loads(fields[b"event"]) for _id, fields in actx.redis.xrange(defaults.EVENT_STREAM)]
    assert event["event"] == "domain_block.changes"  # one poll, one event: one moderator action
    assert sorted((change["kind"], change["domain"]) for change in event["object"]["changes"]) == [
        ("created", "new.example"),
        ("removed", "s3.example"),
        ("updated", "s0.example"),
    ]
    assert all("private_comment" not in change for change in event["object"]["changes"])
    assert poll(fresh) == 0  # nothing new: nothing twice


def test_two_pollers_emit_a_change_once(actx: Context, mastodon: MastodonDouble) -> None:
    poll(actx)
    mastodon.add_block("new.example")
    stale = {key.decode(): json.loads(value) for key, value in actx.redis.hgetall(STATE).items()}
    assert poll(actx) == 1
    # A second poller that read the state before the first one wrote it: its compare-and-set fails.
    from handlers.incidents import blocks as domain_blocks

    [late] = diff_blocks(stale, {"new.example": domain_blocks.public_fields(mastodon.domain_blocks[0])})
    assert late == Change("created", "new.example", None, late.new)
    emit = domain_blocks.EMIT_CHANGES
    keys = [STATE, defaults.EVENT_STREAM, defaults.DRAIN_FLAG]
    assert emit(actx.redis, keys, ["{}", 5, "new.example", "", "{}", "other.example", "", "{}"]) == 0
    assert actx.redis.xlen(defaults.EVENT_STREAM) == 1
    assert not actx.redis.hexists(STATE, "other.example")  # all or nothing


# --- end to end: blocks in the double → incident → announcements → pages


def statuses_public(mastodon: MastodonDouble) -> list[dict[str, Any]]:
    return [status for status in mastodon.statuses if status["visibility"] == "public"]


def settle(ctx: Context) -> None:
    """What the workers do: poll, drain the stream, run the announcement jobs when due."""
    poll(ctx)
    drain_with(ctx)
    run_until(ctx.redis, lambda: ctx.redis.zcard(announcements.PENDING) == 0, timeout=20)


@pytest.mark.slow  # waits out the one-second announcement hold four times
def test_spam_wave_blocks_are_announced_together_followed_and_resolved_once(
    actx: Context, mastodon: MastodonDouble
) -> None:
    poll(actx)  # Tocsin was running before the wave
    feed(actx, burst(NOW, "spam1.example", reports=40, hours=1))  # a report surge is open for spam1.example
    mastodon.add_block("spam1.example", public_comment="Crypto spam sent to our members")
    mastodon.add_block("spam2.example", private_comment="second wave, ticket 42")
    settle(actx)

    [first] = statuses_public(mastodon)
    [incident] = incidents.list_incidents(actx.redis)
    assert incident.cause == "spam wave" and incident.status == "open"
    assert first["text"] == (
        f"🛡 {DOMAIN} moderation: we have limited spam1.example, spam2.example.\n\n"
        "Why: Crypto spam sent to our members\n\n"
        f"Our rules: {PUBLIC}/rules\n\n"
        f"Details: {PUBLIC}/incidents/{incident.slug}"
    )
    assert "ticket 42" not in first["text"]  # private comments are never published
    assert {server.domain for server in incident.servers} == {"spam1.example", "spam2.example"}
    with TestClient(create_app(actx.settings)) as client:
        page = client.get(f"/incidents/{incident.slug}").text
    assert "spam1.example" in page and "spam2.example" in page and "limited" in page

    mastodon.domain_blocks = [item for item in mastodon.domain_blocks if item["domain"] != "spam2.example"]
    actx.redis.delete("tocsin:cache:domain-blocks")
    settle(actx)
    update = statuses_public(mastodon)[-1]
    assert "spam2.example" in update["text"] and update["in_reply_to_id"] == first["id"]  # in the thread

    mastodon.domain_blocks = []
    settle(actx)
    *_, lifted, resolved = statuses_public(mastodon)
    assert "spam1.example" in lifted["text"]
    assert resolved["text"].startswith("✅ Spam wave: all servers un-limited; incident resolved.")
    assert resolved["in_reply_to_id"] == lifted["id"]
    assert incidents.load(actx.redis, incident.slug).status == "resolved"  # type: ignore[union-attr]

    settle(actx)
    settle(Context(actx.settings, actx.redis))  # a restart: nothing posted twice
    assert len(statuses_public(mastodon)) == 4


@pytest.mark.slow  # waits out the one-second announcement hold twice, in each of four orders
@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 0, 2), (2, 0, 1)])
def test_blocks_made_together_are_one_announcement_whatever_order_they_are_listed_in(
    actx: Context, mastodon: MastodonDouble, order: tuple[int, int, int]
) -> None:
    """Only the middle one has a report surge; the others share its public comment. Each order of the
    API's listing gives one incident with all three and one top-level post linking it."""
    poll(actx)
    feed(actx, burst(NOW, "mmm-spam.example", reports=40, hours=1))
    domains = ["aaa-spam.example", "mmm-spam.example", "zzz-spam.example"]
    for index in order:
        mastodon.add_block(domains[index], public_comment="Crypto spam wave")
    settle(actx)
    [post] = statuses_public(mastodon)
    [incident] = incidents.list_incidents(actx.redis)
    assert {server.domain for server in incident.servers} == set(domains)
    assert "we have limited aaa-spam.example, mmm-spam.example, zzz-spam.example." in post["text"]
    assert post["text"].endswith(f"Details: {PUBLIC}/incidents/{incident.slug}")

    mastodon.domain_blocks = [item for item in mastodon.domain_blocks if item["domain"] == "mmm-spam.example"]
    settle(actx)  # the wave passed for two of them: lifted, neutrally, in the incident's thread
    lifted = statuses_public(mastodon)[-1]
    assert lifted["in_reply_to_id"] == post["id"]
    assert lifted["text"].startswith("Update: aaa-spam.example is no longer limited.\nzzz-spam.example is no longer")
    assert "mistake" not in lifted["text"] and "sorry" not in lifted["text"]


@pytest.mark.slow  # waits out the one-second announcement hold twice
def test_a_later_block_with_the_same_public_comment_joins_the_open_incident(
    actx: Context, mastodon: MastodonDouble
) -> None:
    poll(actx)
    feed(actx, burst(NOW, "first.example", reports=40, hours=1))
    mastodon.add_block("first.example", public_comment="Crypto spam wave")
    settle(actx)
    actx.redis.delete(incidents.BY_DOMAIN)  # nothing else links the next one to it
    mastodon.add_block("second.example", public_comment="Crypto spam wave")
    settle(actx)
    [incident] = incidents.list_incidents(actx.redis)
    assert {server.domain for server in incident.servers} == {"first.example", "second.example"}


@pytest.mark.slow  # waits out the one-second announcement hold twice
def test_a_lift_is_a_correction_only_when_a_moderator_says_so(actx: Context, mastodon: MastodonDouble) -> None:
    poll(actx)
    mastodon.add_block("ordinary.example", "suspend", public_comment="Harassment")
    mastodon.add_block("oops.example", "suspend", public_comment="Harassment")
    settle(actx)
    # A moderator marks one block as a mistake (in its private comment), then lifts both.
    next(item for item in mastodon.domain_blocks if item["domain"] == "oops.example")["private_comment"] = (
        "wrong server [tocsin correction]"
    )
    assert poll(actx) == 0  # the marker is recorded, not announced
    mastodon.domain_blocks = []
    settle(actx)
    lifts = statuses_public(mastodon)[-1]["text"]
    assert "ordinary.example is no longer suspended." in lifts
    assert "Correction: oops.example was suspended by mistake. That is undone; sorry for the trouble." in lifts
    assert "wrong server" not in lifts  # the private comment itself is never published


def test_a_correction_said_during_the_hold_rewords_post_and_timeline(
    actx: Context, mastodon: MastodonDouble, make_context: Callable[..., Context]
) -> None:
    slug = incidents.open_incident(actx.redis, "policy", "Threads", "Policy.", NOW.timestamp())
    incidents.attach(actx.redis, slug, "threads.example")
    poll(actx)
    mastodon.add_block("threads.example", "suspend")
    settle(actx)
    slow = make_context(announce_hold_minutes=10, public_url=PUBLIC)
    mastodon.domain_blocks = []
    poll(slow)
    drain_with(slow)
    [(batch_id, _due, _items)] = announcements.pending(slow.redis)
    incident = incidents.load(slow.redis, slug)
    assert incident is not None and incident.timeline[-1][1] == "threads.example: lifted."
    assert announcements.mark_correction(slow.redis, batch_id, "threads.example") == 1
    announcements.post_batch(batch_id)
    assert "Correction: threads.example was suspended by mistake." in statuses_public(mastodon)[1]["text"]
    texts = [text for _at, text in incidents.load(slow.redis, slug).timeline]  # type: ignore[union-attr]
    assert "threads.example: lifted (it was a mistake)." in texts


def test_a_held_announcement_can_be_cancelled(make_context: Callable[..., Context], mastodon: MastodonDouble) -> None:
    slow = make_context(announce_hold_minutes=10)
    poll(slow)
    mastodon.add_block("mistake.example")
    poll(slow)
    drain_with(slow)
    [(batch_id, _due, items)] = announcements.pending(slow.redis)
    assert [item.block.domain for item in items] == ["mistake.example"]
    assert announcements.cancel(slow.redis, batch_id) == 1
    announcements.post_batch(batch_id)
    assert mastodon.statuses == []


@pytest.mark.slow  # waits out the one-second announcement hold
def test_a_block_made_by_hand_for_a_scan_proposal_opens_the_advisory_incident(
    actx: Context, mastodon: MastodonDouble
) -> None:
    from handlers.shared import proposals

    poll(actx)
    proposals.remember(actx.redis, {"old-pixelfed.example": "CVE-2025-30741"})  # what a scan proposed
    mastodon.add_block("old-pixelfed.example", "suspend")  # a moderator imported the CSV in the admin UI
    settle(actx)
    [incident] = incidents.list_incidents(actx.redis)
    assert (incident.cause, incident.advisory) == ("vulnerability", "CVE-2025-30741")
    assert incident.title == "Unpatched Pixelfed servers (CVE-2025-30741)"
    [post] = statuses_public(mastodon)
    assert "we have suspended old-pixelfed.example" in post["text"]
    assert "Why: Pixelfed before 0.12.5" in post["text"]


def details_link(post: dict[str, Any]) -> str:
    return post["text"].rsplit("Details: ", 1)[1].strip()


@pytest.mark.slow  # waits out the one-second announcement hold
def test_unrelated_block_is_announced_without_an_incident(actx: Context, mastodon: MastodonDouble) -> None:
    poll(actx)
    mastodon.add_block("policy.example", "suspend", obfuscate=True, public_comment="Hate speech")
    settle(actx)
    [post] = statuses_public(mastodon)
    assert "suspended poli**.****ple" in post["text"] and "policy.example" not in post["text"]
    assert details_link(post).startswith(f"{PUBLIC}/incidents/other#")
    assert "policy" not in details_link(post)  # the anchor is made of what the public sees
    assert incidents.list_incidents(actx.redis) == []


WEB_UI_COMMENT = "Crypto spam wave: limited until the spam stops"


@pytest.mark.slow  # waits out the one-second announcement hold twice
def test_a_block_made_in_the_web_ui_is_on_the_page_its_post_links(actx: Context, mastodon: MastodonDouble) -> None:
    """A moderator limits a server in Mastodon's web UI, no surge or proposal behind it: the post's link
    leads to a public entry that names the server, the reason and the date — in the page, its JSON and
    the feed — and the lift is added to the same list."""
    poll(actx)
    mastodon.add_block("world.example", public_comment=WEB_UI_COMMENT)
    settle(actx)
    [post] = statuses_public(mastodon)
    assert post["text"].startswith(f"🛡 {DOMAIN} moderation: we have limited world.example.")
    link = details_link(post)
    path, anchor = link.removeprefix(PUBLIC).split("#")
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert anchor.startswith(f"{day}-world-example-")
    with TestClient(create_app(actx.settings)) as client:
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-security-policy"] == PAGE_CSP
        [row] = re.findall(rf'<tr id="{re.escape(anchor)}">(.*?)</tr>', page.text)
        assert "world.example" in row and "limited" in row and WEB_UI_COMMENT in row and day in row
        listing = client.get("/incidents").text
        assert "No incidents so far" not in listing and f'id="{anchor}"' in listing and WEB_UI_COMMENT in listing
        [entry] = client.get(f"{path}.json").json()["entries"]
        assert entry == {"url": link, "at": entry["at"], "domain": "world.example", "action": "limited",
                         "reason": WEB_UI_COMMENT}  # fmt: skip
        assert entry["at"].startswith(day)
        root = ElementTree.fromstring(client.get("/incidents.atom").content)
        namespace = "{http://www.w3.org/2005/Atom}"
        [feed_entry] = root.findall(f"{namespace}entry")
        assert feed_entry.find(f"{namespace}id").text == link  # type: ignore[union-attr]
        assert WEB_UI_COMMENT in feed_entry.find(f"{namespace}summary").text  # type: ignore[union-attr,operator]

    mastodon.domain_blocks = []
    settle(actx)
    lift = statuses_public(mastodon)[-1]
    assert "world.example is no longer limited" in lift["text"]
    with TestClient(create_app(actx.settings)) as client:
        lift_path, lift_anchor = details_link(lift).removeprefix(PUBLIC).split("#")
        page = client.get(lift_path).text
    [row] = re.findall(rf'<tr id="{re.escape(lift_anchor)}">(.*?)</tr>', page)
    assert "world.example" in row and "no longer limited" in row
    assert page.index(lift_anchor) < page.index(anchor)  # newest first

    settle(Context(actx.settings, actx.redis))  # a restart and a replayed job: each entry once
    announcements.post_batch("no-such-batch")
    assert len(incidents.list_other(actx.redis)) == 2


def test_the_other_list_keeps_its_newest_entries(connection: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(incidents, "OTHER_CAP", 5)
    for n in range(8):
        item = change("created", f"s{n}.example", public_comment=f"reason {n}", at=1000.0 + n, change_id=f"c{n}")
        incidents.record_other(connection, [(item, False)])
        incidents.record_other(connection, [(item, False)])  # the same change twice: one entry
    assert [other.shown for other in incidents.list_other(connection)] == [f"s{n}.example" for n in range(7, 2, -1)]
    assert connection.hlen(incidents.OTHER) == 5


@pytest.mark.slow  # waits out the one-second announcement hold
def test_the_instance_is_named_by_its_own_domain_when_no_name_is_set(
    make_context: Callable[..., Context], mastodon: MastodonDouble
) -> None:
    """TOCSIN_MASTODON_URL is http://127.0.0.1:…: posts and pages name the instance by the domain its API
    gives (GET /api/v2/instance), not by that host; TOCSIN_INSTANCE_NAME still wins."""
    ctx = make_context(announce_hold_minutes=0, public_url=PUBLIC)
    assert ctx.settings.instance_name is None and ctx.settings.mastodon_url.startswith("http://127.0.0.1:")  # type: ignore[union-attr]
    with TestClient(create_app(ctx.settings)) as client:
        assert "<title>Moderation incidents · 127.0.0.1</title>" in client.get("/incidents").text  # not read yet
        sweep.run()  # the periodic sweep (and a starting worker) read it; a page never asks Mastodon
        assert known_instance_domain(ctx.redis) == DOMAIN
        assert f"<title>Moderation incidents · {DOMAIN}</title>" in client.get("/incidents").text
        assert f"<title>{DOMAIN} moderation incidents</title>" in client.get("/incidents.atom").text
    poll(ctx)
    mastodon.add_block("any.example")
    settle(ctx)
    assert statuses_public(mastodon)[-1]["text"].startswith(f"🛡 {DOMAIN} moderation: we have limited any.example.")
    named = make_context(instance_name="Example Social")
    with TestClient(create_app(named.settings)) as client:
        assert "<title>Moderation incidents · Example Social</title>" in client.get("/incidents").text


def test_an_unreadable_instance_domain_is_asked_again_only_after_a_pause(
    ctx: Context, mastodon: MastodonDouble
) -> None:
    mastodon.down = True
    assert ctx.mastodon.refresh_instance_domain() is None
    asked = len(mastodon.requests)
    assert ctx.mastodon.refresh_instance_domain() is None  # the next sweep, a minute later
    assert len(mastodon.requests) == asked
    mastodon.down = False
    ctx.redis.delete("tocsin:cache:instance-domain:failed")  # the pause is over
    assert ctx.mastodon.refresh_instance_domain() == DOMAIN


def test_incident_pages_json_and_feed(actx: Context, mastodon: MastodonDouble, tmp_path: Path) -> None:
    poll(actx)
    slug = incidents.open_incident(actx.redis, "policy", "Threads", HOSTILE_COMMENT, NOW.timestamp())
    incidents.attach(actx.redis, slug, "threads.example")
    mastodon.add_block("threads.example", "suspend", public_comment=HOSTILE_COMMENT)
    long_domain = "x" * 120 + ".example"
    incidents.attach(actx.redis, slug, long_domain)
    mastodon.add_block(long_domain, "silence")
    settle(actx)
    with TestClient(create_app(actx.settings)) as client:
        listing = client.get("/incidents")
        assert listing.status_code == 200 and "Threads" in listing.text
        assert listing.headers["content-security-policy"] == PAGE_CSP
        page = client.get(f"/incidents/{slug}")
        assert page.status_code == 200
        html = page.text
        assert "<script>" not in html and "&lt;script&gt;" in html  # escaped
        assert "threads.example" in html and long_domain in html and "suspended" in html
        assert re.search(r"<svg[^>]+role=\"img\"", html) and '<title id="chart-title">' in html  # drawn,
        assert "<figcaption>0 reports, at most 0 in one hour.</figcaption>" in html  # empty: no reports there
        data = client.get(f"/incidents/{slug}.json").json()
        assert {server["domain"] for server in data["servers"]} == {"threads.example", long_domain}
        assert data["status"] == "open"
        assert "private_comment" not in json.dumps(data)
        feed_xml = client.get("/incidents.atom")
        assert feed_xml.headers["content-type"].startswith("application/atom+xml")
        root = ElementTree.fromstring(feed_xml.content)
        namespace = "{http://www.w3.org/2005/Atom}"
        assert root.tag == f"{namespace}feed"
        assert root.find(f"{namespace}entry/{namespace}title").text.startswith("Threads")  # type: ignore[union-attr]
        assert client.get("/incidents/nope").status_code == 404
        assert client.get("/incidents/..%2Fetc").status_code == 404
        assert client.get("/incidents.css").headers["content-type"].startswith("text/css")
    [post] = statuses_public(mastodon)
    assert "@victim" not in post["text"] and "<script>" in post["text"]  # a post is plain text: neutralized, not HTML


@pytest.mark.slow  # waits out the one-second announcement hold (test_report_messages.py overrides a template fast)
def test_operators_override_page_and_post_templates(
    tmp_path: Path, make_context: Callable[..., Context], mastodon: MastodonDouble
) -> None:
    overrides = tmp_path / "my-templates"
    overrides.mkdir()
    (overrides / "incidents.html.j2").write_text(
        '{% extends "incidents_base.html.j2" %}{% block title %}Ours{% endblock %}'
        "{% block main %}<p>Our own list of {{ incidents | length }} incidents.</p>{% endblock %}"
    )
    (overrides / "announce_blocks.txt.j2").write_text("Heads up from {{ instance.name }}: {{ link }}")
    ctx = make_context(template_dir=overrides, announce_hold_minutes=0, instance_name="Example Social")
    with TestClient(create_app(ctx.settings)) as client:
        assert "Our own list of 0 incidents." in client.get("/incidents").text
    poll(ctx)
    mastodon.add_block("any.example")
    settle(ctx)
    [text] = [status["text"] for status in statuses_public(mastodon)]
    assert re.fullmatch(rf"Heads up from Example Social: {mastodon.url}/incidents/other#[0-9-]+any-example-\w+", text)


def test_operator_commands_for_incidents_and_held_announcements(
    tocsin: CliRunner, connection: redis.Redis, mastodon: MastodonDouble, make_context: Callable[..., Context]
) -> None:
    slug = run(tocsin, "incident", "open", "--title", "Threads", "--summary", "Policy.", "threads.example").output
    slug = slug.split()[-1]
    assert run(tocsin, "blocks", "poll").output.strip() == "0 change(s) queued"  # the first poll records
    mastodon.add_block("threads.example", "suspend")
    assert run(tocsin, "blocks", "poll").output.strip() == "1 change(s) queued"
    drain_with(make_context(announce_hold_minutes=10))
    listing = run(tocsin, "announcements").output
    batch_id = listing.split()[1].rstrip(",")
    assert "created  threads.example (suspend)" in listing
    assert "1 change(s) will not be announced" in run(tocsin, "announcements", "cancel", batch_id).output
    assert "[cancelled]" in run(tocsin, "announcements").output
    assert f"{slug}  open" in run(tocsin, "incident", "list").output
    assert "threads.example (suspended)" in run(tocsin, "incident", "list").output
    run(tocsin, "incident", "status", slug, "monitoring", "--note", "Watching their policy.")
    incident = incidents.load(connection, slug)
    assert incident is not None and incident.status == "monitoring"
    assert incident.timeline[-1][1] == "Watching their policy."
    assert tocsin.invoke(main_command(), ["incident", "status", "nope", "resolved"]).exit_code != 0


def main_command() -> Any:
    from bot.ops.cli import main

    return main


def test_pages_answer_503_while_redis_is_unreachable(tmp_path: Path) -> None:
    from bot.ops.embedded_redis import free_port

    settings = make_settings(tmp_path, f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(settings)) as client:
        assert client.get("/incidents").status_code == 503
        assert client.get("/incidents/2026-11-22-spam-wave.json").status_code == 503


def test_an_incident_timeline_keeps_its_newest_entries_and_its_opening(connection: redis.Redis) -> None:
    slug = incidents.open_incident(connection, "policy", "Long", "Summary.", 1000.0)
    for n in range(incidents.TIMELINE_CAP + 20):
        incidents.add_timeline(connection, slug, f"entry-{n}", 2000.0 + n, f"change {n}")
    incident = incidents.load(connection, slug)
    assert incident is not None and len(incident.timeline) == incidents.TIMELINE_CAP
    texts = [text for _at, text in incident.timeline]
    assert texts[0] == "Incident opened: Long." and texts[-1] == f"change {incidents.TIMELINE_CAP + 19}"
    assert "change 20" not in texts and "change 21" in texts
