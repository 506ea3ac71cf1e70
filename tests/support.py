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


def hand_model(threshold: float = 0.5, question: dict[str, float] | None = None, **coef: float):  # type: ignore[no-untyped-def]
    """A hand-made relevance model: ``coef`` on raw candidate features for P(relevant |
    answerable) (``intercept`` among them), ``question`` likewise on the question features
    (``top:<feature>``, ``max5:<feature>``) for P(answerable); every embedding model gets it."""
    from index.relevance import FEATURES, QUESTION_FEATURES, Logistic, RelevanceModel

    def logistic(names: tuple[str, ...], given: dict[str, float]) -> Logistic:
        n = len(names)
        return Logistic(
            names,
            (0.0,) * n,
            (1.0,) * n,
            tuple(given.get(f, 0.0) for f in names),
            given.get("intercept", 0.0),
        )

    return RelevanceModel(
        logistic(FEATURES, coef),
        logistic(QUESTION_FEATURES, question or {"intercept": 20.0}),
        threshold,
    )


def write_relevance_model(
    path: Path, threshold: float = 0.5, question: dict[str, float] | None = None, **coef: float
) -> Path:
    """:func:`hand_model` as a MEDCITE_RELEVANCE_MODEL file."""
    import json

    model = hand_model(threshold, question, **coef)
    path.write_text(json.dumps({"models": {"intfloat/multilingual-e5-small": model.to_json()}}))
    return path
