"""The brief's Pixelfed incident, replayed: a fleet of local HTTPS peers, the Mastodon double, real Redis.

96 Pixelfed servers (33 on 0.12.5, pixelfed.social among them; 46 on 0.12.4; 17 older), a few Mastodon
servers, and some that cannot be read. The scan must report 33 / 46 / 17 → 63 vulnerable, name
pixelfed.social as fixed and large, propose blocks as Mastodon CSV, apply them tagged, and tell the
moderators when a blocked server upgrades.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.csvsafe import CELL_MAX, FORMULA_START
from bot.core.domains import NotADomain, normalized_domain
from bot.core.fetching import Fetcher
from bot.mastodon.client import Impact
from bot.mastodon.context import Context
from bot.mastodon.outbox import split_post
from handlers.reports.readers import servers_seen
from handlers.reports.surge import ACTIVE_BUCKETS
from handlers.scan.findings import ALL_CLEAR_SIZED, Exposure, Finding, ScanReport, blocks_csv
from handlers.scan.findings import propose as propose_blocks
from handlers.scan.messages import (
    outreach_message,
    propose,
    render_report,
    send_scan_messages,
)
from handlers.scan.runs import run_scan, schedule_scan
from handlers.shared.advisories import EXPOSURES, SEVERITIES, Advisory, parse_version
from handlers.shared.block_tags import CSV_HEADER, read_blocks_csv
from handlers.shared.peers import peer_domains
from tests.helpers import run, run_jobs
from tests.mastodon_double import MastodonDouble
from tests.peers import Peer, PeerFleet, nodeinfo

FIXED = ["pixelfed.social"] + [f"pf-fixed-{n}.example" for n in range(32)]
ON_0124 = [f"pf-0124-{n}.example" for n in range(46)]
OLDER = [f"pf-old-{n}.example" for n in range(17)]
MASTODON = {
    "masto-current.example": "4.6.5",
    "masto-glitch.example": "4.2.5+glitch",
    "masto-old.example": "4.1.12",  # CVE-2024-23832 (critical)
    "masto-quotes.example": "4.4.14",  # CVE-2026-33869 (moderate)
}
UNREADABLE = {
    "down.example": Peer(hang=True),
    "gone.example": Peer(status=410),
    "html.example": Peer(body=b"<p>", content_type="text/html"),
}
NOT_IN_FLEET = ["nxdomain.example"]
# Large, well-followed Mastodon servers (and forks) on versions that only advisories exposing nothing
# of ours affect (quotes on 4.4/4.5): blocking them would hurt this instance and protect no one.
LARGE = {
    **{f"big-{n}.example": ["4.4.14", "4.5.7", "4.4.10+glitch", "4.5.2"][n % 4] for n in range(24)},
    "town.example": ("hometown", "4.4.9+hometown-1.1.3"),
    "chuckya.example": ("chuckya", "4.5.2+glitch+chuckya"),
    # a nightly without its date, of the branch the fix reached during development: it may predate the fix
    "nightly.example": "4.6.0-nightly",
    "hash.example": "582a1b3",  # a bare git hash: unreadable, never 582.0.0
    "current.example": "4.6.5",
    "oldtown.example": ("hometown", "1.0.7+3.5.5"),  # Hometown's old format: Mastodon 3.5.5, takeover advisory
}  # no certificate for it here: a TLS failure, like a broken peer


@pytest.fixture(scope="module")
def fleet() -> Iterator[PeerFleet]:
    fleet = build_fleet()
    fleet.start()
    yield fleet
    fleet.stop()


def build_fleet() -> PeerFleet:
    """The brief's Pixelfed fleet, some Mastodon servers, the large ones, the unreadable ones (not started)."""
    names = FIXED + ON_0124 + OLDER + list(MASTODON) + list(UNREADABLE) + list(LARGE)
    fleet = PeerFleet(names)
    for n, (domain, software) in enumerate(LARGE.items()):
        name, version = software if isinstance(software, tuple) else ("mastodon", software)
        active = {"users": {"total": 90000, "activeMonth": 5000 + 100 * n}}  # as large as they are followed
        fleet.peers[domain] = Peer(nodeinfo(name, version, usage=active))
    # micro.blog-style discovery: `links` is one object, not a list
    fleet.peers["current.example"].discovery = {
        "links": {
            "rel": "http://nodeinfo.diaspora.software/ns/schema/2.0",
            "href": "https://current.example/nodeinfo/2.0",
        }
    }
    for domain in FIXED:
        fleet.peers[domain] = Peer(nodeinfo("pixelfed", "0.12.5"))
    # the flagship is the most active by its NodeInfo, as it is the most followed
    big = {"users": {"total": 300000, "activeMonth": 20000}, "localPosts": 9_000_000}
    fleet.peers["pixelfed.social"] = Peer(nodeinfo("pixelfed", "0.12.5", usage=big))
    for domain in ON_0124:
        fleet.peers[domain] = Peer(nodeinfo("pixelfed", "0.12.4"))
    for n, domain in enumerate(OLDER):
        fleet.peers[domain] = Peer(nodeinfo("pixelfed", ["0.11.9", "0.11.4", "0.10.10"][n % 3]))
    for domain, version in MASTODON.items():
        fleet.peers[domain] = Peer(nodeinfo("mastodon", version))
    fleet.peers.update(UNREADABLE)
    fleet.peers["pf-old-0.example"].contact = {
        "email": "admin@pf-old-0.example",
        "account": {"id": "1", "username": "admin", "acct": "admin", "url": "https://pf-old-0.example/admin"},
    }
    return fleet


