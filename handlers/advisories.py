"""Security advisories for federated software, which versions they affect, and whom they harm. Pure: no
I/O but reading the advisory and fork files.

An advisory is a TOML file (`handlers/advisories/`, plus the operator's TOCSIN_ADVISORY_DIR): the
software it concerns, the first fixed version of each release branch, optionally the first affected
version and the date the fixes were published, and who is harmed: `exposes` says what of *this*
instance is at risk on a vulnerable peer ("none" when the harm falls on that server only) and
`exploited` whether exploitation is known. Matching is branch-aware: 4.1.13 is patched although 4.2's
fix is 4.2.5, while a branch that got no fix of its own (older than the oldest fixed branch, or between
two) is affected. A pre-release of a branch newer than every fix is affected when it was built before
the fixes were published, fixed when built after, and uncertain when it carries no date.

Forks (`handlers/forks.toml`, plus `forks.toml` in TOCSIN_ADVISORY_DIR) report their own NodeInfo
software name; the table maps each to its upstream, so Mastodon's advisories apply to Hometown, glitch-soc
derivatives and the like, read through the upstream version in their version string.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path

BUILTIN_ADVISORIES = Path(__file__).resolve().parent / "advisories"
BUILTIN_FORKS = Path(__file__).resolve().parent / "forks.toml"
FORKS_FILE = "forks.toml"
"""The operator's fork table, in TOCSIN_ADVISORY_DIR beside their advisories (never read as an advisory)."""

SEVERITIES = ("low", "moderate", "high", "critical")

EXPOSURES = {
    "followers-only-posts": "our members' followers-only posts",
    "direct-messages": "our members' direct messages",
    "account-takeover-of-our-users": "our members' accounts as seen there",
    "media": "our members' media",
}
"""What of this instance a vulnerable peer puts at risk, as an advisory's `exposes` names it, and as the
moderators' DM words it. `exposes = ["none"]` (or empty): the harm falls on that server only."""

# A version starts with at least major.minor: a bare number is a git hash or a build counter, not a version.
_RELEASE = re.compile(r"^\s*v?(\d+(?:\.\d+)+)(.*)$", re.DOTALL)
# After the numbers: a pre-release marker (4.7.0-alpha.2, 0.8.0rc1, 2.0.0a2, "3.0.0 RC5",
# 4.5.0-nightly.2025-07-17, 24.04-dev.2). Build metadata and fork names (+glitch, +git-6574dc8,
# -724-gf917285b-develop, -m544) are not pre-releases.
_PRE_RELEASE = re.compile(
    r"^(?:[-.~_ ]?(?:alpha|beta|rc|pre|preview|nightly|dev|snapshot)(?![a-z])|[ab]\d)", re.IGNORECASE
)
# What may follow the numbers at all: nothing, a separator, or a pre-release marker. "582abc1" (a git
# hash that starts with digits) is then no version.
_AFTER_NUMBERS = re.compile(r"^(?:$|[-+~_ .(]|rc|a\d|b\d)", re.IGNORECASE)
_BUILD_DATE = re.compile(r"(20\d\d)-?([01]\d)-?([0-3]\d)")


@dataclass(frozen=True, order=True)
class Version:
    release: tuple[int, ...]  # at least three numbers: (0, 12) reads as (0, 12, 0)
    final: bool  # False for a pre-release, which comes before its release
    text: str = field(compare=False)
    built: date | None = field(default=None, compare=False)  # a nightly's date (4.5.0-nightly.2025-07-17)

    @property
    def branch(self) -> tuple[int, int]:
        return self.release[0], self.release[1]

    def __str__(self) -> str:
        return self.text


def parse_version(text: object) -> Version | None:
    """The version in a NodeInfo `software.version`, or None when it is not one (no major.minor at the
    start, or digits running into letters as in a git hash)."""
    if not isinstance(text, str):
        return None
    match = _RELEASE.match(text)
    if match is None or _AFTER_NUMBERS.match(match.group(2)) is None:
        return None
    numbers = tuple(int(part) for part in match.group(1).split("."))
    release = (*numbers, 0, 0, 0)[: max(3, len(numbers))]
    final = _PRE_RELEASE.match(match.group(2)) is None
    return Version(release, final=final, text=text.strip(), built=None if final else _build_date(match.group(2)))


