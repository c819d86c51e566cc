"""Lua scripts: each in a `.lua` file in the `lua/` folder next to the module that runs it, read once at
import, called by SHA (EVALSHA) with the source sent only when Redis does not know it yet (a restart or
a flush). Keys and constants reach a script as KEYS and ARGV, never spliced into its source; a shared
Lua function (a library file) is included by name.

A script with more than a few arguments takes them by name (`Lua.call`, reading them with the
NAMED_ARGUMENTS library): its keys still go in KEYS, so Redis knows which keys the script declares
(what Redis Cluster and ACL key patterns check), and one JSON object in ARGV[1] names each key and
carries the arguments. A name missing or misspelt on either side is an error, not a nil.

Every script is atomic: it is where a compare-and-set or a count-and-decide must happen in one step.
Decisions that need not be part of that step are made in Python.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import redis

LUA_EXACT_INTEGER = 2**53
"""Lua's numbers are doubles: a larger integer (a Mastodon id) would be rounded, so it goes as a string."""


class Lua:
    def __init__(self, module_file: str, name: str, include: Sequence[Lua] = ()) -> None:
        path = Path(module_file).resolve().parent / "lua" / f"{name}.lua"
        self.name = name
        self.source: str = "\n".join([*(library.source for library in include), path.read_text()])
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def __call__(self, connection: redis.Redis, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        try:
            return connection.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return connection.eval(self.source, len(keys), *keys, *args)  # and Redis caches it again

    def call(self, connection: redis.Redis, keys: Mapping[str, str], args: Mapping[str, Any]) -> Any:
        """Run a script that takes named arguments (it includes NAMED_ARGUMENTS). Values are what JSON
        carries: strings, numbers, booleans, lists and objects of them (never None). Event times go as
        text (`repr`), which a script stores as written and reads with `tonumber`."""
        for name, value in args.items():
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > LUA_EXACT_INTEGER:
                raise ValueError(f"{self.name}: {name} is too large for a Lua number: pass it as a string")
        # orjson: a call per event on the hot path (json.dumps was most of a call's client time). UTF-8,
        # not \\u escapes; text UTF-8 cannot encode fails here; NaN becomes null, which the script refuses.
        named = orjson.dumps({"script": self.name, "keys": list(keys), "args": args})
        return self(connection, list(keys.values()), [named])

    def __repr__(self) -> str:
        return f"Lua({self.name!r})"


NAMED_ARGUMENTS = Lua(__file__, "named_arguments_function")
"""A library: `local key, arg = named_arguments({key names}, {argument names})` at the top of a script
called with `Lua.call`."""
