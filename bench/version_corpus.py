"""Builds tests/fixtures/versions/corpus.tsv: NodeInfo version strings that servers report, and for each
shipped advisory what builds reporting that string are — derived from the software's history, never from
Tocsin's matching (handlers/shared/advisories.py is not imported here).

    python -m bench.version_corpus [--glitch-soc GIT_DIR] [--output FILE]

Sources (public): the git history of glitch-soc/mastodon, which carries Mastodon's `main` (the first-parent
chain of the upstream commits glitch-soc merges) and glitch-soc's own; glitch-soc's version tags;
Mastodon's release list with dates (endoflife-date/release-data, releases/mastodon.json, plus the
later releases tagged in glitch-soc and the "Bump version to …" pull requests of mastodon/mastodon);
Mastodon's and glitch-soc's nightly workflow (.github/workflows/build-nightly.yml: 02:00 UTC daily); the
GitHub security advisories' patched versions; Pixelfed's releases; and version strings that appear in
public code, docs and fixtures (cited per row).

The oracle, per kind of string:
- a final release ("4.2.5", "4.5.10+hometown-1.2.1"): it has the flaw when the advisory's affected range
  starts at or below it; it has the fix when it is at least its branch's patched version, or when its
  branch left main (main first reported a newer branch) after the fix reached main; else it lacks it;
- a label of Mastodon's or glitch-soc's main ("4.3.0-alpha.1", "4.2.0-rc1", "4.1.2+glitch"): every
  first-parent commit of that line that reports it; a commit has a change when the change's commit is its
  ancestor (git merge-base --is-ancestor). A fix merged minutes before the security release's version bump
  counts from that bump (the builds in between are the release being cut, not something anyone runs);
- a nightly: the line's commit at 02:00 UTC that day;
- a tag (glitch-soc's, Mastodon's stable pre-release tags): the tag's commit.
All builds have the flaw and lack the fix: affected; none has the flaw, or all have the fix: fixed; else
(or unknown) uncertain: the string cannot tell. Mastodon's TootRoot flaw has no single commit: its range
starts at 3.5.0, so main builds between the 3.4.0 and 3.5.0 bumps (3.5.0rc1 among them) are unknown,
later ones have it.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import datetime
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

GLITCH_SOC = Path("/work/.mirror/glitch-soc+mastodon/repo")
OUTPUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "versions" / "corpus.tsv"
UPSTREAM_TIP = "df1439c18b6160ba69562504ec5726d436c4b462"  # Mastodon main as glitch-soc merged it, 2026-08-07
GLITCH_TIP = "839591f21bde483366347a4e5e9a85603f20d0a2"  # glitch-soc main, 2026-08-08
NIGHTLY_HOUR = 2  # both workflows: cron '0 2 * * *' (UTC)
RELEASE_BUMP_HOURS = 6  # a fix merged this long before the next version bump ships with that bump
ADVISORIES = ("CVE-2023-36460", "CVE-2024-23832", "CVE-2025-30741", "CVE-2026-33869")
MASTODON_ADVISORIES = ("CVE-2023-36460", "CVE-2024-23832", "CVE-2026-33869")

# Mastodon's final releases and their dates: endoflife-date/release-data releases/mastodon.json (to
# 2025-09-16), then glitch-soc's tags of the same releases, then the "Bump version to vX" pull requests of
# mastodon/mastodon (#37412 4.2.29, #40151 4.4.23, #40519 4.5.18, #40517 4.7.2; their date unknown: -).
MASTODON_RELEASES = """
1.0 2017-02-05|1.1 2017-04-07|1.1.1 2017-04-09|1.1.2 2017-04-13|1.2 2017-04-16|1.2.1 2017-04-19|1.2.2 2017-04-19
1.3 2017-04-27|1.3.1 2017-04-27|1.3.2 2017-04-29|1.3.3 2017-05-06|1.4.1 2017-05-28|1.4.2 2017-06-14|1.4.3 2017-06-15
1.4.4 2017-06-21|1.4.5 2017-06-22|1.4.6 2017-06-23|1.4.7 2017-07-01|1.5.0 2017-08-01|1.5.1 2017-08-06
1.6.0 2017-09-10|1.6.1 2017-09-17|2.0.0 2017-10-18|2.1.0 2017-12-15|2.1.1 2018-01-04|2.1.2 2018-01-05
2.1.3 2018-01-09|2.2.0 2018-01-29|2.3.0 2018-03-09|2.3.1 2018-03-13|2.3.2 2018-03-22|2.3.3 2018-03-27
2.4.0 2018-05-22|2.4.1 2018-06-10|2.4.2 2018-06-19|2.4.3 2018-07-11|2.4.4 2018-08-22|2.4.5 2018-08-24
2.5.0 2018-09-03|2.5.1 2018-10-07|2.5.2 2018-10-12|2.6.0 2018-10-30|2.6.1 2018-10-31|2.6.2 2018-11-23
2.6.3 2018-11-30|2.6.4 2018-11-30|2.6.5 2018-12-02|2.7.0 2019-01-20|2.7.1 2019-01-28|2.7.2 2019-02-17
2.7.3 2019-02-23|2.7.4 2019-03-05|2.8.0 2019-04-10|2.8.1 2019-05-04|2.8.2 2019-05-05|2.8.3 2019-05-19
2.8.4 2019-05-24|2.9.0 2019-06-13|2.9.1 2019-06-22|2.9.2 2019-06-22|2.9.3 2019-08-10|2.9.4 2020-02-27
3.0.0 2019-10-03|3.0.1 2019-10-10|3.0.2 2020-02-27|3.1.0 2020-02-09|3.1.1 2020-02-10|3.1.2 2020-02-27
3.1.3 2020-04-05|3.1.4 2020-05-14|3.1.5 2020-07-07|3.2.0 2020-07-27|3.2.1 2020-10-19|3.2.2 2020-12-19
3.3.0 2020-12-27|3.3.1 2022-01-31|3.3.2 2022-02-02|3.3.3 2022-03-30|3.4.0 2021-05-16|3.4.1 2021-06-03
3.4.2 2021-11-06|3.4.3 2021-11-06|3.4.4 2021-11-26|3.4.5 2022-01-31|3.4.6 2022-02-03|3.4.7 2022-03-30
3.4.8 2022-05-26|3.4.9 2022-11-14|3.4.10 2022-11-14|3.5.0 2022-03-30|3.5.1 2022-04-08|3.5.2 2022-05-04
3.5.3 2022-05-26|3.5.4 2022-11-14|3.5.5 2022-11-14|3.5.6 2023-02-10|3.5.7 2023-03-16|3.5.8 2023-04-04
3.5.9 2023-07-06|3.5.10 2023-07-07|3.5.11 2023-07-21|3.5.12 2023-07-31|3.5.13 2023-09-05|3.5.14 2023-09-19
3.5.15 2023-10-10|3.5.16 2023-12-04|3.5.17 2024-02-01|3.5.18 2024-02-14|3.5.19 2024-02-16|4.0.0 2022-11-14
4.0.1 2022-11-14|4.0.2 2022-11-15|4.0.3 2023-03-16|4.0.4 2023-04-04|4.0.5 2023-07-06|4.0.6 2023-07-07
4.0.7 2023-07-21|4.0.8 2023-07-31|4.0.9 2023-09-05|4.0.10 2023-09-19|4.0.11 2023-09-20|4.0.12 2023-10-10
4.0.13 2024-02-01|4.0.14 2024-02-14|4.0.15 2024-02-16|4.1.0 2023-02-10|4.1.1 2023-03-16|4.1.2 2023-04-04
4.1.3 2023-07-06|4.1.4 2023-07-07|4.1.5 2023-07-21|4.1.6 2023-07-31|4.1.7 2023-09-05|4.1.8 2023-09-19
4.1.9 2023-09-20|4.1.10 2023-10-10|4.1.11 2023-12-04|4.1.12 2024-01-24|4.1.13 2024-02-01|4.1.14 2024-02-14
4.1.15 2024-02-16|4.1.16 2024-02-23|4.1.17 2024-05-30|4.1.18 2024-07-04|4.1.19 2024-08-16|4.1.20 2024-09-30
4.1.21 2024-12-03|4.1.22 2025-01-16|4.1.23 2025-02-27|4.1.24 2025-03-13|4.1.25 2025-04-02|4.2.0 2023-09-21
4.2.1 2023-10-10|4.2.2 2023-12-04|4.2.3 2023-12-05|4.2.4 2024-01-24|4.2.5 2024-02-01|4.2.6 2024-02-14
4.2.7 2024-02-16|4.2.8 2024-02-23|4.2.9 2024-05-30|4.2.10 2024-07-04|4.2.11 2024-08-16|4.2.12 2024-08-19
4.2.13 2024-09-30|4.2.14 2024-12-03|4.2.15 2025-01-16|4.2.16 2025-02-27|4.2.17 2025-02-27|4.2.18 2025-03-10
4.2.19 2025-03-13|4.2.20 2025-04-02|4.2.21 2025-05-06|4.2.22 2025-07-02|4.2.23 2025-07-23|4.2.24 2025-08-05
4.2.25 2025-09-16|4.2.27 2025-10-13|4.2.29 -|4.3.0 2024-10-08|4.3.1 2024-10-21|4.3.2 2024-12-03|4.3.3 2025-01-16
4.3.4 2025-02-27|4.3.5 2025-03-10|4.3.6 2025-03-13|4.3.7 2025-04-02|4.3.8 2025-05-06|4.3.9 2025-07-02
4.3.10 2025-07-23|4.3.11 2025-08-05|4.3.12 2025-09-16|4.3.13 2025-09-23|4.3.14 2025-10-13|4.3.15 2025-11-20
4.3.16 2025-12-08|4.3.17 2026-01-07|4.3.18 2026-01-20|4.3.19 2026-02-03|4.3.20 2026-02-24|4.3.21 2026-03-24
4.3.22 2026-04-15|4.3.23 2026-05-20|4.4.0 2025-07-08|4.4.1 2025-07-09|4.4.2 2025-07-23|4.4.3 2025-08-05
4.4.4 2025-09-16|4.4.5 2025-09-23|4.4.6 2025-10-13|4.4.7 2025-10-15|4.4.8 2025-10-21|4.4.9 2025-11-20
4.4.10 2025-12-08|4.4.11 2026-01-07|4.4.12 2026-01-20|4.4.13 2026-02-03|4.4.14 2026-02-24|4.4.15 2026-03-24
4.4.16 2026-04-15|4.4.17 2026-05-20|4.4.18 2026-06-03|4.4.19 2026-06-24|4.4.20 2026-06-25|4.4.21 2026-07-27
4.4.22 2026-08-07|4.4.23 -|4.5.0 2025-11-06|4.5.1 2025-11-13|4.5.2 2025-11-20|4.5.3 2025-12-08|4.5.4 2026-01-07
4.5.5 2026-01-20|4.5.6 2026-02-03|4.5.7 2026-02-24|4.5.8 2026-03-24|4.5.9 2026-04-15|4.5.10 2026-05-20
4.5.11 2026-06-03|4.5.12 2026-06-24|4.5.13 2026-06-25|4.5.14 2026-07-27|4.5.15 2026-08-07|4.5.18 -|4.6.0 2026-06-17
4.6.1 2026-06-24|4.6.2 2026-06-25|4.6.3 2026-07-03|4.6.4 2026-07-27|4.6.5 2026-08-07|4.7.2 -
"""

# Pixelfed releases (pixelfed/pixelfed tags to v0.11.13; later ones from its "Bump version to vX" / release
# pull requests: #5061 0.12.0, #5078 0.12.1, #5197 0.12.2, #5200 0.12.3, #5341 0.12.4, #6155 0.12.6,
# #7187 0.12.10, #7334 0.12.12, #7352 0.13.0, #7385 0.14.1; 0.12.5 is the advisory's fix; 0.12.9 from
# issue #6904). The 0.13 and 0.14 branches were created after 0.12.5.
PIXELFED_RELEASES = (
    *("0.8.0", "0.8.5", "0.8.6", "0.9.0", "0.9.4", "0.9.5", "0.9.6"),
    *(f"0.10.{patch}" for patch in range(11)),
    *(f"0.11.{patch}" for patch in range(14)),
    *(f"0.12.{patch}" for patch in (0, 1, 2, 3, 4, 5, 6, 9, 10, 12)),
    *("0.13.0", "0.14.1"),
)
PIXELFED_LATER_BRANCHES = {(0, 13), (0, 14)}

# Hometown (NodeInfo name "hometown"; Mastodon's version first since Hometown 1.1): strings seen in
# public code and releases, with the Mastodon release they are built on.
HOMETOWN_STRINGS = (
    ("4.0.10+hometown-1.1.1", "Pachli core/network Server.kt comment (real-world nodeinfo)"),
    ("4.0.15+hometown-1.1.1", "fedicat/Pachli ServerKind comments"),
    ("4.2.10+hometown-1.1.1", "hcommons.social RSS generator (public test fixture)"),
    ("4.2.12+hometown-1.1.1", "hometown-fork/hometown issue #1367"),
    ("4.5.0+hometown-1.1.2", "hometown-fork/hometown lib/mastodon/version.rb (indexed)"),
    ("4.5.10+hometown-1.2.1", "Pachli ServerTest (NodeInfo.Software hometown)"),
    ("4.5.11+hometown-1.2.1", "hometown-fork/hometown release v4.5.11+hometown-1.2.1 (PR #1409)"),
)

# Strings seen in public code, docs and fixtures: (NodeInfo name, string, where, line, how it was built).
# line/build: ("nightly", line, date) | ("label", line, label) | ("tag", tag) | ("after", line) for a build
# of a branch opened after every event we know | ("unreadable",).
OBSERVED: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    (
        "mastodon",
        "4.3.0-nightly.2024-07-25",
        "Akkoma test fixture: mastodon.social User-Agent",
        ("nightly", "mastodon", "2024-07-25"),
    ),
    (
        "mastodon",
        "4.3.0-nightly.2024-08-28",
        "nodeinfo client README: mastodon.social",
        ("nightly", "mastodon", "2024-08-28"),
    ),
    (
        "mastodon",
        "4.3.0-nightly.2024-09-03",
        "nodeinfo client README: mastodon.social",
        ("nightly", "mastodon", "2024-09-03"),
    ),
    ("mastodon", "4.4.0-nightly.2024-10-28", "fedi software version-format doc", ("nightly", "mastodon", "2024-10-28")),
    (
        "mastodon",
        "4.5.0-nightly.2025-07-11",
        "Mastodon API docs example (mastodon.social)",
        ("nightly", "mastodon", "2025-07-11"),
    ),
    (
        "mastodon",
        "4.3.0-nightly.2024-08-25+glitch",
        "fedi software version-format doc",
        ("nightly", "glitch", "2024-08-25"),
    ),
    ("mastodon", "4.3.0+nightly.2024-03-01+glitch", "fedicat ServerKind comment", ("nightly", "glitch", "2024-03-01")),
    (
        "mastodon",
        "4.3.0-alpha.3+glitch",
        "client test fixture (instance version)",
        ("label", "glitch", "4.3.0-alpha.3+glitch"),
    ),
    (
        "mastodon",
        "4.4.0-alpha.5+glitch+urusai+sakura",
        "Mastodon-client source comment (glitch-soc derivative)",
        ("label", "glitch", "4.4.0-alpha.5+glitch"),
    ),
    ("mastodon", "4.1.4+glitch", "fedi software version-format doc", ("label", "glitch", "4.1.4+glitch")),
    ("mastodon", "4.4.0+glitch", "client capability test", ("tag", "v4.4.0")),
    ("mastodon", "4.7.0-beta.1+chuckya", "Mastodon-client source comment (Chuckya)", ("after", "glitch")),
    ("mastodon", "4.7.0-alpha.1", "peer-scan issue (live server)", ("label", "mastodon", "4.7.0-alpha.1")),
    ("mastodon", "4.7.0-alpha.1+glitch", "peer-scan issue (live server)", ("label", "glitch", "4.7.0-alpha.1+glitch")),
    (
        "mastodon",
        "4.7.1-alpha.1+glitch.something",
        "peer-scan issue (live server)",
        ("label", "glitch", "4.7.1-alpha.1+glitch"),
    ),
    (
        "mastodon",
        "4.7.0-nightly.2026-07-04+chuckya",
        "peer-scan issue (live server; Chuckya follows glitch-soc)",
        ("nightly", "glitch", "2026-07-04"),
    ),
    (
        "glitchcafe",
        "4.1.2+cafe.41a1757",
        "peer-scan issue (live server; GlitchCafé follows glitch-soc)",
        ("label", "glitch", "4.1.2+glitch"),
    ),
    (
        "glitchcafe",
        "3.3.0rc1+cafe",
        "pluralcafe/glitchcafe lib/mastodon/version.rb",
        ("label", "glitch", "3.3.0rc1+glitch"),
    ),
    (
        "fedibird",
        "0.1",
        "Misskey test fixture (fedibird.com instance); fedibird/mastodon NodeInfo serializer",
        ("unreadable",),
    ),
    ("pixelfed", "0.8.0rc1", "pixelfed/pixelfed config/pixelfed.php history (2019-03-07)", ("release", "pixelfed")),
    (
        "pixelfed",
        "0.11.9-glitch.1.0.0",
        "pixelfed/pixelfed config/pixelfed.php history (2024-02-02)",
        ("release", "pixelfed"),
    ),
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True).stdout


def is_ancestor(repo: Path, ancestor: str, commit: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", ancestor, commit]).returncode == 0


# --- What a version.rb reports -------------------------------------------------------------------


def _body(source: str, name: str) -> str | None:
    found = re.search(rf"def {name}\s*\n(.*?)\n\s*end\b", source, re.S)
    return found.group(1).strip() if found else None


def _default(expression: str | None) -> str | None:
    """What a version.rb method body yields with no environment set; None: another method decides."""
    if expression is None:
        return ""
    expression = expression.strip()
    if expression in ("nil", "''", '""'):
        return ""
    if "default_prerelease" in expression or "version_configuration" in expression:
        return None
    literal = re.fullmatch(r"'([^']*)'|\"([^\"#]*)\"", expression)
    if literal:
        return literal.group(1) if literal.group(1) is not None else literal.group(2)
    if "glitch" in expression:
        return "glitch"
    fallback = re.search(r"ENV\.fetch\('[A-Z_]+',\s*'([^']*)'\)|\.presence \|\| '([^']*)'", expression)
    if fallback:
        return fallback.group(1) if fallback.group(1) is not None else fallback.group(2)
    if "ENV" in expression:
        return ""
    raise ValueError(f"cannot read {expression!r}")


def rendered_version(source: str, config: str) -> str:
    """Mastodon::Version.to_s as a build without MASTODON_VERSION_* variables reports it."""
    constant = re.search(r"VERSION = '([^']+)'", source)
    if constant:
        return constant.group(1)
    numbers = [re.search(rf"def {name}\s*\n\s*(\d+)", source) for name in ("major", "minor", "patch")]
    text = ".".join(found.group(1) for found in numbers if found)
    fourth = _body(source, "pre")
    if fourth and fourth.isdigit():
        text += f".{fourth}"
    if "components" in (_body(source, "to_s") or ""):
        prerelease = _default(_body(source, "prerelease"))
        if prerelease is None:
            prerelease = _default(_body(source, "default_prerelease")) or ""
        metadata = _default(_body(source, "build_metadata"))
        if metadata is None:  # from config/mastodon.yml
            metadata = "glitch" if re.search(r"metadata: <%= \['glitch'", config) else ""
        return text + (f"-{prerelease}" if prerelease else "") + (f"+{metadata}" if metadata else "")
    flags = _default(_body(source, "flags")) or ""
    suffix = _default(_body(source, "suffix")) or ""
    return text + flags + ("+glitch" if suffix == "glitch" else suffix)


@dataclass
class Line:
    """A development line (Mastodon's main, glitch-soc's main): its first-parent commits, oldest first."""

    name: str
    repo: Path
    commits: list[str] = field(default_factory=list)
    times: list[int] = field(default_factory=list)  # committer time, UTC seconds
    labels: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, name: str, repo: Path, tip: str) -> Line:
        line = cls(name, repo)
        rows = [row.split() for row in git(repo, "log", tip, "--first-parent", "--format=%H %ct").splitlines()]
        changed = set(
            git(
                repo,
                "log",
                tip,
                "--first-parent",
                "--format=%H",
                "--",
                "lib/mastodon/version.rb",
                "config/mastodon.yml",
            ).split()
        )
        label = ""
        for sha, time in reversed(rows):
            if sha in changed or not label:
                source = git(repo, "show", f"{sha}:lib/mastodon/version.rb")
                if source:
                    label = rendered_version(source, git(repo, "show", f"{sha}:config/mastodon.yml"))
            line.commits.append(sha)
            line.times.append(int(time))
            line.labels.append(label)
        return line

    def first_containing(self, commits: Iterable[str]) -> int:
        """The first index whose commit contains any of `commits` (len(self.commits): none does)."""
        best = len(self.commits)
        for commit in commits:
            low, high = 0, best
            while low < high:
                middle = (low + high) // 2
                if is_ancestor(self.repo, commit, self.commits[middle]):
                    high = middle
                else:
                    low = middle + 1
            best = low
        return best

    def shipped_at(self, index: int) -> int:
        """A fix's index moved to the version bump that follows it within RELEASE_BUMP_HOURS (the release)."""
        for later in range(index + 1, len(self.commits)):
            if self.times[later] - self.times[index] > RELEASE_BUMP_HOURS * 3600:
                break
            if self.labels[later] != self.labels[index]:
                return later
        return index

    def first_label(self, pattern: str) -> int:
        return next(index for index, label in enumerate(self.labels) if re.fullmatch(pattern, label))

    def at(self, day: str) -> int:
        moment = datetime.datetime.fromisoformat(day).replace(hour=NIGHTLY_HOUR, tzinfo=datetime.UTC)
        return bisect.bisect_right(self.times, int(moment.timestamp())) - 1

    def windows(self, label: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        for index, current in enumerate(self.labels):
            if current != label:
                continue
            if spans and spans[-1][1] == index - 1:
                spans[-1] = (spans[-1][0], index)
            else:
                spans.append((index, index))
        return spans

    def day(self, index: int) -> str:
        return datetime.datetime.fromtimestamp(self.times[index], datetime.UTC).strftime("%Y-%m-%d %H:%M")


# --- The advisories' facts -----------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A change on the development lines: by commit(s), or (flaw only) known to lie between two labels."""

    commits: tuple[str, ...] = ()
    between: tuple[str, str] | None = None  # label patterns: before the first, none has it; from the second, all
    is_fix: bool = False


@dataclass(frozen=True)
class Facts:
    patched: dict[tuple[int, int], tuple[int, ...]]  # the advisory's patched version per branch
    affected_from: tuple[int, ...] | None  # the advisory's affected range start; None: all before a fix
    fix: Event
    flaw: Event | None  # None: every version has it
    fix_reached_main: str  # the day the fix reached Mastodon's main (branches created later have it)


FACTS = {
    # GHSA-9928-3cp5-93fm: ">= 3.5.0, < 3.5.9 / < 4.0.5 / < 4.1.3"; merged into main 2023-07-06.
    "CVE-2023-36460": Facts(
        {(3, 5): (3, 5, 9), (4, 0): (4, 0, 5), (4, 1): (4, 1, 3)},
        (3, 5, 0),
        Event(("dc8f1fbd97",), is_fix=True),
        Event(between=(r"3\.4\.0(\+glitch)?", r"3\.5\.0(\+glitch)?")),
        "2023-07-06",
    ),
    # GHSA-3fjr-858r-92rw: "< 3.5.17 / 4.0.13 / 4.1.13 / 4.2.5"; merged into main 2024-02-01.
    "CVE-2024-23832": Facts(
        {(3, 5): (3, 5, 17), (4, 0): (4, 0, 13), (4, 1): (4, 1, 13), (4, 2): (4, 2, 5)},
        None,
        Event(("1726085db5", "ff58ec0103"), is_fix=True),
        None,
        "2024-02-01",
    ),
    # ">= 4.4.0, < 4.4.15 / 4.5.8"; quotes (app/services/activitypub/verify_quote_service.rb) reached main
    # in #34370 on 2025-04-17; the fix (main 4559e4ed1a, stable-4.4 b02a2abdf8, stable-4.5 089a141efc) on
    # 2026-03-24.
    "CVE-2026-33869": Facts(
        {(4, 4): (4, 4, 15), (4, 5): (4, 5, 8)},
        (4, 4, 0),
        Event(
            (
                "4559e4ed1a",
                "b02a2abdf8",
                "089a141efc",
            ),
            is_fix=True,
        ),
        Event(("df2611a10f",)),
        "2026-03-24",
    ),
    # Pixelfed: "< 0.12.5".
    "CVE-2025-30741": Facts({(0, 12): (0, 12, 5)}, None, Event(is_fix=True), None, "2025-03-23"),
}


def numbers(text: str) -> tuple[int, ...]:
    found = re.match(r"\d+(?:\.\d+)*", text)
    assert found, text
    parts = tuple(int(part) for part in found.group(0).split("."))
    return (*parts, 0, 0)[: max(3, len(parts))]


def combine(flaw: bool | None, fix: bool | None) -> str:
    if flaw is False or fix is True:
        return "fixed"
    if flaw is None or fix is None:
        return "uncertain"
    return "affected"


def all_or_none(values: list[bool | None]) -> bool | None:
    return values[0] if values and all(value == values[0] for value in values) else None


class Oracle:
    def __init__(self, glitch_soc: Path) -> None:
        self.repo = glitch_soc
        self.lines = {
            "mastodon": Line.read("mastodon", glitch_soc, UPSTREAM_TIP),
            "glitch": Line.read("glitch", glitch_soc, GLITCH_TIP),
        }
        self.commit_ids: dict[str, tuple[str, ...]] = {}
        self.events: dict[tuple[str, str, bool], tuple[int, int]] = {}  # (advisory, line, is_fix) -> indices
        for advisory, facts in FACTS.items():
            if advisory not in MASTODON_ADVISORIES:
                continue
            for line_name, line in self.lines.items():
                for event in (facts.fix, facts.flaw):
                    if event is None:
                        continue
                    if event.between:
                        low, high = line.first_label(event.between[0]), line.first_label(event.between[1])
                    else:
                        low = high = line.first_containing(event.commits)
                        if event.is_fix:
                            low = high = line.shipped_at(low)
                    self.events[(advisory, line_name, event.is_fix)] = (low, high)
        # When each branch left main: the first time main reported a newer branch (its releases come from
        # main's code of before then, plus backports).
        self.branch_left_main: dict[tuple[int, int], str] = {}
        main = self.lines["mastodon"]
        newest: tuple[int, ...] = ()
        for index, label in enumerate(main.labels):
            if not label:
                continue
            branch = numbers(label)[:2]
            if newest and branch > newest:
                for older in {numbers(item)[:2] for item in main.labels[:index] if item}:
                    self.branch_left_main.setdefault(older, main.day(index)[:10])
            newest = max(newest, branch)
        first_day = main.day(next(index for index, label in enumerate(main.labels) if label))[:10]
        self.oldest_on_main = min(numbers(label)[:2] for label in main.labels if label)
        self.first_day_on_main = first_day

    def left_main(self, branch: tuple[int, ...]) -> str | None:
        """When `branch` left main; branches older than main's history left before it began."""
        if branch[:2] < self.oldest_on_main:
            return self.first_day_on_main
        return self.branch_left_main.get((branch[0], branch[1]))

    # -- builds of a development line

    def _has(self, advisory: str, line: str, is_fix: bool, first: int, last: int) -> bool | None:
        event = self.events.get((advisory, line, is_fix))
        if event is None:
            return True if not is_fix else None  # no flaw event: every build has it
        low, high = event
        if first >= high:
            return True
        if last < low:
            return False
        return None

    def span_truth(self, advisory: str, line: str, spans: list[tuple[int, int]]) -> str:
        flaws = [self._has(advisory, line, False, first, last) for first, last in spans]
        fixes = [self._has(advisory, line, True, first, last) for first, last in spans]
        return combine(all_or_none(flaws), all_or_none(fixes))

    # -- tags

    def tag_truth(self, advisory: str, commit: str) -> str:
        facts = FACTS[advisory]
        fix = any(is_ancestor(self.repo, fixed, commit) for fixed in facts.fix.commits)
        if facts.flaw is None:
            flaw: bool | None = True
        elif facts.flaw.commits:
            flaw = any(is_ancestor(self.repo, flawed, commit) for flawed in facts.flaw.commits)
        else:
            main = self.lines["mastodon"]
            low, high = self.events[(advisory, "mastodon", False)]
            flaw = (
                True
                if is_ancestor(self.repo, main.commits[high], commit)
                else False
                if not is_ancestor(self.repo, main.commits[low], commit)
                else None
            )
        return combine(flaw, fix)

    # -- final releases

    def release_truth(self, advisory: str, release: tuple[int, ...], left_main: str | None) -> str:
        """`left_main`: when the release's branch left main (None: not yet, or after every fix we know)."""
        facts = FACTS[advisory]
        flaw = facts.affected_from is None or release >= facts.affected_from
        branch = release[:2]
        if branch in facts.patched:
            fix = release >= facts.patched[branch]
        else:
            fix = left_main is None or left_main > facts.fix_reached_main
        return combine(flaw, fix)


# --- The corpus ----------------------------------------------------------------------------------


@dataclass
class Row:
    software: str
    version: str
    source: str
    provenance: str
    verdicts: dict[str, str]


def nightly_text(line: Line, index: int, day: str) -> str:
    """The version an official nightly image of `day` reported, by the workflow of that time (Mastodon's
    main; glitch-soc's nightlies in this corpus start after the last change)."""
    label = line.labels[index]
    base = re.match(r"\d+\.\d+\.\d+", label)
    assert base, label
    if day <= "2023-07-18":  # f258478395: MASTODON_VERSION_SUFFIX=+nightly-%Y%m%d
        return f"{label}+nightly-{day.replace('-', '')}"
    if day <= "2023-08-24":  # b8931311a0: +nightly-%Y-%m-%d
        return f"{label}+nightly-{day}"
    if day == "2023-08-25":  # 96bcee66fb: -nightly.%Y-%m-%d, still after the -beta2 flag
        return f"{label}-nightly.{day}"
    glitch = "+glitch" if line.name == "glitch" else ""  # f39847476c: the pre-release is nightly.%Y-%m-%d
    return f"{base.group(0)}-nightly.{day}{glitch}"


def nightly_days(start: str, end: str, extra: Iterable[str]) -> list[str]:
    days = set(extra)
    year, month = int(start[:4]), int(start[5:7])
    while f"{year:04d}-{month:02d}" <= end[:7]:
        for day in (1, 15):
            text = f"{year:04d}-{month:02d}-{day:02d}"
            if start <= text <= end:
                days.add(text)
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return sorted(days)


def build(glitch_soc: Path) -> list[Row]:
    oracle = Oracle(glitch_soc)
    rows: dict[tuple[str, str], Row] = {}

    def add(software: str, version: str, source: str, provenance: str, verdicts: dict[str, str]) -> None:
        key = (software, version)
        if key in rows:
            rows[key].source += f"; {source}"
            return
        rows[key] = Row(software, version, source, provenance, verdicts)

    # Mastodon's final releases.
    for item in MASTODON_RELEASES.replace("\n", "|").split("|"):
        if not item.strip():
            continue
        version, _, day = item.strip().partition(" ")
        release = numbers(version)
        left_main = oracle.left_main(release)
        verdicts = {a: oracle.release_truth(a, release, left_main) for a in MASTODON_ADVISORIES}
        add(
            "mastodon", version, "Mastodon release list", f"release {day if day != '-' else '(date unknown)'}", verdicts
        )

    # Labels Mastodon's and glitch-soc's main reported (pre-releases; glitch-soc's finals before it had
    # releases of its own, 4.3).
    for line_name, line in oracle.lines.items():
        for label in dict.fromkeys(line.labels):
            if not label:
                continue
            final = re.fullmatch(r"[\d.]+(\+glitch)?", label) is not None
            if line_name == "mastodon" and final:
                continue  # the same string as the release: judged as the release
            if line_name == "glitch" and (numbers(label) < (4, 0, 0) or (final and numbers(label) >= (4, 3, 0))):
                continue  # before 4.0 (TootRoot's flaw unknown there); from 4.3 glitch-soc tags releases
            spans = line.windows(label)
            verdicts = {a: oracle.span_truth(a, line_name, spans) for a in MASTODON_ADVISORIES}
            first, last = spans[0][0], spans[-1][1]
            where = f"{line_name} main {line.day(first)} .. {line.day(last)} UTC ({len(spans)} span(s))"
            add(
                "mastodon",
                label,
                f"{'Mastodon' if line_name == 'mastodon' else 'glitch-soc'} main version.rb",
                where,
                verdicts,
            )

    # Official nightlies: the 1st and 15th of each month, and the days the advisories' changes landed.
    event_days = (
        "2023-07-06",
        "2023-07-07",
        "2024-02-01",
        "2024-02-02",
        "2025-04-17",
        "2025-04-18",
        "2026-03-24",
        "2026-03-25",
    )
    for line_name, start in (("mastodon", "2023-05-15"), ("glitch", "2023-10-01")):
        line = oracle.lines[line_name]
        for day in nightly_days(start, "2026-08-07", (d for d in event_days if d >= start)):
            index = line.at(day)
            verdicts = {a: oracle.span_truth(a, line_name, [(index, index)]) for a in MASTODON_ADVISORIES}
            where = f"{line_name} main at {day} 02:00 UTC ({line.commits[index][:10]})"
            add("mastodon", nightly_text(line, index, day), f"{line_name} nightly workflow", where, verdicts)

    # glitch-soc's tags (its releases, 4.3 on), as their builds report them.
    for tag in git(glitch_soc, "tag", "--list", "v4.*").split():
        commit = git(glitch_soc, "rev-parse", f"{tag}^{{commit}}").strip()
        verdicts = {a: oracle.tag_truth(a, commit) for a in MASTODON_ADVISORIES}
        add("mastodon", f"{tag[1:]}+glitch", "glitch-soc tags", f"tag {tag} ({commit[:10]})", verdicts)

    # Mastodon's pre-release tags cut on stable branches (not on main): their bump commits.
    for subject in ("Bump version to v4.5.0-rc.2", "Bump version to v4.5.0-rc.3", "Bump version to v4.6.0-rc.2"):
        commit = git(glitch_soc, "log", "--all", "--format=%H", "-1", "--fixed-strings", f"--grep={subject}").strip()
        verdicts = {a: oracle.tag_truth(a, commit) for a in MASTODON_ADVISORIES}
        version = subject.rsplit("v", 1)[1]
        add("mastodon", version, "Mastodon stable-branch pre-release tag", f"commit {commit[:10]}", verdicts)

    # Hometown.
    for version, source in HOMETOWN_STRINGS:
        release = numbers(version)
        left_main = oracle.left_main(release)
        verdicts = {a: oracle.release_truth(a, release, left_main) for a in MASTODON_ADVISORIES}
        add("hometown", version, source, f"Hometown on Mastodon {'.'.join(map(str, release))}", verdicts)

    # Pixelfed.
    for version in PIXELFED_RELEASES:
        release = numbers(version)
        left_main = None if release[:2] in PIXELFED_LATER_BRANCHES else "2000-01-01"
        add(
            "pixelfed",
            version,
            "Pixelfed releases",
            "release",
            {"CVE-2025-30741": oracle.release_truth("CVE-2025-30741", release, left_main)},
        )

    # Seen in public code, docs and fixtures.
    for software, version, source, how in OBSERVED:
        if how[0] == "nightly":
            line = oracle.lines[how[1]]
            index = line.at(how[2])
            spans, where = [(index, index)], f"{how[1]} main at {how[2]} 02:00 UTC"
        elif how[0] == "label":
            line = oracle.lines[how[1]]
            spans, where = line.windows(how[2]), f"{how[1]} main reporting {how[2]}"
        elif how[0] == "after":
            line = oracle.lines[how[1]]
            spans, where = [(len(line.commits) - 1, len(line.commits) - 1)], "a 4.7 build: after every event"
        if how[0] in ("nightly", "label", "after"):
            verdicts = {a: oracle.span_truth(a, how[1], spans) for a in MASTODON_ADVISORIES}
        elif how[0] == "tag":
            commit = git(glitch_soc, "rev-parse", f"{how[1]}^{{commit}}").strip()
            verdicts, where = {a: oracle.tag_truth(a, commit) for a in MASTODON_ADVISORIES}, f"tag {how[1]}"
        elif how[0] == "release":
            release = numbers(version)
            verdicts = {"CVE-2025-30741": oracle.release_truth("CVE-2025-30741", release, "2000-01-01")}
            where = "Pixelfed development version"
        else:
            verdicts, where = dict.fromkeys(MASTODON_ADVISORIES, "unreadable"), "own numbering: no Mastodon version"
        add(software, version, source, where, verdicts)

    return sorted(rows.values(), key=lambda row: (row.software, numbers(row.version), row.version))


def write(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as out:
        out.write("# Version strings servers report and, per shipped advisory, what their builds are: affected,\n")
        out.write("# fixed (or never affected), uncertain (builds differ, or the history cannot tell), unreadable\n")
        out.write("# (no upstream version in it); empty: the advisory does not concern that software.\n")
        out.write("# Built by bench/version_corpus.py from public history (see its docstring); not by Tocsin.\n")
        writer = csv.writer(out, delimiter="\t", lineterminator="\n")
        writer.writerow(["software", "version", *ADVISORIES, "provenance", "source"])
        for row in rows:
            writer.writerow(
                [row.software, row.version, *(row.verdicts.get(a, "") for a in ADVISORIES), row.provenance, row.source]
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glitch-soc", type=Path, default=GLITCH_SOC)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    rows = build(args.glitch_soc)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write(rows, args.output)
    pairs = sum(1 for row in rows for verdict in row.verdicts.values() if verdict)
    print(f"{len(rows)} version strings, {pairs} (string × advisory) pairs → {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
