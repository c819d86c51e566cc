"""One spelling of a server's domain (bot/core/domains.py), and what each caller does with text naming none."""

from __future__ import annotations

import re
from collections.abc import Callable

import idna
import pytest
from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st

from bot.core.config import ConfigError, load_settings
from bot.core.domains import NamesAnAccount, NotADomain, normalized_domain
from bot.mastodon.context import Context
from handlers.federation.settings import WatchSettings
from handlers.reports.readers import servers_seen
from handlers.shared.peers import peer_domains
from tests.helpers import run
from tests.mastodon_double import MastodonDouble

# Letters of several scripts and cases, digits, hyphens, the characters UTS 46 maps or refuses.
LABEL_CHARS = st.sampled_from("abcxyzABCXYZ0129-_ßẞüÜçéøλΣςжЖ中文日本Ⅻﬁ\u200d\u00ad")
LABELS = st.text(LABEL_CHARS, min_size=1, max_size=12)
NAMES = st.lists(LABELS, min_size=1, max_size=4).map(".".join)
ASCII_NAMES = st.lists(st.text("abcdefghij0123456789", min_size=1, max_size=8), min_size=2, max_size=4).map(".".join)
DOTS = st.sampled_from([".", "\u3002", "\uff0e", "\uff61"])


def spelled(name: str, scheme: str, port: str, path: str, trailing_dot: str) -> str:
    return f"{scheme}{name}{trailing_dot}{port}{path}"


WRAPPINGS = {
    "scheme": st.sampled_from(["", "https://", "http://", "HTTPS://"]),
    "port": st.sampled_from(["", ":443", ":8080"]),
    "path": st.sampled_from(["", "/", "/about", "/explore?x=1"]),
    "trailing_dot": st.sampled_from(["", ".", "\u3002"]),
}


@given(st.text(max_size=60))
def test_any_text_is_one_spelling_or_refused(raw: str) -> None:
    try:
        name = normalized_domain(raw)
    except NotADomain:
        return
    assert normalized_domain(name) == name  # idempotent
    assert re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", name), name  # no port, path, upper case, trailing dot
    assert len(name) <= 253


@given(name=NAMES, **WRAPPINGS)
@example(name="example.λΣ", scheme="", port="", path="", trailing_dot="")  # str.lower makes a final ς of it
def test_valid_names_agree_with_uts46_however_written(
    name: str, scheme: str, port: str, path: str, trailing_dot: str
) -> None:
    try:
        expected = idna.encode(name, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        expected = None
    raw = spelled(name, scheme, port, path, trailing_dot)
    if expected is None or "." not in expected:  # UTS 46 refuses it, or a single label: no server's name
        with pytest.raises(NotADomain):
            normalized_domain(raw)
        return
    assert normalized_domain(raw) == expected


@given(ASCII_NAMES, DOTS)
def test_every_full_stop_is_a_dot(name: str, dot: str) -> None:
    assert normalized_domain(name.replace(".", dot)) == name
    assert normalized_domain(name.replace(".", dot) + dot) == name


@given(st.text("abcdefghij0123456789_.", min_size=1, max_size=12), ASCII_NAMES)
def test_an_accounts_handle_or_url_is_not_its_server(user: str, name: str) -> None:
    for raw in (f"{user}@{name}", f"@{user}@{name}", f"https://{name}/@{user}", f"https://{name}/users/{user}"):
        with pytest.raises(NamesAnAccount):
            normalized_domain(raw)


def test_watched_domains_are_read_in_the_one_spelling_and_junk_fails_start_up() -> None:
    settings = load_settings(_env_file=None, watch_domains="Threads.NET. bücher.example https://Bad.example:443/")
    assert settings.section(WatchSettings).domains == ["threads.net", "xn--bcher-kva.example", "bad.example"]
    with pytest.raises(ConfigError, match="TOCSIN_WATCH_DOMAINS"):
        load_settings(_env_file=None, watch_domains="threads.net *.example").section(WatchSettings)


def test_a_peer_list_keeps_the_servers_and_leaves_out_what_names_none(
    mastodon: MastodonDouble, make_context: Callable[..., Context]
) -> None:
    mastodon.peers = ["Masto.Example", "masto.example.", "spam.****ple", "not a host", "", "bücher.example"]
    assert peer_domains(make_context(), [], servers_seen) == ["masto.example", "xn--bcher-kva.example"]


def test_the_federation_audit_refuses_a_non_domain(tocsin: CliRunner) -> None:
    result = run(tocsin, "audit-federation", "not a host")
    assert result.exit_code == 1
    assert "'not a host' is not a domain" in result.output
