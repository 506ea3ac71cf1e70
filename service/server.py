"""The HTTP server around the app: uvicorn, made to hold against idle and slow clients.

uvicorn alone keeps a connection that never completes its request line and headers open for
ever (its keep-alive timer only starts after a response), has no bound on connections, and
trusts ``X-Forwarded-For`` from 127.0.0.1 by default. Here:

- a connection must deliver a request's line and headers within ``header_timeout`` seconds
  of its first byte (or of connecting), else it is closed: a byte every few seconds does not
  extend the deadline;
- idle keep-alive connections close after ``keep_alive_timeout`` (uvicorn's own timer);
- at most ``max_connections`` are open: a new connection over the limit evicts the oldest one
  that has no request in flight (an idle or slow one), else it is closed itself, so sockets
  that send nothing cannot starve real clients or exhaust file descriptors;
- a slow request *body* is bounded in the app (``BodySizeLimit``: 408);
- forwarded headers are trusted only from ``forwarded_allow_ips`` (default: nobody);
- the event loop's accept errors (out of file descriptors) are logged at most once per
  ``LOG_EVERY`` seconds with a count, not once per loop turn.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass, replace
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

LOG = logging.getLogger(__name__)
LOG_EVERY = 10.0


@dataclass(frozen=True)
class ServerLimits:
    header_timeout: float = 10.0
    keep_alive_timeout: int = 5
    max_connections: int = 1000
    forwarded_allow_ips: tuple[str, ...] = ()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a bound on open connections.
    ``limits`` is set on a subclass by :func:`protocol_class`."""

    limits = ServerLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.opened = time.monotonic()
        self.header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE:  # a request line/headers are (partly) due
            if self.header_timer is None:
                self._arm_header_timer()
        else:
            self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._disarm_header_timer()  # uvicorn's keep-alive timer takes over
        super().on_response_complete()

    def _arm_header_timer(self) -> None:
        self.header_timer = self.loop.call_later(self.limits.header_timeout, self._headers_late)

    def _disarm_header_timer(self) -> None:
        if getattr(self, "header_timer", None) is not None:
            assert self.header_timer is not None
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_late(self) -> None:
        self.header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def _busy(self) -> bool:
        return self.conn.their_state is not h11.IDLE or (
            self.cycle is not None and not self.cycle.response_complete
        )

    def _make_room(self) -> None:
        idle = [
            c
            for c in self.connections
            if c is not self and isinstance(c, GuardedH11Protocol) and not c._busy()
        ]
        victim = min(idle, key=lambda c: c.opened) if idle else self
        victim.transport.close()
        victim.connections.discard(victim)


def protocol_class(limits: ServerLimits) -> type[GuardedH11Protocol]:
    return type("MedciteH11Protocol", (GuardedH11Protocol,), {"limits": limits})


class EveryFewSeconds(logging.Filter):
    """Lets one record per message template through every ``seconds``; the next one that
    passes says how many were dropped."""

    def __init__(self, seconds: float = LOG_EVERY) -> None:
        super().__init__()
        self.seconds = seconds
        self.last: dict[str, float] = {}
        self.dropped: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)[:60]
        now = time.monotonic()
        if now - self.last.get(key, -1e18) < self.seconds:
            self.dropped[key] = self.dropped.get(key, 0) + 1
            return False
        self.last[key] = now
        dropped = self.dropped.pop(key, 0)
        if dropped:
            record.msg = f"{record.msg} ({dropped} more like this in the last {self.seconds:g} s)"
        return True


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one; the soft limit it ends at."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def server_config(app: Any, *, host: str, port: int, limits: ServerLimits) -> uvicorn.Config:
    """The uvicorn configuration ``medcite serve`` runs (tests run the same)."""
    open_files = raise_open_files_limit()
    if limits.max_connections > open_files - 64:
        LOG.warning(
            "max connections %d is near the open-files limit %d; lowering it to %d",
            limits.max_connections,
            open_files,
            max(16, open_files - 64),
        )
        limits = replace(limits, max_connections=max(16, open_files - 64))
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, EveryFewSeconds) for f in asyncio_log.filters):
        asyncio_log.addFilter(EveryFewSeconds())
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class(limits),
        timeout_keep_alive=limits.keep_alive_timeout,
        proxy_headers=bool(limits.forwarded_allow_ips),
        forwarded_allow_ips=list(limits.forwarded_allow_ips) or None,
        log_config=None,  # keep our handlers: JSON lines with request ids
        access_log=False,  # medcite.access logs each request instead
        lifespan="on",
    )