@pytest.fixture
def scanning(
    ctx: Context, mastodon: MastodonDouble, fleet: PeerFleet, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MastodonDouble]:
    """The instance federates with the fleet; its peers resolve to the fleet (there is no real DNS here)."""
    federate_with(mastodon, fleet, monkeypatch)
    yield mastodon


def federate_with(mastodon: MastodonDouble, fleet: PeerFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "handlers.shared.nodeinfo.make_fetcher",
        lambda settings: Fetcher(
            fleet.policy(total_timeout=1.5), resolver=fleet.resolver, ssl_context=fleet.client_context()
        ),
    )
    mastodon.peers = FIXED + ON_0124 + OLDER + list(MASTODON) + list(UNREADABLE) + NOT_IN_FLEET
    mastodon.max_characters = 5000
    mastodon.rate_limit = 10_000  # not what these tests are about (tests/test_ratelimit.py, test_scan_runs.py)
    for n, domain in enumerate(ON_0124 + OLDER):
        mastodon.measures[domain] = (7, 3, 20) if n in (5, 30) else (n % 6, (n * 7) % 6, 10)  # two with 6-10
    mastodon.measures["pixelfed.social"] = (1073, 864, 5200)
    mastodon.measures["masto-old.example"] = (50, 40, 300)
    mastodon.measures["masto-quotes.example"] = (30, 25, 200)


def finding(report: ScanReport, advisory_id: str) -> Any:
    return next(item for item in report.findings if item.advisory.id == advisory_id)


