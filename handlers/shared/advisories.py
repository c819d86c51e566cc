"""Security advisories for federated software, which versions they affect, and whom they harm. Pure: no
I/O but reading the advisory and fork files.

An advisory is a TOML file (`handlers/advisories/`, plus the operator's TOCSIN_ADVISORY_DIR): the
software it concerns, the first fixed version of each release branch, optionally the first affected
version and the dates the vulnerable code and the fixes reached the development branch, and who is
harmed: `exposes` says what of *this* instance is at risk on a vulnerable peer ("none" when the harm falls
on that server only) and `exploited` whether exploitation is known.

Matching is branch-aware (a branch is major.minor): 4.1.13 is patched although 4.2's fix is 4.2.5, while
a branch that got no fix of its own (older than the newest fixed branch) is affected, and a release of a
newer branch was made after the fixes. Pre-releases are judged by what the string tells: a branch's
pre-releases are cut after the previous branch's final release, so when that final contains the fix (it
is newer than every fixed branch, or the newest fixed branch's entry is its first release, x.y.0 or one
of its pre-releases) they contain it too. Only pre-releases that may predate the fix are read closer:
alpha/beta/rc labels against a pre-release the advisory names, dated nightlies against its dates; what
the string cannot tell is *uncertain*.

Forks (`handlers/forks.toml`, plus `forks.toml` in TOCSIN_ADVISORY_DIR) report their own NodeInfo
software name; the table maps each to its upstream, so Mastodon's advisories apply to Hometown, glitch-soc
derivatives and the like, read through the upstream version in their version string (a fork that reports
only its own numbering, like Fedibird's "0.1", has an unreadable upstream version).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path

BUILTIN_ADVISORIES = Path(__file__).resolve().parent / "advisories"
BUILTIN_FORKS = Path(__file__).resolve().parent / "forks.toml"
FORKS_FILE = "forks.toml"
"""The operator's fork table, in TOCSIN_ADVISORY_DIR beside their advisories (never read as an advisory)."""

SEVERITIES = ("low", "moderate", "high", "critical")


@dataclass(frozen=True)
class Exposed:
    """One thing of this instance a vulnerable peer puts at risk, and whether a domain block protects it.

    A domain block stops what we deliver to that server (posts, followers-only posts, DMs, media: a
    suspension severs its follows of our members) and what it delivers to us. It does not stop that
    server from believing activities forged in our members' names: those go from the attacker to it,
    never through us."""

    words: str  # as the moderators' DM names it
    block_protects: bool
    why: str  # what a block stops, or why it stops nothing (said in the DM and `tocsin scan`)


EXPOSURES = {
    "followers-only-posts": Exposed(
        "our members' followers-only posts", True, "a block stops our followers-only posts reaching them"
    ),
    "direct-messages": Exposed("our members' direct messages", True, "a block stops our direct messages reaching them"),
    "media": Exposed("our members' media", True, "a block stops our media reaching them"),
    "account-takeover-of-our-users": Exposed(
        "our members' accounts as seen there",
        False,
        "activities forged in our members' names go to them, never through us",
    ),
}
"""What of this instance a vulnerable peer puts at risk, as an advisory's `exposes` names it, with the
stated answer to "does blocking protect": a block is proposed only for an advisory where it does.
`exposes = ["none"]` (or empty): the harm falls on that server only, which no block of ours changes."""
NO_BLOCK = "a block would not stop this: tell their admins"
HARM_THEIRS_ONLY = "the harm is theirs"

# A version starts with at least major.minor: a bare number is a git hash or a build counter, not a version.
_RELEASE = re.compile(r"^\s*v?(\d+(?:\.\d+)+)(.*)$", re.DOTALL)
# After the numbers: a pre-release marker (4.7.0-alpha.2, 0.8.0rc1, 2.0.0a2, "3.0.0 RC5",
# 4.5.0-nightly.2025-07-17, 24.04-dev.2), or a nightly build named in the metadata (Mastodon's nightlies
# of 2023: 4.1.2+nightly-20230601). Other build metadata and fork names (+glitch, +git-6574dc8,
# -724-gf917285b-develop, -m544) are not pre-releases.
_PRE_RELEASE = re.compile(
    r"^(?:[-.~_ ]?(?:alpha|beta|rc|pre|preview|nightly|dev|snapshot)(?![a-z])|[ab]\d|\+nightly(?![a-z]))",
    re.IGNORECASE,
)
# What may follow the numbers at all: nothing, a separator, or a pre-release marker. "582abc1" (a git
# hash that starts with digits) is then no version.
_AFTER_NUMBERS = re.compile(r"^(?:$|[-+~_ .(]|rc|a\d|b\d)", re.IGNORECASE)
_BUILD_DATE = re.compile(r"(20\d\d)-?([01]\d)-?([0-3]\d)")
# A pre-release that orders: alpha < beta < rc, then its number (4.3.0-alpha.1, 4.2.0-beta1, 0.8.0rc1,
# 2.0.0a2). Nightlies, dev builds and snapshots do not order by their label (their date may).
_STAGE = re.compile(r"^[-.~_ ]?(alpha|beta|rc|a|b)\.?(\d*)(?![a-z])", re.IGNORECASE)
_STAGE_RANK = {"alpha": 0, "a": 0, "beta": 1, "b": 1, "rc": 2}