def _build_date(rest: str) -> date | None:
    found = _BUILD_DATE.search(rest)
    if found is None:
        return None
    try:
        return date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
    except ValueError:
        return None


# --- Forks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fork:
    name: str  # its NodeInfo software.name, lower case
    upstream: str  # the software whose advisories apply to it
    label: str  # as moderators read it ("Hometown")
    upstream_label: str  # "Mastodon"


@dataclass(frozen=True)
class Running:
    """What a peer runs, read through the fork table: the software advisories name, and its version."""

    software: str  # upstream name for a fork ("mastodon" for Hometown)
    version: Version | None  # the upstream version; None: unreadable
    shown: str  # for moderators: "4.6.5", or "Hometown 1.0.7 (Mastodon 3.5.5)"


def load_forks(operator_dir: Path | None = None) -> dict[str, Fork]:
    """The shipped fork table, then the operator's (an entry with the same name replaces the shipped one)."""
    forks: dict[str, Fork] = {}
    for path in (BUILTIN_FORKS, operator_dir / FORKS_FILE if operator_dir is not None else None):
        if path is None or not path.exists():
            continue
        try:
            table = tomllib.loads(path.read_text())
            for name, entry in table.items():
                upstream = str(entry["upstream"]).lower()
                forks[name.lower()] = Fork(
                    name.lower(),
                    upstream,
                    str(entry.get("label", name)),
                    str(entry.get("upstream_label", upstream.title())),
                )
        except (tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError, OSError) as error:
            raise AdvisoryError(f"{path}: {type(error).__name__}: {error}") from None
    return forks


def read_running(name: str, version_text: str, forks: dict[str, Fork]) -> Running:
    """A peer's software and version as advisories see them.

    A fork's version string carries its upstream version either first ("4.2.10+hometown-1.1.2",
    "4.6.5+glitch") or, in Hometown's old format, after the `+` ("1.0.7+3.5.5": Hometown 1.0.7 on
    Mastodon 3.5.5). The part after the `+` is the upstream version when it reads as one."""
    name = name.lower()
    fork = forks.get(name)
    if fork is None:
        version = parse_version(version_text)
        return Running(name, version, version.text if version else version_text)
    own, plus, after = version_text.partition("+")
    upstream = parse_version(after) if plus else None
    if upstream is not None:  # "1.0.7+3.5.5"
        return Running(fork.upstream, upstream, f"{fork.label} {own.strip()} ({fork.upstream_label} {upstream.text})")
    upstream = parse_version(version_text)
    if upstream is None:
        return Running(fork.upstream, None, f"{fork.label} {version_text}")
    fork_version = _FORK_VERSION.search(after)  # "hometown-1.1.2", "kmyblue.17.1"
    label = f"{fork.label} {fork_version.group(0)}" if fork_version else fork.label
    return Running(fork.upstream, upstream, f"{label} ({fork.upstream_label} {own.strip()})")


_FORK_VERSION = re.compile(r"\d+(?:\.\d+)+")


# --- Advisories ----------------------------------------------------------------------------------


class Verdict(StrEnum):
    AFFECTED = "affected"
    FIXED = "fixed"  # or never affected
    UNCERTAIN = "uncertain"  # a dateless pre-release of a branch newer than every fix