@pytest.mark.slow  # a scan of the whole fleet, its hanging peer to the deadline
def test_the_pixelfed_breakdown_of_the_brief(ctx: Context, scanning: MastodonDouble) -> None:
    report = run_scan(ctx)
    pixelfed = finding(report, "CVE-2025-30741")
    assert (pixelfed.total, len(pixelfed.fixed), len(pixelfed.vulnerable)) == (96, 33, 63)
    assert pixelfed.version_groups() == [("0.12.4", 46), ("older versions", 17)]
    assert report.scanned == 96 + 4 + 3 + 1
    assert report.unreadable == {"timeout": 1, "gone": 1, "not-json": 1, "tls": 1}

    send_scan_messages(ctx, report)
    [text] = scanning.direct_texts()
    # The biggest peer's all-clear, as the brief's report led with it, with its follows both ways.
    all_clear = "pixelfed.social runs 0.12.5: not affected, not proposed (we follow 1,073 there; 864 follow us)."
    assert (
        "CVE-2025-30741 (high) exposes our members' followers-only posts. " + all_clear + " Vulnerable: 63 of 96 "
        "Pixelfed servers. Largest: pf-0124-30.example (we follow 7 there, 3 follow us)." in text
    )
    assert [item.domain for item in pixelfed.all_clear][:1] == ["pixelfed.social"]
    assert "CVE-2023-36460" not in text  # no server it affects: not in the DM
    assert (
        "1. Suspend 63: a block stops our followers-only posts reaching them "
        "(list: tocsin scan --advisory CVE-2025-30741)." in text
    )
    # A critical advisory whose harm a block does not stop (forged activities go to the vulnerable
    # server, never through us): no block, and the DM says why.
    assert report.proposals["CVE-2024-23832"] == []
    # A moderate advisory that harms only the vulnerable server: no block either, its admins are told.
    assert (
        "No block proposed: a block would not stop this: tell their admins (tocsin outreach DOMAIN). "
        "CVE-2024-23832 (critical) exposes our members' accounts as seen there: 1 Mastodon server "
        "(masto-old.example). CVE-2026-33869 (moderate) harms only theirs: 1 Mastodon server (masto-quotes.example)."
        in text
    )
    assert text.endswith("\n\nReply “approve” to do it, or “dismiss”.")  # the one item is numbered above
    assert len(scanning.direct_threads()[0]) == 1  # the brief's fleet: one status (at 5,000 characters)
    # `approve` would carry out the Pixelfed item: its blocks, tagged and explained by the advisory.
    items = propose(report).items
    assert [item.label for item in items] == ["CVE-2025-30741: suspend 63 servers"]
    action = items[0].actions[0]
    [proposed] = [item for item in report.proposals["CVE-2025-30741"] if item.domain == action.target]
    assert (action.kind, action.severity, action.tag) == ("domain_block", "suspend", "[tocsin advisory CVE-2025-30741]")
    assert action.public_comment == proposed.public_comment and "CVE-2025-30741" in proposed.public_comment
    mods = tuple(ctx.mastodon.moderators())
    parts = split_post(render_report(report, "https://x.example", 10), mods, 500)  # at vanilla's 500
    assert len(parts) <= 2 and any(all_clear in part for part in parts)
    assert "pixelfed.social" not in {exposure.domain for exposure in pixelfed.vulnerable}
    assert "pixelfed.social" not in {proposal.domain for proposal in report.proposals["CVE-2025-30741"]}


@pytest.mark.slow  # a scan of the whole fleet, its hanging peer to the deadline
def test_above_the_follow_threshold_a_limit_is_proposed_with_its_cost_never_a_suspension_even_if_critical(
    make_context: Callable[..., Context], scanning: MastodonDouble, tmp_path: Path
) -> None:
    # An operator who judges the Pixelfed flaw critical: severity alone still never cuts 30 follows.
    (tmp_path / "critical.toml").write_text('id = "CVE-2025-30741"\nseverity = "critical"\n')
    ctx = make_context(advisory_dir=tmp_path, moderators=["mod_anna"])
    scanning.measures["pf-0124-7.example"] = (30, 25, 200)
    scanning.measures["masto-old.example"] = (2929, 2100, 9000)  # as mastodon.nl was
    report = run_scan(ctx)
    proposals = {proposal.domain: proposal for proposal in report.proposals["CVE-2025-30741"]}
    assert proposals["pf-0124-7.example"].severity == "silence"
    assert proposals["pf-0124-7.example"].reason == (
        "limit, not suspend: a suspension would cut 30 follows (we follow 30 there; 25 follow us) (more than 10); "
        "a limit keeps those follows, so tell their admins too: tocsin outreach pf-0124-7.example"
    )
    assert {proposal.severity for domain, proposal in proposals.items() if domain != "pf-0124-7.example"} == {"suspend"}
    assert report.proposals["CVE-2026-33869"] == []  # it exposes nothing of ours
    assert report.proposals["CVE-2024-23832"] == []  # a block does not stop forged activities reaching them
    send_scan_messages(ctx, report)
    [text] = scanning.direct_texts()
    assert "1. Suspend 62, limit 1 (more than 10 follows would be cut: tell their admins too): a block stops" in text
    assert "although" not in text


@pytest.mark.slow  # a scan of the whole fleet, its hanging peer to the deadline
def test_a_block_is_proposed_only_where_it_stops_the_harm(tocsin: CliRunner, scanning: MastodonDouble) -> None:
    """CVE-2024-23832 (critical): forged activities go to the vulnerable server, never through us. No
    suspension cutting 2,929 follows; `tocsin scan` says to tell their admins, and why."""
    scanning.measures["masto-old.example"] = (2929, 2100, 9000)
    output = run(tocsin, "scan", "--advisory", "CVE-2024-23832").output
    assert (
        "  block: not proposed: a block would not stop this: tell their admins "
        "(activities forged in our members' names go to them, never through us)" in output
    )
    [row] = [line for line in output.splitlines() if line.lstrip().startswith("masto-old.example")]
    assert row.split()[2:] == ["2929", "2100", "tell", "their", "admins:", "tocsin", "outreach", "masto-old.example"]
    assert "suspend" not in output


