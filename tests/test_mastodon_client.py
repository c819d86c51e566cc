"""Tocsin's edge to Mastodon.py: the HTTP status read from any error it raises."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mastodon import MastodonAPIError, MastodonError, MastodonNetworkError, MastodonNotFoundError

from bot.context import Context
from bot.mastodon import http_status

ANYTHING = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=5)


@given(st.lists(ANYTHING, max_size=5), st.sampled_from([MastodonError, MastodonAPIError, MastodonNetworkError]))
def test_the_status_is_the_second_argument_when_it_is_one_and_nothing_else(
    args: list[object], kind: type[MastodonError]
) -> None:
    status = http_status(kind(*args))
    second = args[1] if len(args) > 1 else None
    if isinstance(second, int) and not isinstance(second, bool) and 100 <= second <= 599:
        assert status == second
    else:
        assert status is None  # a text, a flag, a number that is no HTTP status: none, never a guess


@given(st.integers(100, 599), st.text(max_size=20), st.none() | st.text(max_size=40))
def test_the_status_of_an_answer_as_mastodon_py_raises_it(status: int, reason: str, detail: str | None) -> None:
    # mastodon/internals.py: raise ex_type('Mastodon API returned error', status_code, reason, error_msg)
    assert http_status(MastodonAPIError("Mastodon API returned error", status, reason, detail)) == status


def test_the_status_of_a_real_answer(ctx: Context) -> None:
    with pytest.raises(MastodonNotFoundError) as missing:
        ctx.mastodon.admin_account("404404")
    assert http_status(missing.value) == 404
