"""The code base stays `ruff` clean (lint and format), and the platform (bot/) and the families
(handlers/) type-check strictly with mypy (its settings in pyproject.toml), checked with the rest of the
suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", *command, "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_on_the_platform_and_the_families() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


LINT_IMPORTS = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the tree at `root`, not the installed one
    return subprocess.run([*LINT_IMPORTS, "--no-cache"], cwd=root, capture_output=True, text=True, env=env)


def test_import_contracts_hold() -> None:
    """pyproject.toml's import-linter contracts: bot/ in layers and never importing handlers/, families
    independent but for handlers.shared and the report family's readers, no cycle in any package."""
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" KEPT") == 4


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("bot/core/privacy.py", "from handlers.shared import payloads", "never imports a family"),
        ("bot/core/defaults.py", "from bot.ops import cli", "each imports only those below it"),
        ("handlers/spam/content.py", "from handlers.scan import findings", "Families are independent"),
        ("bot/pipeline/queue.py", "def _late() -> None:\n    from bot.pipeline import events", "No import cycle"),
    ],
)
def test_import_contracts_catch_a_violation(tmp_path: Path, module: str, line: str, broken: str) -> None:
    for part in ("bot", "handlers"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / module).open("a") as source:
        source.write(f"\n\n{line}\n")  # inside a function where it says so: hidden imports count
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert broken in result.stdout.replace("\n", " ")