@pytest.mark.slow  # a scan of the whole fleet, its hanging peer to the deadline
def test_the_largest_unaffected_servers_are_named_as_an_all_clear(scanning: MastodonDouble, tocsin: CliRunner) -> None:
    import json

    scanning.requests.clear()
    output = run(tocsin, "scan", "--advisory", "CVE-2025-30741").output
    sized = [request for request in scanning.requests if request == ("POST", "/api/v1/admin/measures")]
    assert len(sized) == 63 + ALL_CLEAR_SIZED  # the vulnerable, then the most active unaffected: a few calls
    clear = [line.strip() for line in output.splitlines() if "not affected, not proposed" in line]
    assert len(clear) == ALL_CLEAR_SIZED
    assert clear[0] == "pixelfed.social runs 0.12.5: not affected, not proposed (we follow 1,073 there; 864 follow us)"
    everything = run(tocsin, "scan", "--advisory", "CVE-2025-30741", "--all").output
    clear = [line.strip() for line in everything.splitlines() if "not affected, not proposed" in line]
    assert len(clear) == 33 and clear[0].startswith("pixelfed.social runs 0.12.5")
    assert clear[-1].endswith("(follows unknown)")
    [report] = [json.loads(line) for line in run(tocsin, "scan", "--json").stdout.splitlines() if "report" in line]
    pixelfed = next(item for item in report["report"]["advisories"] if item["id"] == "CVE-2025-30741")
    assert pixelfed["not_affected"][0] == {
        "domain": "pixelfed.social",
        "version": "0.12.5",
        "local_follows": 1073,
        "remote_followers": 864,
        "blocked": None,
    }
    assert len(pixelfed["not_affected"]) == len(pixelfed["fixed"]) == 33 and pixelfed["block_protects"]
    takeover = next(item for item in report["report"]["advisories"] if item["id"] == "CVE-2024-23832")
    assert takeover["not_affected"] == [] and not takeover["block_protects"]  # it proposes nothing


@pytest.mark.slow  # a scan of the whole fleet, its hanging peer to the deadline
def test_large_servers_harmed_only_themselves_are_told_not_blocked_and_the_dm_fits_two_posts(
    ctx: Context, scanning: MastodonDouble
) -> None:
    scanning.peers = [*scanning.peers, *LARGE]
    scanning.max_characters = 500
    for n, domain in enumerate(LARGE):
        scanning.measures[domain] = (2000 + 300 * n, 1500 + 200 * n, 90000)
    report = run_scan(ctx)
    proposed = {proposal.domain for proposals in report.proposals.values() for proposal in proposals}
    assert proposed & set(LARGE) == set()  # no advisory they run is one whose harm a block stops
    quotes = finding(report, "CVE-2026-33869")
    told = [item.domain for item in quotes.outreach]
    assert len(told) == 1 + 24 + 2  # masto-quotes, the 24 big ones, town, chuckya
    assert told[0] == "chuckya.example"  # the most followed first
    assert [item.domain for item in quotes.uncertain] == ["nightly.example"]
    assert "hash.example" in quotes.unparsable and "hash.example" not in {i.domain for i in quotes.fixed}
    assert "current.example" in {item.domain for item in quotes.fixed}  # discovery links as one object
    takeover = finding(report, "CVE-2024-23832")
    assert [item.domain for item in takeover.outreach] == ["oldtown.example", "masto-old.example"]
    assert [item.shown for item in takeover.vulnerable if item.domain == "oldtown.example"] == [
        "Hometown 1.0.7 (Mastodon 3.5.5)"
    ]
    assert "Hometown 1.1.3 (Mastodon 4.4.9)" in {item.shown for item in quotes.vulnerable}

    send_scan_messages(ctx, report)
    [thread] = scanning.direct_threads()
    assert len(thread) <= 2  # one advisory's proposals, 29 servers to tell, the reply that approves
    text = "\n".join(status["text"] for status in thread)
    assert (
        "No block proposed: a block would not stop this: tell their admins (tocsin outreach DOMAIN). "
        "CVE-2023-36460 (critical) harms only theirs: 1 Mastodon server (oldtown.example). CVE-2024-23832 "
        "(critical) exposes our members' accounts as seen there: 2 Mastodon servers (largest oldtown.example). "
        "CVE-2026-33869 (moderate) harms only theirs: 27 Mastodon servers, 1 uncertain (largest chuckya.example)."
        in text
    )
    for status in thread:  # each part ends at a line or between words, and reads on its own
        body = status["text"].rsplit(" (", 1)[0] if len(thread) > 1 else status["text"]
        assert not body[-1].isspace()
        last_line = body.splitlines()[-1]
        assert last_line.endswith((".", ")", ":")) or "Review: tocsin scan --advisory" in last_line


