from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from bot.core.config import ConfigError, Settings, load_settings, setting_names
from bot.pipeline.families import registry
from handlers.federation.settings import WatchSettings
from handlers.reports.settings import ReportSurgeSettings
from handlers.signups.settings import SignupSurgeSettings
from handlers.spam.settings import SpamWaveSettings


def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **values: str) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    for name, value in values.items():
        monkeypatch.setenv(f"TOCSIN_{name}", value)


def test_lists_are_read_from_plain_environment_strings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env(
        monkeypatch,
        tmp_path,
        MODERATORS="@anna, ben@mods.example",
        ALLOWED_PRIVATE_ADDRESSES="10.0.0.0/8,fd00::/8",
        RETRY_DELAYS="5,10",
    )
    settings = load_settings()
    assert settings.moderators == ["anna", "ben@mods.example"]
    assert settings.allowed_private_addresses == [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
    assert settings.retry_delays == [5, 10]
    assert settings.is_dry_run  # no token


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env(monkeypatch, tmp_path)
    (tmp_path / ".env").write_text("TOCSIN_MASTODON_URL=https://social.example.org/\nTOCSIN_REPORT_MIN_REPORTS=9\n")
    settings = load_settings()
    assert settings.mastodon_url == "https://social.example.org"
    assert settings.section(ReportSurgeSettings).min_reports == 9


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"MASTODON_URL": "social.example.org"}, "TOCSIN_MASTODON_URL"),
        ({"WEBHOOK_SECRET": "short"}, "TOCSIN_WEBHOOK_SECRET"),
        ({"PORT": "99999"}, "TOCSIN_PORT"),
        ({"REPORT_RATIO": "lots"}, "TOCSIN_REPORT_RATIO"),
        ({"ALLOWED_PRIVATE_ADDRESSES": "10.0.0.0/33"}, "TOCSIN_ALLOWED_PRIVATE_ADDRESSES"),
        ({"ACCESS_TOKEN": "abc"}, "TOCSIN_MASTODON_URL"),
    ],
)
def test_invalid_settings_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, values: dict[str, str], named: str
) -> None:
    env(monkeypatch, tmp_path, **values)
    with pytest.raises(ConfigError, match=named):
        checked_settings()


def test_token_turns_dry_run_off_unless_forced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env(monkeypatch, tmp_path, MASTODON_URL="https://social.example.org", ACCESS_TOKEN="t0ken")
    assert not load_settings().is_dry_run
    monkeypatch.setenv("TOCSIN_DRY_RUN", "true")
    assert load_settings().is_dry_run


def test_every_setting_is_documented() -> None:
    readme = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    names = setting_names(registry().sections)
    assert "TOCSIN_REPORT_WINDOW_HOURS" in names and "TOCSIN_SPAM_QUIET_HOURS" in names
    assert [name for name in names if f"`{name}`" not in readme] == []


def test_detector_sections_are_read_from_their_prefixed_settings(tmp_path: Path) -> None:
    settings = load_settings(_env_file=None, data_dir=tmp_path, signup_cluster_min=7, spam_mass_mentions=9)
    assert settings.section(SignupSurgeSettings).cluster_min == 7
    assert settings.section(SpamWaveSettings).mass_mentions == 9
    assert settings.section(ReportSurgeSettings).window_hours == 3.0


def test_detector_settings_from_the_environment_with_their_bounds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env(monkeypatch, tmp_path, SPAM_QUIET_HOURS="12", SIGNUP_MIN_SIGNUPS="30")
    settings = load_settings()
    assert settings.section(SpamWaveSettings).quiet_hours == 12.0
    assert settings.section(SignupSurgeSettings).min_signups == 30
    assert settings.section(ReportSurgeSettings).quiet_days == 7.0  # the section's own default
    monkeypatch.setenv("TOCSIN_SIGNUP_CLUSTER_MIN", "1")  # below the section's bound (2)
    with pytest.raises(ConfigError, match="TOCSIN_SIGNUP_CLUSTER_MIN"):
        checked_settings()


def test_list_settings_are_split_on_commas_and_spaces() -> None:
    settings = load_settings(
        _env_file=None, moderators="@alice, bob@example.org", watch_domains="Threads.NET. bad.example"
    )
    assert settings.moderators == ["alice", "bob@example.org"]
    assert settings.section(WatchSettings).domains == ["threads.net", "bad.example"]


def checked_settings() -> Settings:
    """As every `tocsin` command loads them: the platform's, then each installed family's section."""
    settings = load_settings()
    registry().check_settings(settings)
    return settings