@dataclass(frozen=True, order=True)
class Version:
    release: tuple[int, ...]  # at least three numbers: (0, 12) reads as (0, 12, 0)
    final: bool  # False for a pre-release, which comes before its release
    text: str = field(compare=False)
    built: date | None = field(default=None, compare=False)  # a nightly's date (4.5.0-nightly.2025-07-17)
    stage: tuple[int, int] | None = field(default=None, compare=False)  # alpha.1 → (0, 1), rc2 → (2, 2)

    @property
    def branch(self) -> tuple[int, int]:
        return self.release[0], self.release[1]

    @property
    def opens_branch(self) -> bool:
        """x.y.0 or one of its pre-releases: the branch's first final release (not a patch release)."""
        return not any(self.release[2:])

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
    rest = match.group(2)
    if _PRE_RELEASE.match(rest) is None:
        return Version(release, final=True, text=text.strip())
    built = _build_date(rest)
    stage = _STAGE.match(rest) if built is None else None  # a dated build is placed by its date
    ordered = (_STAGE_RANK[stage.group(1).lower()], int(stage.group(2) or 0)) if stage else None
    return Version(release, final=False, text=text.strip(), built=built, stage=ordered)


def _build_date(rest: str) -> date | None:
    found = _BUILD_DATE.search(rest)
    if found is None:
        return None
    try:
        return date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
    except ValueError:
        return None


def contains(version: Version, first: Version, reached: date | None) -> bool | None:
    """Whether a build reporting `version` contains a change whose first release is `first` and which
    reached the development branch on `reached`; None when the version string cannot tell.

    A build dated on the day itself is counted as before it: nightlies are built early in the day
    (Mastodon's at 02:00 UTC), fixes and releases land later."""
    if version.release != first.release:
        return version.release > first.release
    if version.final:
        return True  # the release itself, or a final of the release a pre-release names
    if version.stage is not None and first.stage is not None:
        return version.stage >= first.stage  # alpha.1 before beta.2 before rc.1
    if version.built is not None and reached is not None:
        return version.built > reached
    if first.final and not first.opens_branch:
        return False  # a patch release's pre-release is cut just before it, from the branch without the change
    return None  # a new branch's development build, cut before or after the change


# --- Forks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fork:
    name: str  # its NodeInfo software.name, lower case
    upstream: str  # the software whose advisories apply to it
    label: str  # as moderators read it ("Hometown")
    upstream_label: str  # "Mastodon"
    own_version: bool = False  # its version is its own numbering (Fedibird's "0.1"), not the upstream's


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
                    _own_version(entry.get("version", "upstream"), path),
                )
        except (tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError, OSError) as error:
            raise AdvisoryError(f"{path}: {type(error).__name__}: {error}") from None
    return forks


def _own_version(value: object, path: Path) -> bool:
    if value not in ("upstream", "own"):
        raise AdvisoryError(f'{path}: version = "upstream" (the default) or "own", not {value!r}')
    return value == "own"


def read_running(name: str, version_text: str, forks: dict[str, Fork]) -> Running:
    """A peer's software and version as advisories see them.

    A fork's version string carries its upstream version either first ("4.2.10+hometown-1.1.2",
    "4.6.5+glitch") or, in Hometown's old format, after the `+` ("1.0.7+3.5.5": Hometown 1.0.7 on
    Mastodon 3.5.5). The part after the `+` is the upstream version when it reads as one. A fork whose
    version is its own numbering (`version = "own"` in the table) has no other upstream version."""
    name = name.lower()
    fork = forks.get(name)
    if fork is None:
        version = parse_version(version_text)
        return Running(name, version, version.text if version else version_text)
    own, plus, after = version_text.partition("+")
    upstream = parse_version(after) if plus else None
    if upstream is not None:  # "1.0.7+3.5.5"
        return Running(fork.upstream, upstream, f"{fork.label} {own.strip()} ({fork.upstream_label} {upstream.text})")
    upstream = None if fork.own_version else parse_version(version_text)
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
    UNCERTAIN = "uncertain"  # a pre-release the string cannot place before or after the fix (or the flaw)


