"""Who federates with a server we blocked: matching (pure), streamed peers lists, and the audit against a
fleet of local HTTPS peers covering every variant, through the CLI and the DM."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.csvsafe import CELL_MAX, FORMULA_START
from bot.core.fetching import Address, Fetcher, FetchError
from bot.dm import mentions
from bot.mastodon.context import Context
from handlers.federation import audit as federation
from handlers.federation.audit import (
    BLOCKS,
    CLASSES,
    FEDERATES,
    NO_CONTACT,
    UNKNOWN,
    AuditReport,
    Verdict,
    audit,
    match_mrf,
    match_public_blocks,
    needles,
)
from tests.helpers import run, run_jobs
from tests.mastodon_double import MastodonDouble
from tests.peers import MALFORMED_ANSWERS, Peer, PeerFleet, nodeinfo

TARGET = "threads.net"
DIGEST = hashlib.sha256(TARGET.encode()).hexdigest()
BIG_LIST = [f"peer-{n:06d}.example" for n in range(150_000)]  # ~3.6 MB: read as a stream
FEDERATORS = ["federator-1.example", "federator-2.example", "federator-3.example"]


# --- pure -----------------------------------------------------------------------------------------
PEER_TEXT = st.text(max_size=1200)
"""Anything a peer can write: its name as another peer lists it, its software, how it blocks."""
VERDICTS = st.lists(
    st.builds(
        Verdict,
        peer=PEER_TEXT,
        kind=st.sampled_from(CLASSES),
        evidence=PEER_TEXT,
        severity=st.none() | PEER_TEXT,
        software=st.none() | PEER_TEXT,
        active_users=st.none() | st.integers(),
    ),
    max_size=5,
)


@pytest.mark.slow  # long fuzzing
@settings(max_examples=300, deadline=None, database=None)
@given(verdicts=VERDICTS)
def test_audit_csv_never_holds_a_formula(verdicts: list[Verdict]) -> None:
    """CSV injection: no cell of `audit-federation --csv` starts a formula, and the file parses back a
    row a peer, every row as long as the header."""
    text = "".join(federation.csv_rows(AuditReport(TARGET), iter(verdicts)))
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == federation.CSV_COLUMNS and len(rows) == len(verdicts) + 1
    assert {len(row) for row in rows} == {len(federation.CSV_COLUMNS)}
    for cell in (cell for row in rows for cell in row):
        assert not cell.lstrip(" ").startswith(FORMULA_START), cell
        assert len(cell) <= CELL_MAX + 1


def test_public_block_lists_match_by_name_parent_and_digest() -> None:
    assert match_public_blocks([{"domain": TARGET, "severity": "suspend"}], TARGET) == (
        "suspend",
        "public block list: suspend",
    )
    assert match_public_blocks([{"domain": "net", "severity": "silence"}], TARGET) == (
        "silence",
        "public block list: silence",
    )  # a parent domain's block covers it
    starred = [{"domain": "thr****.net", "digest": DIGEST, "severity": "suspend"}]
    assert match_public_blocks(starred, TARGET) == (
        "suspend",
        "public block list: suspend (listed as thr****.net, matched by its digest)",
    )
    assert match_public_blocks([{"domain": "thr****.net", "digest": "0" * 64}], TARGET) is None
    assert match_public_blocks([{"domain": "notthreads.net"}, "odd", {"domain": 5}], TARGET) is None
    assert match_public_blocks({"error": "not a list"}, TARGET) is None


def test_mrf_lists_wildcards_quarantine_and_allow_lists() -> None:
    def doc(federation: object) -> dict[str, object]:
        return {"metadata": {"federation": federation}}

    assert match_mrf(doc({"mrf_simple": {"reject": [TARGET]}}), TARGET) == ("reject", "MRF simple policy: reject")
    wildcard = doc({"mrf_simple": {"federated_timeline_removal": ["*.threads.net"]}})
    assert match_mrf(wildcard, TARGET) == (
        "federated_timeline_removal",
        "MRF simple policy: federated timeline removal",
    )
    akkoma_pairs = doc({"mrf_simple": {"reject": [["threads.net", "Meta"]]}})
    assert match_mrf(akkoma_pairs, TARGET) is not None
    assert match_mrf(doc({"quarantined_instances": [TARGET]}), TARGET) == (
        "quarantine",
        "quarantined: it sends the server no private posts",
    )
    assert match_mrf(doc({"mrf_simple": {"accept": ["friends.example"]}}), TARGET) is not None
    assert match_mrf(doc({"mrf_simple": {"media_removal": [TARGET], "accept": []}}), TARGET) is None
    assert match_mrf({"metadata": []}, TARGET) is None


# --- the fleet ------------------------------------------------------------------------------------


def mastodon_peer(blocks: object, peers: object, version: str = "4.5.2", active: int = 50) -> Peer:
    usage = {"users": {"total": 900, "activeMonth": active}}
    return Peer(nodeinfo("mastodon", version, usage=usage), domain_blocks=blocks, peer_list=peers)


FLEET: dict[str, Peer] = {
    "blocker.example": mastodon_peer([{"domain": TARGET, "digest": DIGEST, "severity": "suspend"}], ["a.example"]),
    "starred.example": mastodon_peer([{"domain": "thr****.net", "digest": DIGEST, "severity": "suspend"}], 404),
    "silencer.example": mastodon_peer([{"domain": TARGET, "digest": DIGEST, "severity": "silence"}], [TARGET]),
    "quiet-blocks.example": mastodon_peer(404, ["a.example", TARGET], active=10),  # no block list: its peers tell
    "closed.example": mastodon_peer(401, 401),
    "akkoma.example": Peer(
        nodeinfo("akkoma", "3.13.2", metadata={"federation": {"mrf_simple": {"reject": [[TARGET, "Meta"]]}}}),
        domain_blocks=404,
        peer_list=[TARGET],
    ),
    "pleroma.example": Peer(
        nodeinfo("pleroma", "2.6.3", metadata={"federation": {"mrf_simple": {"federated_timeline_removal": []}}}),
        domain_blocks=404,
        peer_list=["a.example"],
    ),
    "big.example": mastodon_peer([], [*BIG_LIST[:140_000], f"www.{TARGET}", *BIG_LIST[140_000:]], active=5000),
    "stranger.example": mastodon_peer([], ["a.example"]),
    **{name: mastodon_peer([], ["a.example", TARGET], active=100 * n) for n, name in enumerate(FEDERATORS, 1)},
}
EXPECTED = {
    "blocker.example": (BLOCKS, "public block list: suspend"),
    "starred.example": (BLOCKS, "public block list: suspend (listed as thr****.net, matched by its digest)"),
    "silencer.example": (BLOCKS, "public block list: silence"),
    "quiet-blocks.example": (FEDERATES, "listed in its peers, with no public block"),
    "closed.example": (UNKNOWN, "block list not public (401); peers not public (401)"),
    "akkoma.example": (BLOCKS, "MRF simple policy: reject"),
    "pleroma.example": (NO_CONTACT, "not in its peers: it has never federated with it"),
    "big.example": (FEDERATES, "listed in its peers, with no public block"),
    "stranger.example": (NO_CONTACT, "not in its peers: it has never federated with it"),
    "gone.invalid": (UNKNOWN, "unreachable (dns)"),
    **{name: (FEDERATES, "listed in its peers, with no public block") for name in FEDERATORS},
}
HOSTILE: dict[str, Peer] = {
    **{f"{name}.example": Peer(raw=answer) for name, answer in MALFORMED_ANSWERS.items()},
    "bracket-bomb.example": mastodon_peer(b"[" * (60 * 1024), 401),  # a block list under the fleet's 64 KiB cap
}
"""Peers answering every request with something that is not HTTP/1.1, and one whose block list is a JSON
bomb (the fleet serves them too; only the tests that name them audit them)."""


@pytest.fixture(scope="module")
def fleet() -> Iterator[PeerFleet]:
    fleet = PeerFleet([*FLEET, *HOSTILE])
    fleet.peers.update({**FLEET, **HOSTILE})
    fleet.start()
    yield fleet
    fleet.stop()


@pytest.fixture
def auditing(
    make_context: Callable[..., Context], mastodon: MastodonDouble, fleet: PeerFleet, monkeypatch: pytest.MonkeyPatch
) -> Context:
    """Our instance federates with the fleet (and with threads.net's subdomain, which is not audited)."""
    federate_with(mastodon, fleet, monkeypatch)
    return make_context(moderators=["mod_anna", "mod_ben"])


def federate_with(mastodon: MastodonDouble, fleet: PeerFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "handlers.shared.nodeinfo.make_fetcher",
        lambda settings: Fetcher(
            fleet.policy(total_timeout=20.0), resolver=fleet.resolver, ssl_context=fleet.client_context()
        ),
    )
    mastodon.peers = [*FLEET, "gone.invalid", f"www.{TARGET}"]
    mastodon.max_characters = 500
    for n, name in enumerate(FEDERATORS, 1):
        mastodon.measures[name] = (40 * n, 30 * n, 900)
    mastodon.measures["big.example"] = (5, 2, 90000)


def test_streamed_search_finds_a_needle_across_chunks_and_bounds_the_body(fleet: PeerFleet) -> None:
    fetcher = Fetcher(fleet.policy(total_timeout=20.0), resolver=fleet.resolver, ssl_context=fleet.client_context())
    url = "https://big.example/api/v1/instance/peers"
    assert asyncio.run(fetcher.find(url, needles(TARGET), 8 * 1024 * 1024)) == {needles(TARGET)[1]}
    assert asyncio.run(fetcher.find(url, (b'"nowhere.example"',), 8 * 1024 * 1024)) == set()
    with pytest.raises(FetchError, match="too-large"):
        asyncio.run(fetcher.find(url, needles(TARGET), 1024 * 1024))


def test_every_peer_gets_its_class_and_evidence(auditing: Context, connection: redis.Redis) -> None:
    report = audit(auditing, TARGET)
    found = {verdict.peer: (verdict.kind, verdict.evidence) for verdict in federation.verdicts(auditing, TARGET)}
    assert found == EXPECTED  # www.threads.net itself is not audited
    assert dict(report.counts) == {BLOCKS: 4, FEDERATES: 5, NO_CONTACT: 2, UNKNOWN: 2}
    assert dict(report.severities) == {"suspend": 2, "silence": 1, "reject": 1}
    assert dict(report.unknown) == {"lists not public": 1, "unreachable": 1}
    # Ranked by follows both ways (admin measures), not by size.
    assert [verdict.peer for verdict, _impact in report.federating][:4] == [*reversed(FEDERATORS), "big.example"]


@pytest.mark.slow  # two audits of the fleet
def test_the_dm_fits_two_posts_and_changes_are_reported(
    auditing: Context, mastodon: MastodonDouble, fleet: PeerFleet
) -> None:
    report = audit(auditing, TARGET)
    assert report.first and not report.changes
    federation.send_dm(auditing, report, with_proposal=False)
    [thread] = mastodon.direct_threads()
    assert len(thread) <= 2
    text = "\n".join(status["text"] for status in thread)
    assert (
        "🔭 Who federates with threads.net: of 13 peers, 4 block it (2 suspend, 1 reject, 1 silence), 5 federate "
        "with it, 2 never had contact, 2 unknown (lists not public: 1, unreachable: 1)." in text
    )
    assert "1. federator-3.example (we follow 120 there, 90 follow us)" in text
    assert text.endswith("Every peer with its evidence: tocsin audit-federation threads.net --csv FILE (2/2)")
    # A peer starts blocking it: the next audit says what changed.
    fleet.peers["stranger.example"] = mastodon_peer([{"domain": TARGET, "severity": "suspend"}], ["a.example"])
    try:
        again = audit(auditing, TARGET)
    finally:
        fleet.peers["stranger.example"] = FLEET["stranger.example"]
    assert not again.first and dict(again.changes) == {"no-contact -> blocks": 1}
    assert "Since the last audit: 1 no-contact -> blocks." in federation.render_dm(again, None)


def test_cli_csv_json_and_a_proposal_approved_from_the_dm(
    auditing: Context, mastodon: MastodonDouble, tocsin: CliRunner, tmp_path: Path
) -> None:
    csv_path = tmp_path / "federation.csv"
    result = run(tocsin, "audit-federation", "Threads.NET", "--csv", str(csv_path), "--dm", "--propose", "limit")
    assert result.exit_code == 0, result.output
    assert "Of 13 peers: 4 block threads.net, 5 federate with it, 2 never had contact, 2 unknown." in result.stdout
    assert "  akkoma.example (we follow 0, 0 follow us): MRF simple policy: reject" in result.stdout
    assert "Federate with it (the most active, most followed first):\n  federator-3.example (we follow 120, " in (
        result.stdout
    )
    assert "  gone.invalid (we follow 0, 0 follow us): unreachable (dns)" in result.stdout
    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0]) == federation.CSV_COLUMNS
    by_peer = {row["peer"]: row for row in rows}
    assert len(rows) == 13 and by_peer["starred.example"]["severity"] == "suspend"
    assert by_peer["federator-3.example"]["local_follows"] == "120" and by_peer["closed.example"]["class"] == UNKNOWN
    lines = run(tocsin, "audit-federation", TARGET, "--json").stdout.splitlines()
    assert len(lines) == 14 and json.loads(lines[-1])["report"]["counts"][FEDERATES] == 5
    assert run(tocsin, "audit-federation", TARGET, "--propose", "limit").exit_code == 2  # needs --dm

    [thread] = mastodon.direct_threads()
    text = "\n".join(status["text"] for status in thread)
    assert len(thread) <= 2
    assert "Proposed: limit these servers.\nReply “approve” (item 1), “approve 1,2” or “dismiss”." in text
    mentions.poll(auditing)  # the cursor
    command = mastodon.say("101", "@tocsin approve 1", in_reply_to_id=thread[-1]["id"])
    mentions.poll(auditing)
    run_jobs(auditing.redis)
    [block] = mastodon.domain_blocks
    assert (block["domain"], block["severity"]) == ("federator-3.example", "silence")
    assert block["private_comment"].startswith("[tocsin federation threads.net] proposal ")
    assert "Done: federator-3.example limited." in mastodon.replies_to(command["id"])[0]["text"]


