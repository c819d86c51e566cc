"""Lua scripts called with names (bot.scripting.Lua.call and its NAMED_ARGUMENTS library), against the
real redis-server: values arrive as sent, and a name that is missing, misspelt or null is an error
naming it, before the script writes anything. The family scripts' own names: test_spam_wave."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.scripting import LUA_EXACT_INTEGER, NAMED_ARGUMENTS, Lua

PROBE = """
local key, arg = named_arguments({'target'}, {'text', 'number', 'flag', 'items'})
if arg.flag then redis.call('SET', key.target, arg.text) end
local items = {}
for i, item in ipairs(arg.items) do items[i] = item end
return {arg.text, string.format('%.17g', arg.number), arg.flag and 1 or 0, items}
"""


@pytest.fixture
def probe(tmp_path: Path) -> Lua:
    (tmp_path / "lua").mkdir()
    (tmp_path / "lua" / "probe.lua").write_text(PROBE)
    (tmp_path / "lua" / "typo.lua").write_text("local key, arg = named_arguments({}, {'text'})\nreturn arg.txet")
    return Lua(str(tmp_path / "probe.py"), "probe", include=[NAMED_ARGUMENTS])


ARGS = {"text": "a", "number": 1, "flag": False, "items": []}


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(),
    number=st.integers(-LUA_EXACT_INTEGER, LUA_EXACT_INTEGER),
    flag=st.booleans(),
    items=st.lists(st.text(), max_size=5),
)
def test_values_arrive_as_sent(
    connection: redis.Redis, probe: Lua, text: str, number: int, flag: bool, items: list[str]
) -> None:
    args = {"text": text, "number": number, "flag": flag, "items": items}
    got_text, got_number, got_flag, got_items = probe.call(connection, keys={"target": "probe:target"}, args=args)
    assert got_text.decode() == text  # byte for byte: UTF-8, as a positional argument would be
    assert int(got_number) == number
    assert bool(got_flag) == flag
    assert [item.decode() for item in got_items] == items
    if flag:
        assert connection.get("probe:target") == text.encode()


@pytest.mark.parametrize(
    ("keys", "args", "error"),
    [
        (
            {"target": "probe:target"},
            {name: v for name, v in ARGS.items() if name != "number"},
            "argument missing: number",
        ),
        ({"target": "probe:target"}, {**ARGS, "numbr": 1}, "argument not declared: numbr"),
        ({"target": "probe:target"}, {**ARGS, "number": None}, "argument missing: number"),
        ({"targett": "probe:target"}, ARGS, "key missing: target"),
        ({"target": "probe:target", "other": "probe:other"}, ARGS, "key not declared: other"),
    ],
)
def test_a_missing_misspelt_or_null_name_is_an_error_naming_it(
    connection: redis.Redis, probe: Lua, keys: dict[str, str], args: dict[str, object], error: str
) -> None:
    with pytest.raises(redis.ResponseError, match=f"probe: {error}"):
        probe.call(connection, keys=keys, args={**args, "flag": True})
    assert not connection.exists("probe:target")  # refused before the script wrote anything


def test_reading_an_undeclared_name_is_an_error(connection: redis.Redis, probe: Lua, tmp_path: Path) -> None:
    typo = Lua(str(tmp_path / "probe.py"), "typo", include=[NAMED_ARGUMENTS])
    with pytest.raises(redis.ResponseError, match="typo: argument not declared: txet"):
        typo.call(connection, keys={}, args={"text": "a"})


def test_an_integer_lua_would_round_is_refused(connection: redis.Redis, probe: Lua) -> None:
    with pytest.raises(ValueError, match="number is too large"):
        probe.call(connection, keys={"target": "probe:target"}, args={**ARGS, "number": LUA_EXACT_INTEGER + 1})
