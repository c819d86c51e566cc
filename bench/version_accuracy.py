"""How often the peer scan's verdict is right on real version strings: every (string × shipped advisory)
pair of tests/fixtures/versions/corpus.tsv (built by bench/version_corpus.py from the software's history),
read as the scan reads a peer (fork table, then the advisory's assessment).

    python -m bench.version_accuracy [--corpus FILE] [--misses]

Prints the share of right verdicts, the confusion table (expected → given), and with --misses every
pair the scan gets wrong. "uncertain" is right only where the history says the string cannot tell.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from handlers.shared.advisories import Advisory, Fork, load_advisories, load_forks, read_running

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "versions" / "corpus.tsv"
NOT_CONCERNED = "not concerned"  # the scan does not match this software to the advisory at all


@dataclass(frozen=True)
class Pair:
    software: str
    version: str
    advisory: str
    expected: str  # affected | fixed | uncertain | unreadable
    given: str  # the same, or NOT_CONCERNED
    provenance: str

    @property
    def right(self) -> bool:
        return self.expected == self.given


def read_corpus(path: Path = CORPUS) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        lines = (line for line in handle if not line.startswith("#"))
        return list(csv.DictReader(lines, delimiter="\t"))


def verdict(advisory: Advisory, software: str, version: str, forks: dict[str, Fork]) -> str:
    peer = read_running(software, version, forks)
    if not advisory.concerns(peer.software):
        return NOT_CONCERNED
    if peer.version is None:
        return "unreadable"
    return advisory.assess(peer.version).value


def pairs(path: Path = CORPUS) -> list[Pair]:
    advisories = {advisory.id: advisory for advisory in load_advisories()}
    forks = load_forks()
    found = []
    for row in read_corpus(path):
        for advisory_id, advisory in advisories.items():
            expected = row.get(advisory_id, "")
            if expected:
                given = verdict(advisory, row["software"], row["version"], forks)
                found.append(Pair(row["software"], row["version"], advisory_id, expected, given, row["provenance"]))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--misses", action="store_true", help="list every wrong pair")
    args = parser.parse_args(argv)
    found = pairs(args.corpus)
    right = sum(pair.right for pair in found)
    strings = len({(pair.software, pair.version) for pair in found})
    print(f"{right} of {len(found)} verdicts right ({100 * right / len(found):.2f} %) on {strings} version strings")
    confusion = Counter((pair.expected, pair.given) for pair in found)
    for (expected, given), count in sorted(confusion.items()):
        print(f"  {expected:>10} → {given:<13} {count:5d}{'' if expected == given else '   ✗'}")
    if args.misses:
        for pair in found:
            if not pair.right:
                print(
                    f"  {pair.advisory} {pair.software} {pair.version}: {pair.given}, "
                    f"history says {pair.expected} ({pair.provenance})"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
