"""What the bench scripts share: the question mix, percentiles, a real server on loopback.

Scripts import it as a sibling module (`python bench/x.py` puts bench/ on sys.path); bench/
does not import from tests/.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

QUESTIONS = [
    "why does my back hurt after a miscarriage",
    "流产后腰疼是什么原因",
    "back pain in pregnancy",
    "怀孕三个月腰疼怎么办",
    "how long does bleeding last after a miscarriage",
    "流产后腰酸肚子疼",
    "is relaxin the cause of joint pain",
    "how to brew chrysanthemum tea",
    "药物流产后腰疼",
    "what to do about lower back pain after an abortion",
]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


@contextmanager
def served(env: dict[str, str], log: Path) -> Iterator[tuple[str, float]]:
    """`medcite serve` on a free loopback port: (base URL, seconds until ready)."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "medcite"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(exe), "serve", "--port", str(port)], env=env, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield base, time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait()