@dataclass(frozen=True)
class Advisory:
    id: str
    software: tuple[str, ...]  # NodeInfo software names, lower case
    severity: str  # low | moderate | high | critical
    summary: str
    url: str
    fixed: tuple[Version, ...]  # first fixed version per release branch, ascending (one per branch)
    introduced: Version | None = None  # first affected version; None: every version before a fix
    exposes: tuple[str, ...] = ()  # keys of EXPOSURES; empty: harm to the vulnerable server only
    exploited: bool = False  # known exploitation
    published: date | None = None  # when the fixes were released (and reached the development branch)
    introduced_date: date | None = None  # when the vulnerable code reached the development branch

    @property
    def exposes_members(self) -> bool:
        """Whether this instance's members are harmed by a vulnerable peer (a block may still not help)."""
        return bool(self.exposes)

    @property
    def block_protects(self) -> bool:
        """Whether a block stops some of the harm to our members: only then is a block proposed."""
        return any(EXPOSURES[key].block_protects for key in self.exposes)

    @property
    def block_why(self) -> str:
        """Why a block is proposed (what it stops), or that it would not stop the harm (tell their admins)."""
        protecting = [EXPOSURES[key].why for key in self.exposes if EXPOSURES[key].block_protects]
        return "; ".join(protecting) or NO_BLOCK

    @property
    def no_block_reason(self) -> str:
        """Why a block would not stop the harm ("" when it would)."""
        if self.block_protects:
            return ""
        return "; ".join(EXPOSURES[key].why for key in self.exposes) or HARM_THEIRS_ONLY

    @property
    def exposure_words(self) -> str:
        return ", ".join(EXPOSURES[key].words for key in self.exposes) or "nothing of ours (harm to that server only)"

    def concerns(self, software: str) -> bool:
        return software.lower() in self.software

    def assess(self, version: Version) -> Verdict:
        flawed = True if self.introduced is None else contains(version, self.introduced, self.introduced_date)
        if flawed is False:
            return Verdict.FIXED  # older than the flaw
        patched = self._has_fix(version)
        if patched:
            return Verdict.FIXED
        if flawed is None or patched is None:
            return Verdict.UNCERTAIN
        return Verdict.AFFECTED

    def _has_fix(self, version: Version) -> bool | None:
        fix = next((fix for fix in self.fixed if fix.branch == version.branch), None)
        if fix is not None:
            return contains(version, fix, self.published)
        newest = self.fixed[-1]
        if version.branch < newest.branch:
            return False  # a branch with no fix of its own, older than the newest fixed one
        if version.final or self._previous_final_has_fix(version.branch):
            return True  # a newer branch's release, or a pre-release cut after a final with the fix
        if version.built is not None and self.published is not None:
            return version.built > self.published
        return None  # an undated pre-release of the branch right after the newest fixed one

    def _previous_final_has_fix(self, branch: tuple[int, int]) -> bool:
        """Whether the final release of the branch before `branch` (newer than every fixed branch)
        contains the fix: surely when that branch is newer than the newest fixed branch, else only when
        the newest fixed branch's entry is its first release. Release branches are numbered
        consecutively (4.6 comes before 4.7); before 5.0 comes some 4.x, at least the newest fixed one."""
        newest = self.fixed[-1]
        major, minor = branch
        lowest_previous = (major, minor - 1) if minor > 0 else (major - 1, 0)
        if minor > 0 and lowest_previous > newest.branch:
            return True
        if minor == 0 and lowest_previous[0] > newest.branch[0]:
            return True
        return newest.opens_branch

    def affects(self, version: Version) -> bool:
        return self.assess(version) is Verdict.AFFECTED

    def fixed_in(self, version: Version) -> Version:
        """The version to upgrade to: its branch's fix, else the newest fixed release."""
        same_branch = next((fix for fix in self.fixed if fix.branch == version.branch), None)
        finals = [fix for fix in self.fixed if fix.final]
        return same_branch or (finals[-1] if finals else self.fixed[-1])


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
        if len({fix.branch for fix in fixed}) != len(fixed):
            raise AdvisoryError(f"{path}: fixed names one version per release branch (major.minor)")
        introduced = data.get("introduced")
        published = _date(data, "published", path)
        introduced_date = _date(data, "introduced_date", path)
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
            introduced_date=introduced_date,
        )
    except (KeyError, TypeError) as error:
        raise AdvisoryError(f"{path}: {type(error).__name__}: {error}") from None


def _date(data: dict[str, object], key: str, path: Path) -> date | None:
    value = data.get(key)
    if value is not None and not isinstance(value, date):
        raise AdvisoryError(f"{path}: {key} must be a date ({key} = 2024-02-01)")
    return value.date() if isinstance(value, datetime) else value  # a TOML date-time: its day


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
