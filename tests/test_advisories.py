"""Version strings as peers report them, and branch-aware advisory matching."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.shared.advisories import (
    EXPOSURES,
    Advisory,
    AdvisoryError,
    Verdict,
    Version,
    load_advisories,
    load_advisory,
    load_forks,
    parse_version,
    read_running,
)

ADVISORIES = {advisory.id: advisory for advisory in load_advisories()}


@pytest.mark.parametrize(
    ("text", "release", "final"),
    [
        ("4.6.5", (4, 6, 5), True),
        ("4.3.0+glitch", (4, 3, 0), True),
        ("4.6.5+glitch.hometown", (4, 6, 5), True),
        ("0.19.1+git-6574dc8", (0, 19, 1), True),
        ("2.2.50-724-gf917285b-develop+HyNET-prod", (2, 2, 50), True),
        ("4.7.0-alpha.2", (4, 7, 0), False),
        ("4.5.0-nightly.2025-07-17", (4, 5, 0), False),
        ("0.8.0rc1", (0, 8, 0), False),
        ("4.0.0rc2-asonix-changes", (4, 0, 0), False),
        ("3.1.3+corgi", (3, 1, 3), True),
        ("10.102.699-m544", (10, 102, 699), True),
        ("24.04-dev.2", (24, 4, 0), False),
        ("0.12", (0, 12, 0), True),
        ("v1.2.3", (1, 2, 3), True),
        ("2.0.0a2", (2, 0, 0), False),  # Python-style pre-releases
        ("1.4.0b1", (1, 4, 0), False),
        ("3.0.0 RC5", (3, 0, 0), False),  # after a space, upper case
        ("4.3.0-beta.2+glitch", (4, 3, 0), False),
    ],
)
def test_real_version_strings(text: str, release: tuple[int, ...], final: bool) -> None:
    version = parse_version(text)
    assert version is not None
    assert (version.release, version.final) == (release, final)


@pytest.mark.parametrize(
    "text",
    ["", "unknown", None, 4, "latest", "develop", "582a1b3", "5821ab3f9c0d", "1234567", "13", "4.2x"],
)
def test_not_versions(text: object) -> None:
    """A bare git hash (even one that starts with digits), a build number or a word is no version: read
    as a number it could make a server look vulnerable, or safe."""
    assert parse_version(text) is None


def test_a_nightly_knows_its_date() -> None:
    version = parse_version("4.5.0-nightly.2025-07-17")
    assert version is not None and str(version.built) == "2025-07-17"
    assert parse_version("4.7.0-alpha.2").built is None  # type: ignore[union-attr]


def test_pre_release_comes_before_its_release() -> None:
    assert parse_version("4.2.5-rc.1") < parse_version("4.2.5")  # type: ignore[operator]
    assert parse_version("4.2.5") == parse_version("4.2.5+glitch.1")  # build metadata does not order


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("0.12.5", False),
        ("0.12.6", False),
        ("0.13.0", False),
        ("0.12.4", True),
        ("0.12.5-rc.1", True),  # a pre-release of the fix is not the fix
        ("0.11.9", True),  # an older branch never got a fix of its own
        ("0.10.0", True),
    ],
)
def test_pixelfed_cve_2025_30741(version: str, affected: bool) -> None:
    advisory = ADVISORIES["CVE-2025-30741"]
    assert advisory.affects(parse_version(version)) is affected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("4.1.13", False),  # patched on its own branch, although 4.2's fix is higher
        ("4.1.12", True),
        ("4.2.4+glitch", True),
        ("4.2.5+glitch", False),
        ("4.0.13", False),
        ("3.5.17", False),
        ("3.5.16", True),
        ("3.4.9", True),  # no fix for 3.4: affected
        ("4.3.0", False),  # newer than every fixed branch
        ("4.6.5", False),
    ],
)
def test_mastodon_cve_2024_23832_is_branch_aware(version: str, affected: bool) -> None:
    advisory = ADVISORIES["CVE-2024-23832"]
    assert advisory.affects(parse_version(version)) is affected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("version", "affected"),
    [("3.4.10", False), ("3.5.0", True), ("3.5.9", False), ("4.0.4", True), ("4.1.3", False), ("4.2.0", False)],
)
def test_mastodon_tootroot_starts_at_3_5(version: str, affected: bool) -> None:
    advisory = ADVISORIES["CVE-2023-36460"]
    assert advisory.affects(parse_version(version)) is affected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("version", "affected"),
    [("4.3.9", False), ("4.4.14", True), ("4.4.15", False), ("4.5.7", True), ("4.5.8", False), ("4.6.0", False)],
)
def test_mastodon_quote_dos_only_where_quotes_exist(version: str, affected: bool) -> None:
    advisory = ADVISORIES["CVE-2026-33869"]
    assert advisory.affects(parse_version(version)) is affected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("version", "verdict"),
    [
        ("4.2.5-rc.1", Verdict.AFFECTED),  # a pre-release of the patch release the fix is in
        ("4.3.0-alpha.0", Verdict.AFFECTED),  # main before the fix (its merge set main to alpha.1)
        ("4.3.0-alpha.1", Verdict.FIXED),  # the first pre-release the advisory says has it
        ("4.3.0-beta.2+glitch", Verdict.FIXED),
        ("4.3.0-nightly.2024-01-15", Verdict.AFFECTED),  # a nightly built before the fix
        ("4.3.0-nightly.2024-02-01", Verdict.AFFECTED),  # built at 02:00 UTC, before that day's fix
        ("4.3.0-nightly.2024-03-01", Verdict.FIXED),  # ... and after it
        ("4.3.0-dev", Verdict.UNCERTAIN),  # neither ordered nor dated
        ("4.3.0", Verdict.FIXED),  # a newer branch's release
        ("4.4.0-alpha.1", Verdict.FIXED),  # cut after 4.3.0 final, which has the fix
    ],
)
def test_pre_releases_are_read_as_far_as_the_string_tells(version: str, verdict: Verdict) -> None:
    advisory = ADVISORIES["CVE-2024-23832"]  # fixes published 2024-02-01, main's first fixed pre-release alpha.1
    assert advisory.assess(parse_version(version)) is verdict  # type: ignore[arg-type]


def advisory_with(fixed: list[str], **extra: object) -> Advisory:
    return Advisory("T", ("mastodon",), "high", "s", "", tuple(sorted(map(version_of, fixed))), **extra)  # type: ignore[arg-type]


def version_of(text: str) -> Version:
    version = parse_version(text)
    assert version is not None, text
    return version


ISSUE_STRINGS = [
    "4.7.0-alpha.1",
    "4.7.0-alpha.1+glitch",
    "4.7.1-alpha.1+glitch.something",
    "4.7.0-nightly.2026-07-04+chuckya",
]


@pytest.mark.parametrize("text", ISSUE_STRINGS)
@pytest.mark.parametrize(
    "advisory",
    [
        advisory_with(
            ["3.5.9", "4.0.5", "4.1.3"], published=date(2023, 7, 6)
        ),  # as GHSA lists it: no next-branch entry
        advisory_with(["3.5.9", "4.0.5", "4.1.3"]),  # not even a date
        advisory_with(["4.4.15", "4.5.8"], published=date(2026, 3, 24)),
        advisory_with(["4.4.15", "4.5.8", "4.6.0"]),  # "and every 4.6.0 final"
    ],
)
def test_pre_releases_cut_after_a_fixed_final_are_fixed(text: str, advisory: Advisory) -> None:
    """The issue's strings: a branch's pre-releases are cut after the previous branch's final release; 4.6.0
    (and 4.2.0 for the older advisory) came after the fix, so every 4.7 pre-release has it."""
    assert advisory.assess(version_of(text)) is Verdict.FIXED


@pytest.mark.parametrize(
    ("fixed", "published", "text", "verdict"),
    [
        # The branch right after the newest fixed one (4.6 after 4.5.8): its pre-releases may predate the fix.
        (["4.4.15", "4.5.8"], None, "4.6.0-alpha.3", Verdict.UNCERTAIN),
        (["4.4.15", "4.5.8"], date(2026, 3, 24), "4.6.0-nightly.2026-02-01", Verdict.AFFECTED),
        (["4.4.15", "4.5.8"], date(2026, 3, 24), "4.6.0-nightly.2026-03-24", Verdict.AFFECTED),  # built before
        (["4.4.15", "4.5.8"], date(2026, 3, 24), "4.6.0-nightly.2026-03-25", Verdict.FIXED),
        (["4.4.15", "4.5.8"], None, "4.6.0", Verdict.FIXED),  # a final of a newer branch
        # The advisory names 4.6.0 final as the next branch's first fixed release: its pre-releases stay open.
        (["4.4.15", "4.5.8", "4.6.0"], None, "4.6.0-beta.1", Verdict.UNCERTAIN),
        (["4.4.15", "4.5.8", "4.6.0"], date(2026, 3, 24), "4.6.0-nightly.2026-01-10", Verdict.AFFECTED),
        (["4.4.15", "4.5.8", "4.6.0"], date(2026, 3, 24), "4.6.0-nightly.2026-04-10", Verdict.FIXED),
        # ... or the pre-release: labels order (alpha < beta < rc, then the number).
        (["4.4.15", "4.5.8", "4.6.0-alpha.6"], None, "4.6.0-alpha.5", Verdict.AFFECTED),
        (["4.4.15", "4.5.8", "4.6.0-alpha.6"], None, "4.6.0-alpha.10", Verdict.FIXED),
        (["4.4.15", "4.5.8", "4.6.0-alpha.6"], None, "4.6.0-rc.1", Verdict.FIXED),
        (["4.4.15", "4.5.8", "4.6.0-alpha.6"], None, "4.6.0-nightly", Verdict.UNCERTAIN),
        # Before 5.0 comes some 4.x branch, at least the newest fixed one (4.1, whose 4.1.0 lacks the fix).
        (["3.5.9", "4.0.5", "4.1.3"], None, "5.0.0-alpha.1", Verdict.UNCERTAIN),
        (["3.5.9", "4.0.5", "4.1.3", "4.2.0-beta1"], None, "5.0.0-alpha.1", Verdict.FIXED),
        (["3.4.9", "3.5.3"], None, "5.0.0-alpha.1", Verdict.FIXED),  # some 4.x release came between
        (["3.5.9", "4.0.5", "4.1.3"], None, "4.3.0-beta.1", Verdict.FIXED),  # 4.2.0 came between
        (["3.5.9", "4.0.5", "4.1.3"], None, "4.2.0-beta1", Verdict.UNCERTAIN),
        (["0.12.5"], None, "0.13.0-rc.1", Verdict.UNCERTAIN),  # Pixelfed: 0.12.0 lacks 0.12.5's fix
        (["0.12.5"], None, "0.14.0-rc.1", Verdict.FIXED),
    ],
)
def test_only_pre_releases_of_the_next_branch_can_predate_the_fix(
    fixed: list[str], published: date | None, text: str, verdict: Verdict
) -> None:
    assert advisory_with(fixed, published=published).assess(version_of(text)) is verdict


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("4.3.9", Verdict.FIXED),  # before the flaw
        ("4.4.0-alpha.3", Verdict.FIXED),
        ("4.4.0-alpha.5", Verdict.AFFECTED),  # the advisory's first pre-release with the flaw
        ("4.4.0-beta.2+glitch", Verdict.AFFECTED),
        ("4.4.0-nightly.2025-04-17", Verdict.FIXED),  # built before the flaw reached main that day
        ("4.4.0-nightly.2025-04-18", Verdict.AFFECTED),
        ("4.4.0-nightly", Verdict.UNCERTAIN),
        ("4.6.0-alpha.5", Verdict.AFFECTED),
        ("4.6.0-alpha.6", Verdict.FIXED),
        ("4.6.0-nightly.2026-03-24", Verdict.AFFECTED),
        ("4.6.0-nightly.2026-03-25", Verdict.FIXED),
        ("4.7.0-alpha.1+glitch", Verdict.FIXED),
    ],
)
def test_the_flaw_is_placed_like_the_fix(text: str, verdict: Verdict) -> None:
    assert ADVISORIES["CVE-2026-33869"].assess(version_of(text)) is verdict


def test_a_flaw_introduced_in_a_final_leaves_its_pre_releases_open() -> None:
    """TootRoot affects 3.5.0 on: whether 3.5.0rc1 already had it the string cannot tell."""
    tootroot = ADVISORIES["CVE-2023-36460"]
    assert tootroot.assess(version_of("3.5.0rc1")) is Verdict.UNCERTAIN
    assert tootroot.assess(version_of("3.4.10")) is Verdict.FIXED
    assert tootroot.assess(version_of("3.5.0")) is Verdict.AFFECTED


@pytest.mark.parametrize(
    ("text", "release", "built", "stage"),
    [
        ("4.3.0-alpha.1", (4, 3, 0), None, (0, 1)),
        ("4.2.0-beta1", (4, 2, 0), None, (1, 1)),
        ("4.0.0rc2", (4, 0, 0), None, (2, 2)),
        ("2.0.0a2", (2, 0, 0), None, (0, 2)),
        ("4.3.0-beta.2+glitch", (4, 3, 0), None, (1, 2)),
        ("4.1.2+nightly-20230601", (4, 1, 2), date(2023, 6, 1), None),  # Mastodon's nightlies of mid-2023
        ("4.1.6+nightly-2023-08-01", (4, 1, 6), date(2023, 8, 1), None),
        ("4.2.0-beta2-nightly.2023-08-25", (4, 2, 0), date(2023, 8, 25), None),  # placed by its date
        ("4.3.0+nightly.2024-03-01+glitch", (4, 3, 0), date(2024, 3, 1), None),
        ("0.13.1-SNAPSHOT git-dfc7656", (0, 13, 1), None, None),
    ],
)
def test_pre_releases_know_their_order_or_their_date(
    text: str, release: tuple[int, ...], built: date | None, stage: tuple[int, int] | None
) -> None:
    version = version_of(text)
    assert (version.release, version.final, version.built, version.stage) == (release, False, built, stage)


@given(
    st.tuples(st.integers(0, 6), st.integers(0, 12), st.integers(0, 30)),
    st.sampled_from(["", "-alpha.3", "-beta.1", "-rc.2", "rc1", "-nightly.2024-05-01", "-nightly", "-dev"]),
    st.sampled_from(["glitch", "glitch.hometown", "git-6574dc8", "hometown-1.2.1", "cafe.41a1757", "chuckya"]),
    st.sampled_from(sorted(ADVISORIES)),
)
def test_build_metadata_never_changes_a_verdict(
    numbers: tuple[int, int, int], pre: str, metadata: str, advisory_id: str
) -> None:
    text = ".".join(map(str, numbers)) + pre
    advisory = ADVISORIES[advisory_id]
    assert advisory.assess(version_of(f"{text}+{metadata}")) is advisory.assess(version_of(text))


@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 9), st.integers(0, 20)), min_size=1, max_size=5),
    st.tuples(st.integers(0, 7), st.integers(0, 12), st.integers(0, 25)),
    st.sampled_from(["-alpha.1", "-beta.3", "-rc.1", "-nightly.2020-01-01", "-nightly", "rc2", ""]),
)
def test_only_pre_releases_are_uncertain_and_two_branches_up_all_is_fixed(
    fixes: list[tuple[int, int, int]], numbers: tuple[int, int, int], pre: str
) -> None:
    fixed = list({fix[:2]: ".".join(map(str, fix)) for fix in fixes}.values())
    advisory = advisory_with(fixed, published=date(2024, 2, 1))
    version = version_of(".".join(map(str, numbers)) + pre)
    verdict = advisory.assess(version)
    if version.final:
        assert verdict is not Verdict.UNCERTAIN  # a release is placed by its number alone
    newest = advisory.fixed[-1].branch
    if version.branch[0] == newest[0] and version.branch[1] >= newest[1] + 2:
        assert verdict is Verdict.FIXED  # the branch before it had a final newer than every fixed branch
    if version.branch[0] >= newest[0] + 2:
        assert verdict is Verdict.FIXED


FORKS = load_forks()


@pytest.mark.parametrize(
    ("name", "text", "software", "upstream", "shown"),
    [
        ("hometown", "1.0.7+3.5.5", "mastodon", "3.5.5", "Hometown 1.0.7 (Mastodon 3.5.5)"),  # old format
        ("Hometown", "4.2.10+hometown-1.1.2", "mastodon", "4.2.10+hometown-1.1.2", "Hometown 1.1.2 (Mastodon 4.2.10)"),
        ("kmyblue", "4.3.2+kmyblue.17.1", "mastodon", "4.3.2+kmyblue.17.1", "kmyblue 17.1 (Mastodon 4.3.2)"),
        ("chuckya", "4.4.3+glitch+chuckya", "mastodon", "4.4.3+glitch+chuckya", "Chuckya (Mastodon 4.4.3)"),
        ("mastodon", "4.6.5+glitch", "mastodon", "4.6.5+glitch", "4.6.5+glitch"),
        ("pixelfed", "0.12.4", "pixelfed", "0.12.4", "0.12.4"),
        ("hometown", "582a1b3", "mastodon", None, "Hometown 582a1b3"),
        ("hometown", "4.5.10+hometown-1.2.1", "mastodon", "4.5.10+hometown-1.2.1", "Hometown 1.2.1 (Mastodon 4.5.10)"),
        ("glitchcafe", "4.1.2+cafe.41a1757", "mastodon", "4.1.2+cafe.41a1757", "GlitchCafé (Mastodon 4.1.2)"),
        ("fedibird", "0.1", "mastodon", None, "Fedibird 0.1"),  # its own numbering, not Mastodon 0.1
    ],
)
def test_forks_are_read_through_their_upstream(
    name: str, text: str, software: str, upstream: str | None, shown: str
) -> None:
    peer = read_running(name, text, FORKS)
    assert peer.software == software
    assert (peer.version.text if peer.version else None) == upstream
    assert peer.shown == shown


def test_a_mastodon_advisory_applies_to_a_fork() -> None:
    peer = read_running("hometown", "1.0.7+3.5.5", FORKS)
    assert ADVISORIES["CVE-2024-23832"].concerns(peer.software)
    assert ADVISORIES["CVE-2024-23832"].affects(peer.version)  # type: ignore[arg-type]
    assert not ADVISORIES["CVE-2024-23832"].affects(read_running("hometown", "1.2.0+4.2.5", FORKS).version)  # type: ignore[arg-type]


def test_operators_extend_the_fork_table(tmp_path: Path) -> None:
    (tmp_path / "forks.toml").write_text('[myfork]\nupstream = "mastodon"\nlabel = "My Fork"\n')
    forks = load_forks(tmp_path)
    assert read_running("myfork", "4.1.0", forks).shown == "My Fork (Mastodon 4.1.0)"
    assert "hometown" in forks
    assert len(load_advisories(tmp_path)) == len(ADVISORIES)  # forks.toml is not read as an advisory


def test_a_fork_with_its_own_numbering_has_no_upstream_version(tmp_path: Path) -> None:
    (tmp_path / "forks.toml").write_text('[ownfork]\nupstream = "mastodon"\nversion = "own"\n')
    forks = load_forks(tmp_path)
    assert read_running("ownfork", "2.3.0", forks).version is None
    assert str(read_running("ownfork", "2.3.0+4.2.5", forks).version) == "4.2.5"  # an upstream after the "+"
    (tmp_path / "forks.toml").write_text('[ownfork]\nupstream = "mastodon"\nversion = "mine"\n')
    with pytest.raises(AdvisoryError, match=r"forks\.toml"):
        load_forks(tmp_path)


def test_every_shipped_advisory_says_who_is_harmed() -> None:
    assert ADVISORIES["CVE-2025-30741"].exposes == ("followers-only-posts",)
    assert ADVISORIES["CVE-2026-33869"].exposes == () and not ADVISORIES["CVE-2026-33869"].exposes_members
    assert ADVISORIES["CVE-2023-36460"].exposes == ()  # the server's own compromise
    for path in sorted(Path("handlers/advisories").glob("*.toml")):
        assert "exposes" in path.read_text() and "exploited" in path.read_text(), path


def test_upgrade_target_is_the_branch_fix() -> None:
    advisory = ADVISORIES["CVE-2024-23832"]
    assert str(advisory.fixed_in(parse_version("4.1.2"))) == "4.1.13"  # type: ignore[arg-type]
    assert str(advisory.fixed_in(parse_version("3.4.1"))) == "4.2.5"  # type: ignore[arg-type]  # not 4.3.0-alpha.1
    assert str(advisory.fixed_in(parse_version("4.3.0-alpha.0"))) == "4.3.0-alpha.1"  # type: ignore[arg-type]


def test_operator_advisories_add_and_replace(tmp_path: Path) -> None:
    (tmp_path / "local.toml").write_text(
        'id = "LOCAL-1"\nsoftware = ["GoToSocial"]\nseverity = "low"\nsummary = "s"\nfixed = ["0.19.2"]\n'
        'exposes = ["direct-messages"]\nexploited = true\n'
    )
    (tmp_path / "override.toml").write_text('id = "CVE-2025-30741"\nsummary = "stricter"\nfixed = ["0.12.6"]\n')
    (tmp_path / "quotes.toml").write_text(
        'id = "CVE-2026-33869"\nexposes = ["followers-only-posts"]\npublished = 2026-03-24T16:00:00Z\n'
    )
    advisories = {advisory.id: advisory for advisory in load_advisories(tmp_path)}
    assert advisories["LOCAL-1"].concerns("gotosocial") and advisories["LOCAL-1"].exploited
    assert advisories["CVE-2025-30741"].summary == "stricter"
    assert advisories["CVE-2025-30741"].software == ("pixelfed",)  # the fields it does not set stay as shipped
    assert advisories["CVE-2026-33869"].exposes_members  # an operator decides their members are exposed
    nightly = version_of("4.6.0-nightly.2026-03-25")  # a date-time is read as its day, comparable with a nightly's
    assert advisories["CVE-2026-33869"].assess(nightly) is Verdict.FIXED


@pytest.mark.parametrize(
    "content",
    [
        'id = "X"\nsoftware = ["a"]\nsummary = "s"\nfixed = ["next"]\nexposes = "none"\n',
        'id = "X"\nsoftware = ["a"]\nsummary = "s"\nfixed = ["1.0"]\n',  # who is harmed must be said
        'id = "X"\nsoftware = ["a"]\nsummary = "s"\nfixed = ["1.0"]\nexposes = ["everything"]\n',
        'id = "X"\n',
        "not toml ===",
        # one version per branch
        'id = "X"\nsoftware = ["a"]\nsummary = "s"\nfixed = ["4.6.0-alpha.6", "4.6.1"]\nexposes = "none"\n',
        'id = "X"\nsoftware = ["a"]\nsummary = "s"\nfixed = ["1.0"]\nexposes = "none"\nintroduced_date = "May"\n',
    ],
)
def test_a_broken_advisory_is_named(tmp_path: Path, content: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(content)
    with pytest.raises(AdvisoryError, match=r"broken\.toml"):
        load_advisory(path)


def test_each_exposure_states_whether_a_block_protects_and_the_shipped_advisories_follow_it() -> None:
    for name, exposed in EXPOSURES.items():
        assert exposed.words and exposed.why, name
    assert not EXPOSURES["account-takeover-of-our-users"].block_protects  # forged to them, not through us
    assert EXPOSURES["followers-only-posts"].block_protects
    takeover, pixelfed = ADVISORIES["CVE-2024-23832"], ADVISORIES["CVE-2025-30741"]
    assert takeover.exposes_members and not takeover.block_protects  # tell their admins, no block
    assert takeover.block_why == "a block would not stop this: tell their admins"
    assert "forged" in takeover.no_block_reason
    assert pixelfed.block_protects and pixelfed.block_why == "a block stops our followers-only posts reaching them"
    for advisory_id in ("CVE-2023-36460", "CVE-2026-33869"):  # harm to that server only
        assert not ADVISORIES[advisory_id].block_protects and ADVISORIES[advisory_id].no_block_reason


@given(st.lists(st.sampled_from(sorted(EXPOSURES)), unique=True))
def test_a_block_protects_exactly_when_one_exposure_it_names_is_stopped_by_a_block(exposes: list[str]) -> None:
    advisory = advisory_with(["1.0.1"], exposes=tuple(exposes))
    assert advisory.block_protects == any(EXPOSURES[name].block_protects for name in exposes)
    assert advisory.block_why != "" and (advisory.no_block_reason == "") == advisory.block_protects
