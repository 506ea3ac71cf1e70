"""Paths and helpers shared by the tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"


def cache_dir() -> Path:
    """Where the converted default model and embedding cache live during tests."""
    return Path(os.environ.get("MEDCITE_TEST_CACHE") or Path.home() / ".cache" / "medcite")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(env: dict[str, str], log: Path, timeout: float = 180) -> Iterator[str]:
    """``medcite serve`` in a subprocess on a free loopback port, until it is ready."""
    port = free_port()
    exe = Path(sys.executable).parent / "medcite"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(exe), "serve", "--port", str(port)],
            env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready in {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def write_relevance_model(path: Path, threshold: float = 0.5, **coef: float) -> Path:
    """A hand-made relevance model file (MEDCITE_RELEVANCE_MODEL): the given coefficients
    on raw features, ``intercept`` among them; every embedding model gets it."""
    import json

    from index.relevance import FEATURES

    model = {
        "features": list(FEATURES),
        "mean": [0.0] * len(FEATURES),
        "scale": [1.0] * len(FEATURES),
        "coef": [coef.get(f, 0.0) for f in FEATURES],
        "intercept": coef.get("intercept", 0.0),
        "threshold": threshold,
    }
    path.write_text(json.dumps({"models": {"intfloat/multilingual-e5-small": model}}), "utf-8")
    return path