def test_csv_applied_with_tags_then_an_upgrade_is_noticed(
    ctx: Context,
    scanning: MastodonDouble,
    fleet: PeerFleet,
    tocsin: CliRunner,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    csv_path = tmp_path / "blocks.csv"
    output = run(tocsin, "scan", "--advisory", "CVE-2025-30741", "--csv", str(csv_path)).output
    assert "96 servers: 33 fixed, 46 run 0.12.4, 17 run older versions -> 63 vulnerable" in output
    text = csv_path.read_text()
    assert text.splitlines()[0] == ",".join(CSV_HEADER)
    rows = read_blocks_csv(text)
    assert len(rows) == 63 and {row["severity"] for row in rows} == {"suspend"}
    assert "pf-old-3.example" in {row["domain"] for row in rows}

    refused = tocsin.invoke(main_command(), ["blocks", "apply", str(csv_path)], input="n\n")
    assert refused.exit_code != 0 and scanning.domain_blocks == []  # nothing without a moderator's yes
    applied = tocsin.invoke(main_command(), ["blocks", "apply", str(csv_path)], input="y\n")
    assert "63 blocks created" in applied.output
    assert all(
        block["private_comment"].startswith("[tocsin advisory CVE-2025-30741]") for block in scanning.domain_blocks
    )

    monkeypatch.setitem(fleet.peers, "pf-old-3.example", Peer(nodeinfo("pixelfed", "0.12.5")))  # upgraded
    ctx.redis.delete("tocsin:cache:domain-blocks")
    report = run_scan(ctx)  # the peers API now leaves the blocked out; Tocsin's own blocks are re-read
    assert [(block.domain, peer.shown) for block, _advisory, peer in report.refederate] == [
        ("pf-old-3.example", "0.12.5")
    ]
    send_scan_messages(ctx, report)
    send_scan_messages(ctx, report)  # the daily scan again: nothing new, nothing posted
    texts = [text for text in scanning.direct_texts() if "eligible for refederation" in text]
    assert len(texts) == 1
    assert "pf-old-3.example now runs 0.12.5 — eligible for refederation." in texts[0]
    assert texts[0].endswith("Reply “lift pf-old-3.example” to lift the block.")
    lifted = run(tocsin, "blocks", "lift", "pf-old-3.example", "--yes").output
    assert "block lifted" in lifted
    assert "pf-old-3.example" not in {block["domain"] for block in scanning.domain_blocks}


@pytest.mark.slow  # a scan of the whole fleet, its hanging peer to the deadline
def test_json_output_for_machines(scanning: MastodonDouble, tocsin: CliRunner) -> None:
    import json

    lines = [json.loads(line) for line in run(tocsin, "scan", "--json").stdout.splitlines()]
    peers, [last] = lines[:-1], lines[-1:]
    assert len(peers) == 104 and {"peer": "gone.example", "software": None, "version": None, "error": "gone"} in peers
    data = last["report"]
    pixelfed = next(item for item in data["advisories"] if item["id"] == "CVE-2025-30741")
    assert (pixelfed["running"], len(pixelfed["vulnerable"]), len(pixelfed["fixed"])) == (96, 63, 33)
    assert pixelfed["impact"] == {"≤ 5": 61, "6–10": 2}


def test_outreach_uses_the_public_contact_and_sends_only_when_confirmed(
    ctx: Context, scanning: MastodonDouble, tocsin: CliRunner
) -> None:
    message = outreach_message(ctx, "pf-old-0.example")
    assert message.contact_acct == "admin@pf-old-0.example"
    assert message.contact_email == "admin@pf-old-0.example"
    assert "running 0.11.9, which is affected by CVE-2025-30741" in message.text
    assert "upgrade to 0.12.5 or later" in message.text
    result = tocsin.invoke(main_command(), ["outreach", "pf-old-0.example", "--send"], input="y\n")
    assert "sent (1 part(s))" in result.output
    [dm] = scanning.direct_messages()
    assert scanning.recipients(dm) == ["admin@pf-old-0.example"]


def test_without_the_peers_api_the_seen_servers_and_blocks_are_scanned(
    ctx: Context, scanning: MastodonDouble, connection: redis.Redis
) -> None:
    scanning.peers = None  # the admin disabled it: 404
    connection.zadd(ACTIVE_BUCKETS, {"pf-0124-1.example": 1.0, "local": 2.0, "*": 3.0})
    scanning.add_block("pf-0124-2.example", severity="silence")
    assert peer_domains(ctx, ctx.mastodon.domain_blocks(), servers_seen) == ["pf-0124-1.example", "pf-0124-2.example"]


@pytest.mark.slow  # two scans of the whole fleet, its hanging peer to the deadline
def test_daily_scan_runs_once_per_interval_on_a_worker_and_dms_only_news(
    ctx: Context, scanning: MastodonDouble, connection: redis.Redis
) -> None:
    assert schedule_scan(ctx, 1_000_000.0)
    assert not schedule_scan(ctx, 1_000_060.0)  # another worker's sweep a minute later
    run_jobs(connection)
    [text] = scanning.direct_texts()
    assert text.splitlines()[1].startswith("🛡 Peer scan: 104 servers read")
    connection.delete("tocsin:scan:claimed")  # the next day
    assert schedule_scan(ctx, 1_086_400.0)
    run_jobs(connection)
    assert len(scanning.direct_texts()) == 1  # the same proposals: no second DM


def test_csv_quotes_comments() -> None:
    from handlers.scan.findings import Proposal

    text = blocks_csv([Proposal("a.example", "suspend", "", 'Runs "0.12.4", affected', "X")])
    assert read_blocks_csv(text) == [
        {
            "domain": "a.example",
            "severity": "suspend",
            "reject_media": "false",
            "reject_reports": "false",
            "public_comment": 'Runs "0.12.4", affected',
            "obfuscate": "false",
        }
    ]


def main_command() -> Any:
    from bot.ops.cli import main

    return main


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Mastodon.Example", "mastodon.example"),
        ("mastodon.example.", "mastodon.example"),
        (" pixel.example ", "pixel.example"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("spam.****ple", None),
        ("not a host", None),
        ("", None),
        ("a" * 250 + ".example", None),
    ],
)
def test_peer_names_are_one_spelling(raw: str, normal: str | None) -> None:
    if normal is None:  # no server's name: peer_domains leaves it out
        with pytest.raises(NotADomain):
            normalized_domain(raw)
    else:
        assert normalized_domain(raw) == normal