@dataclass(frozen=True)
class Advisory:
    id: str
    software: tuple[str, ...]  # NodeInfo software names, lower case
    severity: str  # low | moderate | high | critical
    summary: str
    url: str
    fixed: tuple[Version, ...]  # first fixed version per release branch, ascending
    introduced: Version | None = None  # first affected version; None: every version before a fix
    exposes: tuple[str, ...] = ()  # keys of EXPOSURES; empty: harm to the vulnerable server only
    exploited: bool = False  # known exploitation
    published: date | None = None  # when the fixes were released

    @property
    def exposes_members(self) -> bool:
        """Whether this instance's members are harmed by a vulnerable peer: only then is a block proposed."""
        return bool(self.exposes)

    @property
    def exposure_words(self) -> str:
        return ", ".join(EXPOSURES[key] for key in self.exposes) or "nothing of ours (harm to that server only)"

    def concerns(self, software: str) -> bool:
        return software.lower() in self.software

    def assess(self, version: Version) -> Verdict:
        if self.introduced is not None and version < self.introduced:
            return Verdict.FIXED
        for fix in self.fixed:
            if fix.branch == version.branch:
                return Verdict.AFFECTED if version < fix else Verdict.FIXED
        if version.release < self.fixed[-1].release:
            return Verdict.AFFECTED  # a branch with no fix of its own, older than the newest
        if version.final:
            return Verdict.FIXED  # a release of a newer branch: made after the fixes
        # A pre-release or nightly of a newer branch: it has the fix only if it was built after it.
        if version.built is not None and self.published is not None:
            return Verdict.AFFECTED if version.built < self.published else Verdict.FIXED
        return Verdict.UNCERTAIN

    def affects(self, version: Version) -> bool:
        return self.assess(version) is Verdict.AFFECTED

    def fixed_in(self, version: Version) -> Version:
        """The version to upgrade to: its branch's fix, else the newest branch's."""
        return next((fix for fix in self.fixed if fix.branch == version.branch), self.fixed[-1])


class AdvisoryError(ValueError):
    """An advisory or fork file that cannot be used; the message names the file."""


def load_advisory(path: Path) -> Advisory:
    return _advisory(_read_toml(path), path)


def _read_toml(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, OSError) as error:
        raise AdvisoryError(f"{path}: {type(error).__name__}: {error}") from None


def _advisory(data: dict[str, object], path: Path) -> Advisory:
    try:
        fixed = tuple(sorted(_version(text, path) for text in data["fixed"]))  # type: ignore[attr-defined]
        severity = str(data.get("severity", "high")).lower()
        if severity not in SEVERITIES or not fixed:
            raise AdvisoryError(f"{path}: severity must be one of {', '.join(SEVERITIES)}, and fixed not empty")
        introduced = data.get("introduced")
        published = data.get("published")
        if published is not None and not isinstance(published, date):
            raise AdvisoryError(f"{path}: published must be a date (published = 2024-02-01)")
        return Advisory(
            id=str(data["id"]),
            software=tuple(str(name).lower() for name in data["software"]),  # type: ignore[attr-defined]
            severity=severity,
            summary=str(data["summary"]),
            url=str(data.get("url", "")),
            fixed=fixed,
            introduced=_version(introduced, path) if introduced is not None else None,
            exposes=_exposes(data.get("exposes"), path),
            exploited=bool(data.get("exploited", False)),
            published=published,
        )
    except (KeyError, TypeError) as error:
        raise AdvisoryError(f"{path}: {type(error).__name__}: {error}") from None


def _exposes(value: object, path: Path) -> tuple[str, ...]:
    """`exposes` is required: whether a block protects anyone must be a decision, never a default."""
    if value is None:
        raise AdvisoryError(f'{path}: exposes is missing (one or more of {", ".join(EXPOSURES)}, or "none")')
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise AdvisoryError(f"{path}: exposes must be a list of names")
    unknown = [name for name in names if name not in EXPOSURES and name != "none"]
    if unknown or ("none" in names and len(names) > 1):
        raise AdvisoryError(f'{path}: exposes {names}: use names from {", ".join(EXPOSURES)}, or only "none"')
    return tuple(name for name in names if name != "none")


def _version(text: object, path: Path) -> Version:
    version = parse_version(text)
    if version is None:
        raise AdvisoryError(f"{path}: {text!r} is not a version")
    return version


def load_advisories(operator_dir: Path | None = None) -> list[Advisory]:
    """The shipped advisories, then the operator's: a file with a shipped advisory's id overrides the
    fields it sets (the rest stay as shipped); a new id adds an advisory."""
    shipped: dict[str, dict[str, object]] = {}
    by_id: dict[str, Advisory] = {}
    for directory in (BUILTIN_ADVISORIES, operator_dir):
        if directory is None:
            continue
        for path in sorted(directory.glob("*.toml")):
            if path.name == FORKS_FILE:
                continue
            data = _read_toml(path)
            base = shipped.get(str(data.get("id"))) if directory is operator_dir else None
            advisory = _advisory({**(base or {}), **data}, path)
            if directory is BUILTIN_ADVISORIES:
                shipped[advisory.id] = data
            by_id[advisory.id] = advisory
    return list(by_id.values())
