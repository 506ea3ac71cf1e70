"""A real ``medcite serve`` on a free loopback port, for the tests and the bench scripts.

Not used by the service itself: tests/ and bench/ both import it (neither imports the other).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple


class Served(NamedTuple):
    base: str  # http://127.0.0.1:<port>
    ready_after: float  # seconds from start to the first 200 from /readyz


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(env: dict[str, str], log: Path, timeout: float | None = 180) -> Iterator[Served]:
    """``medcite serve`` in a subprocess (this environment with ``env`` on top, its output in
    ``log``) until it answers /readyz (``timeout=None``: however long that takes); terminated,
    then killed, on exit."""
    import httpx  # a dev dependency, as are the tests and benches that use this

    port = free_port()
    exe = Path(sys.executable).parent / "medcite"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(exe), "serve", "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if deadline is not None and time.monotonic() > deadline:
                raise RuntimeError(f"server not ready in {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Served(base, time.perf_counter() - t0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
