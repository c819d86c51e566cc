"""The scan's verdicts on real version strings (tests/fixtures/versions/corpus.tsv): what each build is was
derived from the software's history by bench/version_corpus.py, never by Tocsin's matching. Run with -s
to see the figure (or `python -m bench.version_accuracy --misses`)."""

from __future__ import annotations

from collections import Counter

from bench.version_accuracy import NOT_CONCERNED, pairs, read_corpus
from handlers.shared.advisories import load_advisories

TARGET = 0.995
PAIRS = pairs()


def test_the_corpus_is_real_history_of_each_kind() -> None:
    rows = read_corpus()
    software = Counter(row["software"] for row in rows)
    assert software["mastodon"] > 500 and software["pixelfed"] > 30 and software["hometown"] >= 5
    versions = {row["version"] for row in rows}
    # releases, main's pre-releases, nightlies of each era, glitch-soc, forks, and the examples
    for text in (
        "4.2.5",
        "4.3.0-alpha.0",
        "4.2.0-beta1",
        "4.1.2+nightly-20230601",
        "4.3.0-nightly.2024-02-01",
        "4.6.0-nightly.2026-03-24+glitch",
        "4.5.8+glitch",
        "4.5.0-rc.2",
        "4.7.0-alpha.1",
        "4.7.1-alpha.1+glitch.something",
        "4.7.0-nightly.2026-07-04+chuckya",
        "4.1.2+cafe.41a1757",
    ):
        assert text in versions, text
    shipped = {advisory.id for advisory in load_advisories()}
    assert {pair.advisory for pair in PAIRS} == shipped
    assert len(PAIRS) > 2000


def test_verdicts_are_right_on_real_version_strings() -> None:
    right = sum(pair.right for pair in PAIRS)
    print(f"\n{right} of {len(PAIRS)} verdicts right ({100 * right / len(PAIRS):.2f} %)")
    for pair in PAIRS:
        if not pair.right:
            print(f"  {pair.advisory} {pair.software} {pair.version}: {pair.given}, history: {pair.expected}")
    assert right / len(PAIRS) >= TARGET


def test_uncertain_only_where_the_history_cannot_tell() -> None:
    needless = [pair for pair in PAIRS if pair.given == "uncertain" and pair.expected != "uncertain"]
    assert needless == []


def test_every_fork_the_corpus_shows_is_read_through_its_upstream() -> None:
    """A fork missing from the fork table escapes its upstream's advisories (glitchcafe did)."""
    missed = {(pair.software, pair.version) for pair in PAIRS if pair.given == NOT_CONCERNED}
    assert missed == set()
