"""The built wheel, installed apart from the source tree, has everything the running service reads."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds the wheel and installs it into a fresh virtualenv

ROOT = Path(__file__).resolve().parent.parent

CHECK = """
import sys
from pathlib import Path

import bot.ops.cli, handlers
target = Path(sys.argv[1]).resolve()
for module in (bot.ops.cli, handlers):  # the installed copy, not the source tree
    assert target in Path(module.__file__).resolve().parents, module.__file__
assert (target / "templates" / "incidents" / "incidents.css").exists()  # templating reads templates/ beside bot/

from fastapi.testclient import TestClient

from bot.core.config import load_settings
from bot.ops.web import create_app
from handlers.shared.advisories import load_advisories, load_forks

secret = "a-secret-of-some-length"
settings = load_settings(_env_file=None, redis_url=sys.argv[2], webhook_secret=secret, data_dir=target / "data")
with TestClient(create_app(settings)) as client:
    css = client.get("/incidents.css")
    assert css.status_code == 200 and "body" in css.text, (css.status_code, css.text[:200])
    assert client.get("/incidents").status_code == 200
assert "hometown" in load_forks()
from handlers.shared.young_accounts import provider_refusal
assert provider_refusal("google.com") and provider_refusal("spam.example") is None  # mail_providers.toml
assert {"CVE-2025-30741", "CVE-2026-33869"} <= {advisory.id for advisory in load_advisories()}
print("installed wheel ok")
"""


def test_the_installed_wheel_serves_pages_with_their_stylesheet(tmp_path: Path, redis_url: str) -> None:
    # Built from a clean copy, as from a fresh clone: a local egg-info would list files the config misses.
    source = tmp_path / "source"
    junk = shutil.ignore_patterns(".venv", ".git", "*.egg-info", "build", "test-artifacts", "__pycache__", "*-data")
    shutil.copytree(ROOT, source, ignore=junk)
    wheels = tmp_path / "wheels"
    pip("wheel", "--no-deps", "-q", "-w", str(wheels), str(source))
    [wheel] = wheels.glob("tocsin-*.whl")
    target = tmp_path / "site"
    pip("install", "--no-deps", "-q", "--target", str(target), str(wheel))
    check = subprocess.run(
        [sys.executable, "-c", CHECK, str(target), redis_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert check.returncode == 0, check.stderr[-3000:]
    assert "installed wheel ok" in check.stdout


def pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_template_names_are_unique_across_families() -> None:
    # Templates are looked up by file name alone (an operator overrides one in a flat folder), so two
    # families' templates of one name would shadow each other.
    files = [path for path in (ROOT / "templates").rglob("*") if path.is_file() and "__pycache__" not in path.parts]
    names = [path.name for path in files]
    assert len(names) == len(set(names)) > 20
