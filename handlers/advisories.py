"""Security advisories for federated software, and which versions they affect. Pure: no I/O but reading
the advisory files.

An advisory is a TOML file (`handlers/advisories/`, plus the operator's TOCSIN_ADVISORY_DIR): the
software it concerns, the first fixed version of each release branch, optionally the first affected
version. Matching is branch-aware: 4.1.13 is patched although 4.2's fix is 4.2.5, while a branch that got
no fix of its own (older than the oldest fixed branch, or between two) is affected.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

BUILTIN_ADVISORIES = Path(__file__).resolve().parent / "advisories"

SEVERITIES = ("low", "moderate", "high", "critical")

_RELEASE = re.compile(r"^\s*v?(\d+(?:\.\d+)*)(.*)$", re.DOTALL)
# After the numbers: a pre-release marker (4.7.0-alpha.2, 0.8.0rc1, 4.5.0-nightly.2025-07-17, 24.04-dev.2).
# Build metadata and fork names (+glitch, +git-6574dc8, -724-gf917285b-develop, -m544) are not pre-releases.
_PRE_RELEASE = re.compile(r"^[-.~_]?(alpha|beta|rc|pre|preview|nightly|dev|snapshot)(?![a-z])", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Version:
    release: tuple[int, ...]  # at least three numbers: (0, 12) reads as (0, 12, 0)
    final: bool  # False for a pre-release, which comes before its release
    text: str = field(compare=False)

    @property
    def branch(self) -> tuple[int, int]:
        return self.release[0], self.release[1]

    def __str__(self) -> str:
        return self.text


def parse_version(text: object) -> Version | None:
    """The version in a NodeInfo `software.version`, or None when it starts with no number."""
    if not isinstance(text, str):
        return None
    match = _RELEASE.match(text)
    if match is None:
        return None
    numbers = tuple(int(part) for part in match.group(1).split("."))
    release = (*numbers, 0, 0, 0)[: max(3, len(numbers))]
    return Version(release, final=_PRE_RELEASE.match(match.group(2)) is None, text=text.strip())


@dataclass(frozen=True)
class Advisory:
    id: str
    software: tuple[str, ...]  # NodeInfo software names, lower case
    severity: str  # low | moderate | high | critical
    summary: str
    url: str
    fixed: tuple[Version, ...]  # first fixed version per release branch, ascending
    introduced: Version | None = None  # first affected version; None: every version before a fix

    def concerns(self, software: str) -> bool:
        return software.lower() in self.software

    def affects(self, version: Version) -> bool:
        if self.introduced is not None and version < self.introduced:
            return False
        for fix in self.fixed:
            if fix.branch == version.branch:
                return version < fix
        return version.release < self.fixed[-1].release  # a branch with no fix of its own, older than the newest

    def fixed_in(self, version: Version) -> Version:
        """The version to upgrade to: its branch's fix, else the newest branch's."""
        return next((fix for fix in self.fixed if fix.branch == version.branch), self.fixed[-1])


class AdvisoryError(ValueError):
    """An advisory file that cannot be used; the message names the file."""


def load_advisory(path: Path) -> Advisory:
    try:
        data = tomllib.loads(path.read_text())
        fixed = tuple(sorted(_version(text, path) for text in data["fixed"]))
        severity = str(data.get("severity", "high")).lower()
        if severity not in SEVERITIES or not fixed:
            raise AdvisoryError(f"{path}: severity must be one of {', '.join(SEVERITIES)}, and fixed not empty")
        introduced = data.get("introduced")
        return Advisory(
            id=str(data["id"]),
            software=tuple(str(name).lower() for name in data["software"]),
            severity=severity,
            summary=str(data["summary"]),
            url=str(data.get("url", "")),
            fixed=fixed,
            introduced=_version(introduced, path) if introduced is not None else None,
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, OSError) as error:
        raise AdvisoryError(f"{path}: {type(error).__name__}: {error}") from None


def _version(text: object, path: Path) -> Version:
    version = parse_version(text)
    if version is None:
        raise AdvisoryError(f"{path}: {text!r} is not a version")
    return version


def load_advisories(operator_dir: Path | None = None) -> list[Advisory]:
    """The shipped advisories, then the operator's (one with the same id replaces the shipped one)."""
    by_id: dict[str, Advisory] = {}
    for directory in (BUILTIN_ADVISORIES, operator_dir):
        if directory is not None:
            for path in sorted(directory.glob("*.toml")):
                advisory = load_advisory(path)
                by_id[advisory.id] = advisory
    return list(by_id.values())
