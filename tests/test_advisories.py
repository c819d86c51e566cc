"""Version strings as peers report them, and branch-aware advisory matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.advisories import AdvisoryError, load_advisories, load_advisory, parse_version

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
    ],
)
def test_real_version_strings(text: str, release: tuple[int, ...], final: bool) -> None:
    version = parse_version(text)
    assert version is not None
    assert (version.release, version.final) == (release, final)


@pytest.mark.parametrize("text", ["", "unknown", None, 4, "latest"])
def test_not_versions(text: object) -> None:
    assert parse_version(text) is None


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


def test_upgrade_target_is_the_branch_fix() -> None:
    advisory = ADVISORIES["CVE-2024-23832"]
    assert str(advisory.fixed_in(parse_version("4.1.2"))) == "4.1.13"  # type: ignore[arg-type]
    assert str(advisory.fixed_in(parse_version("3.4.1"))) == "4.2.5"  # type: ignore[arg-type]


def test_operator_advisories_add_and_replace(tmp_path: Path) -> None:
    (tmp_path / "local.toml").write_text(
        'id = "LOCAL-1"\nsoftware = ["GoToSocial"]\nseverity = "low"\nsummary = "s"\nfixed = ["0.19.2"]\n'
    )
    (tmp_path / "override.toml").write_text(
        'id = "CVE-2025-30741"\nsoftware = ["pixelfed"]\nsummary = "stricter"\nfixed = ["0.12.6"]\n'
    )
    advisories = {advisory.id: advisory for advisory in load_advisories(tmp_path)}
    assert advisories["LOCAL-1"].concerns("gotosocial")
    assert advisories["CVE-2025-30741"].summary == "stricter"


@pytest.mark.parametrize(
    "content",
    ['id = "X"\nsoftware = ["a"]\nsummary = "s"\nfixed = ["next"]\n', 'id = "X"\n', "not toml ==="],
)
def test_a_broken_advisory_is_named(tmp_path: Path, content: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(content)
    with pytest.raises(AdvisoryError, match=r"broken\.toml"):
        load_advisory(path)