def test_the_peer_list_is_deduplicated_and_only_named_servers_are_sized(ctx: Context, scanning: MastodonDouble) -> None:
    scanning.peers = ["Masto-Old.Example", "masto-old.example.", "masto-current.example", "MASTO-CURRENT.example"]
    assert peer_domains(ctx, [], servers_seen) == ["masto-current.example", "masto-old.example"]
    scanning.requests.clear()
    run_scan(ctx)
    sized = [r for r in scanning.requests if r == ("POST", "/api/v1/admin/measures")]
    assert len(sized) == 1  # masto-old.example (vulnerable); masto-current.example is fixed: not looked up


def test_sizing_names_every_proposal_and_the_most_active_of_the_rest_once_all_is_read() -> None:
    from handlers.scan.findings import find, sizing_targets
    from handlers.shared.advisories import load_advisories, load_forks
    from handlers.shared.nodeinfo import PeerResult, PeerSoftware

    advisories = {advisory.id: advisory for advisory in load_advisories()}
    results = [PeerResult(f"pf{n}.example", PeerSoftware("pixelfed", "0.12.4")) for n in range(3)] + [
        PeerResult(f"quotes{n}.example", PeerSoftware("mastodon", "4.5.7", active_users=n)) for n in range(8)
    ]
    findings = [find(advisories[id_], results, load_forks()) for id_ in ("CVE-2025-30741", "CVE-2026-33869")]
    proposals = ["pf0.example", "pf1.example", "pf2.example"]  # exposes our members' posts: every one
    assert sizing_targets(findings, complete=False) == proposals
    assert sizing_targets(findings) == proposals + [f"quotes{n}.example" for n in (7, 6, 5, 4, 3)]


