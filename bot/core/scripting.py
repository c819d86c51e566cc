"""Lua scripts: each in a `.lua` file in the `lua/` folder next to the module that runs it, read once at
import, called by SHA (EVALSHA) with the source sent only when Redis does not know it yet (a restart or
a flush). Keys and constants reach a script as KEYS and ARGV, never spliced into its source; a shared
Lua function (a library file) is included by name.

Every script is atomic: it is where a compare-and-set or a count-and-decide must happen in one step.
Decisions that need not be part of that step are made in Python.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis


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

    def __repr__(self) -> str:
        return f"Lua({self.name!r})"
