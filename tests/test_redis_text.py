"""bot/core/redis_text.py against a real Redis: what was stored is read back as the same text (a string,
a list, a set, a hash, a sorted set with or without its scores), and a range read the other way from how
it was asked for is refused rather than misread."""

from __future__ import annotations

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core import redis_text

KEYS = ("test:string", "test:list", "test:set", "test:hash", "test:zset")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(), min_size=1, max_size=8, unique=True))
def test_what_was_stored_is_read_back_as_text(connection: redis.Redis, words: list[str]) -> None:
    connection.delete(*KEYS)
    string, listed, members, hashed, ranked = KEYS
    connection.set(string, words[0])
    connection.rpush(listed, *words)
    connection.sadd(members, *words)
    connection.hset(hashed, mapping={word: word[::-1] for word in words})
    connection.zadd(ranked, {word: rank for rank, word in enumerate(words)})

    assert redis_text.text(connection.type(string)) == "string"
    assert redis_text.text_or_none(connection.get(string)) == words[0]
    assert redis_text.text_or_none(connection.get("test:absent")) is None
    assert redis_text.texts(connection.lrange(listed, 0, -1)) == words
    assert sorted(redis_text.texts(connection.smembers(members))) == sorted(words)
    assert redis_text.text_map(connection.hgetall(hashed)) == {word: word[::-1] for word in words}
    assert redis_text.members(connection.zrange(ranked, 0, -1)) == words
    assert redis_text.members(connection.zrevrangebyscore(ranked, "+inf", "-inf")) == words[::-1]
    assert redis_text.scored(connection.zrange(ranked, 0, -1, withscores=True)) == [
        (word, float(rank)) for rank, word in enumerate(words)
    ]


def test_a_range_is_read_as_it_was_asked_for(connection: redis.Redis) -> None:
    connection.zadd("test:zset", {"ab": 1, "cd": 2})  # two-letter members: a pair-sized string
    with pytest.raises(TypeError, match="scored"):
        redis_text.members(connection.zrange("test:zset", 0, -1, withscores=True))
    with pytest.raises(TypeError, match="withscores"):
        redis_text.scored(connection.zrange("test:zset", 0, -1))