PEER_TEXT = st.text(max_size=1200)
"""Anything a peer can put in its NodeInfo or its listed name."""
HOSTNAMES = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?)+", fullmatch=True)


@settings(max_examples=300, deadline=None, database=None)
@given(domain=PEER_TEXT, version=PEER_TEXT)
def test_proposed_blocks_csv_never_holds_a_formula(domain: str, version: str) -> None:
    """CSV injection: what peers wrote reaches no cell as a formula, and the file still parses, a row a
    proposal."""
    from handlers.scan.findings import Proposal

    proposals = [
        Proposal(domain, "suspend", "", f"Runs {version}, affected by X", "X"),
        Proposal(version, "silence", "", version, "X"),
    ]
    rows = list(csv.reader(io.StringIO(blocks_csv(proposals), newline="")))
    assert rows[0] == CSV_HEADER and len(rows) == 3 and {len(row) for row in rows} == {6}
    for cell in (cell for row in rows for cell in row):
        assert not cell.lstrip(" ").startswith(FORMULA_START), cell
        assert len(cell) <= CELL_MAX + 1


@pytest.mark.slow  # its CSV imported twice (the apply above stays fast)
@settings(max_examples=200, deadline=None, database=None)
@given(
    domain=HOSTNAMES,
    severity=st.sampled_from(["silence", "suspend"]),
    version=st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,3}", fullmatch=True),
)
def test_real_proposed_blocks_import_as_written(domain: str, severity: str, version: str) -> None:
    """The guard changes no value Mastodon's import reads (domains, severities, booleans, our comments)."""
    from handlers.scan.findings import Proposal

    comment = f"Runs Pixelfed {version}, affected by CVE-2025-30741 (fixed in 0.12.5). Upgrade, then ask us."
    assert read_blocks_csv(blocks_csv([Proposal(domain, severity, "", comment, "CVE-2025-30741")])) == [
        {
            "domain": domain,
            "severity": severity,
            "reject_media": "false",
            "reject_reports": "false",
            "public_comment": comment,
            "obfuscate": "false",
        }
    ]


@settings(max_examples=300, deadline=None)
@given(
    exposes=st.lists(st.sampled_from(sorted(EXPOSURES)), unique=True),
    severity=st.sampled_from(SEVERITIES),
    follows=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 5000)), min_size=1, max_size=8),
    limit=st.integers(0, 100),
)
def test_a_block_only_where_it_stops_the_harm_and_never_a_suspension_above_the_threshold(
    exposes: list[str], severity: str, follows: list[tuple[int, int]], limit: int
) -> None:
    fixed, running = parse_version("0.12.5"), parse_version("0.12.4")
    assert fixed is not None and running is not None
    advisory = Advisory("T", ("pixelfed",), severity, "s", "", (fixed,), exposes=tuple(exposes))
    servers = [
        Exposure(f"s{n}.example", running, "0.12.4", impact=Impact(ours, theirs, 0))
        for n, (ours, theirs) in enumerate(follows)
    ]
    proposals = {proposal.domain: proposal for proposal in propose_blocks(Finding(advisory, servers), limit)}
    if not any(EXPOSURES[name].block_protects for name in exposes):
        assert proposals == {}  # a block would cut our members off and stop nothing: their admins are told
        assert len(Finding(advisory, servers).outreach) == len(servers)
        return
    for server in servers:
        proposal = proposals[server.domain]
        assert "although" not in proposal.reason
        if server.follows is not None and server.follows > limit:  # whatever the severity
            assert proposal.severity == "silence"
            assert f"a suspension would cut {server.follows:,} follows" in proposal.reason
        else:
            assert proposal.severity == "suspend"


@pytest.mark.slow  # a scan of the whole fleet, its hanging peer to the deadline
def test_no_all_clear_about_a_server_nobody_follows(ctx: Context, scanning: MastodonDouble) -> None:
    scanning.measures["pixelfed.social"] = (0, 0, 5200)  # the largest unaffected, but nothing shared with it
    report = run_scan(ctx)
    assert finding(report, "CVE-2025-30741").all_clear[0].domain == "pixelfed.social"  # it was sized
    text = render_report(report, "https://x.example", 10)
    assert "not affected, not proposed" not in text
    assert "Vulnerable: 63 of 96 Pixelfed servers" in text
