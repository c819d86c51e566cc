"""Child processes that `tocsin serve` (and the embedded Redis) start and stop in order.

Children get their own session, so a Ctrl-C in the terminal reaches only the parent, which stops the
web process and workers first and Redis last (a worker still finishing a job needs Redis). On Linux
they are also told to exit if the parent dies, so a killed `tocsin serve` leaves nothing running.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


def _exit_with_parent() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def child_options() -> dict[str, Any]:
    """Keyword arguments for subprocess.Popen."""
    options: dict[str, Any] = {"start_new_session": True}
    if sys.platform == "linux":
        options["preexec_fn"] = _exit_with_parent
    return options
