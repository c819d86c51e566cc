"""docs/adding-a-family.md, checked: a seventh family (tests/example_family/) installed the way an
operator's package installs one — an entry point in the `tocsin.families` group, nothing changed in bot/ —
takes its webhook at intake, its events in the drain, and shows its settings, command, page, DM reply
command and doctor lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bot.core.config import ConfigError, load_settings
from bot.dm.commands.verbs import find, help_text
from bot.mastodon.context import Context
from bot.ops.web import create_app
from bot.pipeline.families import registry
from tests.example_family.counter import COUNTS
from tests.helpers import SECRET, feed, report_event, sign

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINT = "[tocsin.families]\nexample = tests.example_family.family:FAMILIES\n"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example family's distribution metadata on the path, as `pip install` leaves it."""
    site = tmp_path / "site"
    info = site / "tocsin_example_family-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tocsin-example-family\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINT)
    monkeypatch.syspath_prepend(str(site))
    registry.cache_clear()
    yield site
    monkeypatch.undo()
    registry.cache_clear()


def test_the_family_is_found_through_its_entry_point(installed: Path) -> None:
    names = [family.name for family in registry().families]
    assert "example-categories" in names and len(names) == 8  # added beside the seven, nothing displaced


def test_its_webhook_is_taken_and_its_events_counted_beside_the_reports_family(installed: Path, ctx: Context) -> None:
    assert "report.created" in registry().webhook_events
    events = [
        report_event(n, "2026-11-20T12:00:00.000Z", "spam.example", f"90{n}", category=c)
        for n, c in enumerate(["spam", "spam", "violation"])
    ]
    feed(ctx, events)
    assert ctx.redis.hgetall(COUNTS) == {b"spam": b"2", b"violation": b"1"}
    assert ctx.redis.zcard("tocsin:reports:times:spam.example") == 3  # the report family ran too
    with TestClient(create_app(ctx.settings)) as client:
        body = json.dumps(report_event(9, "2026-11-20T12:05:00.000Z", None, "77", category="other")).encode()
        assert (
            client.post("/webhooks/mastodon", content=body, headers={"X-Hub-Signature": sign(body)}).status_code == 202
        )
        assert client.get("/example").json() == {"spam": 2, "violation": 1}  # its page, on the web listener


def test_its_settings_are_checked_with_the_platforms(installed: Path, tmp_path: Path) -> None:
    settings = load_settings(_env_file=None, data_dir=tmp_path, example_notable=2)
    registry().check_settings(settings)
    with pytest.raises(ConfigError, match="TOCSIN_EXAMPLE_NOTABLE"):
        registry().check_settings(load_settings(_env_file=None, data_dir=tmp_path, example_notable=0))


def test_its_dm_reply_command_is_known_and_in_the_help(installed: Path, ctx: Context) -> None:
    command = find("categories", None)
    assert command is not None and not command.changes
    assert "categories" in help_text()


@pytest.mark.slow  # real `tocsin` processes
def test_its_cli_command_and_doctor_lines(installed: Path, ctx: Context, redis_url: str) -> None:
    feed(ctx, [report_event(n, "2026-11-20T12:00:00.000Z", "spam.example", f"80{n}") for n in range(3)])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(installed), str(ROOT)]),
        "TOCSIN_REDIS_URL": redis_url,
        "TOCSIN_WEBHOOK_SECRET": SECRET,
        "TOCSIN_DATA_DIR": str(installed / "data"),
    }
    tocsin = [sys.executable, "-c", "from bot.ops.cli import main; main()"]
    shown = subprocess.run([*tocsin, "example-counts"], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and shown.stdout.splitlines() == ["spam: 3"], shown.stderr
    doctor = subprocess.run([*tocsin, "doctor"], env=env, capture_output=True, text=True, timeout=60)
    assert "example: 3 spam reports" in doctor.stdout + doctor.stderr
    bad = subprocess.run(
        [*tocsin, "example-counts"],
        env={**env, "TOCSIN_EXAMPLE_NOTABLE": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "TOCSIN_EXAMPLE_NOTABLE" in bad.stderr
