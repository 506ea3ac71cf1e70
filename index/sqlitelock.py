"""Open SQLite files that several processes may create at once."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable


def while_locked(step: Callable[[], object], *, timeout_s: float) -> None:
    """Run ``step``, retrying while another connection holds the lock, up to ``timeout_s``.

    Switching a new file to WAL needs an exclusive lock, and SQLite does not call the busy
    handler for it: eight openers of one new path lost about one round in twelve to
    "database is locked" although each had a busy timeout.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if ("locked" not in text and "busy" not in text) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