def test_watched_servers_are_audited_on_the_sweep_and_dm_only_on_change(
    auditing: Context, make_context: Callable[..., Context], mastodon: MastodonDouble
) -> None:
    ctx = make_context(moderators=["mod_anna"], watch_domains=[TARGET], command_poll_seconds=0)
    assert federation.schedule_watched(ctx, 1_000_000.0) == 1
    assert federation.schedule_watched(ctx, 1_000_030.0) == 0  # one audit per interval
    run_jobs(ctx.redis)
    assert len(mastodon.direct_threads()) == 1  # the first audit of a watched server is news
    ctx.redis.hset(federation.LAST_AUDIT, TARGET, "0")
    assert federation.schedule_watched(ctx, 1_000_000.0 + 86400 * 2) == 1
    run_jobs(ctx.redis)
    assert len(mastodon.direct_threads()) == 1  # nothing changed: no DM


def test_hostile_peers_are_unknown_and_leave_the_others_verdicts_intact(
    auditing: Context, make_context: Callable[..., Context], mastodon: MastodonDouble
) -> None:
    """A watched server's scheduled audit of honest peers and peers answering malformed HTTP or a JSON
    bomb: it completes, each honest peer keeps its verdict, each hostile one is unknown for its answer."""
    honest = ["blocker.example", "quiet-blocks.example", "closed.example", "stranger.example", "federator-1.example"]
    mastodon.peers = [*honest, *HOSTILE]
    ctx = make_context(moderators=["mod_anna"], watch_domains=[TARGET], command_poll_seconds=0)
    assert federation.schedule_watched(ctx, 1_000_000.0) == 1
    run_jobs(ctx.redis)
    found = {verdict.peer: (verdict.kind, verdict.evidence) for verdict in federation.verdicts(ctx, TARGET)}
    assert {peer: found.get(peer) for peer in honest} == {peer: EXPECTED[peer] for peer in honest}
    assert {peer: found.get(peer, ("none", ""))[0] for peer in HOSTILE} == dict.fromkeys(HOSTILE, UNKNOWN)
    assert all(
        federation.unknown_reason(federation.Verdict(peer, *found[peer])) == "malformed answer" for peer in HOSTILE
    )
    assert found["negative-chunk.example"][1] == (
        "block list unreadable: malformed answer (malformed); peers unreadable: malformed answer (malformed)"
    )
    assert "6 unknown (malformed answer: 5, lists not public: 1)." in "\n".join(mastodon.direct_texts())


def test_an_unforeseen_failure_reading_one_peer_is_that_peers_unknown(
    auditing: Context, fleet: PeerFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: whatever escapes one peer's reading (here a resolver that raises what no resolver
    should) makes that peer unknown, the audit goes on."""

    async def resolver(host: str, port: int) -> list[Address]:
        if host == "stranger.example":
            raise RuntimeError("a resolver's bug")
        return await fleet.resolver(host, port)

    monkeypatch.setattr(
        "handlers.shared.nodeinfo.make_fetcher",
        lambda settings: Fetcher(
            fleet.policy(total_timeout=20.0), resolver=resolver, ssl_context=fleet.client_context()
        ),
    )
    audit(auditing, TARGET, peers=["blocker.example", "stranger.example", "federator-1.example"])
    found = {verdict.peer: (verdict.kind, verdict.evidence) for verdict in federation.verdicts(auditing, TARGET)}
    assert found == {
        "blocker.example": EXPECTED["blocker.example"],
        "stranger.example": (UNKNOWN, "unreadable (RuntimeError)"),
        "federator-1.example": EXPECTED["federator-1.example"],
    }
