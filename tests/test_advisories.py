"""Version strings as peers report them, and branch-aware advisory matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.advisories import (
    AdvisoryError,
    Verdict,
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
        ("4.2.5-rc.1", Verdict.AFFECTED),  # a pre-release of the branch the fix is on
        ("4.3.0-nightly.2024-01-15", Verdict.AFFECTED),  # a newer branch's nightly, built before the fix
        ("4.3.0-nightly.2024-03-01", Verdict.FIXED),  # ... and after it
        ("4.3.0-alpha.1", Verdict.UNCERTAIN),  # a newer branch's pre-release without a date
        ("4.3.0", Verdict.FIXED),  # a newer branch's release
    ],
)
def test_pre_releases_are_affected_until_shown_otherwise(version: str, verdict: Verdict) -> None:
    advisory = ADVISORIES["CVE-2024-23832"]  # fixes published 2024-02-01
    assert advisory.assess(parse_version(version)) is verdict  # type: ignore[arg-type]


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


def test_every_shipped_advisory_says_who_is_harmed() -> None:
    assert ADVISORIES["CVE-2025-30741"].exposes == ("followers-only-posts",)
    assert ADVISORIES["CVE-2026-33869"].exposes == () and not ADVISORIES["CVE-2026-33869"].exposes_members
    assert ADVISORIES["CVE-2023-36460"].exposes == ()  # the server's own compromise
    for path in sorted(Path("handlers/advisories").glob("*.toml")):
        assert "exposes" in path.read_text() and "exploited" in path.read_text(), path


def test_upgrade_target_is_the_branch_fix() -> None:
    advisory = ADVISORIES["CVE-2024-23832"]
    assert str(advisory.fixed_in(parse_version("4.1.2"))) == "4.1.13"  # type: ignore[arg-type]
    assert str(advisory.fixed_in(parse_version("3.4.1"))) == "4.2.5"  # type: ignore[arg-type]


def test_operator_advisories_add_and_replace(tmp_path: Path) -> None:
    (tmp_path / "local.toml").write_text(
        'id = "LOCAL-1"\nsoftware = ["GoToSocial"]\nseverity = "low"\nsummary = "s"\nfixed = ["0.19.2"]\n'
        'exposes = ["direct-messages"]\nexploited = true\n'
    )
    (tmp_path / "override.toml").write_text('id = "CVE-2025-30741"\nsummary = "stricter"\nfixed = ["0.12.6"]\n')
    (tmp_path / "quotes.toml").write_text('id = "CVE-2026-33869"\nexposes = ["followers-only-posts"]\n')
    advisories = {advisory.id: advisory for advisory in load_advisories(tmp_path)}
    assert advisories["LOCAL-1"].concerns("gotosocial") and advisories["LOCAL-1"].exploited
    assert advisories["CVE-2025-30741"].summary == "stricter"
    assert advisories["CVE-2025-30741"].software == ("pixelfed",)  # the fields it does not set stay as shipped
    assert advisories["CVE-2026-33869"].exposes_members  # an operator decides their members are exposed


@pytest.mark.parametrize(
    "content",
    [
        'id = "X"\nsoftware = ["a"]\nsummary = "s"\nfixed = ["next"]\nexposes = "none"\n',
        'id = "X"\nsoftware = ["a"]\nsummary = "s"\nfixed = ["1.0"]\n',  # who is harmed must be said
        'id = "X"\nsoftware = ["a"]\nsummary = "s"\nfixed = ["1.0"]\nexposes = ["everything"]\n',
        'id = "X"\n',
        "not toml ===",
    ],
)
def test_a_broken_advisory_is_named(tmp_path: Path, content: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(content)
    with pytest.raises(AdvisoryError, match=r"broken\.toml"):
        load_advisory(path)
