"""Ray embedding survives losing a worker node mid-job: no passage lost or duplicated.

A real three-node ``ray.cluster_utils.Cluster`` on this machine (one CPU and a 100 MB object
store per node, no dashboard). Two embedding actors run on the cluster; once both are alive
and the job is under way, the node hosting one of them is killed. Ray Data restarts the
actor on a surviving node and retries its unfinished batches; the vectors must still be
exactly the local ones, one per passage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import ray_cluster

from medcite.index.embed import HashingEmbedder
from medcite.index.ray_embed import RayEmbedder

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'medcite[scale]')")
pytestmark = pytest.mark.slow


@pytest.fixture
def cluster() -> Iterator[Any]:
    with ray_cluster(3) as c:
        yield c


def _actors() -> list[dict[str, Any]]:
    """Embedding actors from the GCS actor table (the state API needs the dashboard)."""
    if not ray.is_initialized():
        return []
    from ray._private.state import actors

    return [a for a in actors().values() if "EmbedActor" in a["ActorClassName"]]


def _actor_nodes() -> set[str]:
    return {a["Address"]["NodeID"] for a in _actors() if a["State"] == "ALIVE"}


def test_a_node_removed_mid_job_loses_and_duplicates_nothing(cluster: Any, tmp_path: Path) -> None:
    texts = [
        f"passage {i} about back pain after a miscarriage, week {i % 40}" for i in range(20_000)
    ]
    embedder = RayEmbedder(
        HashingEmbedder(64),
        model="hashing-64",
        cache_dir=tmp_path,
        address=str(cluster.address),
        workers=2,
        batch_size=8,  # many small batches, so the job is still running when a node goes
    )
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["vectors"] = embedder.embed(texts, kind="passage")
        except BaseException as exc:  # reported by the assertion below
            result["error"] = exc

    job = threading.Thread(target=run)
    job.start()
    deadline = time.monotonic() + 120
    while len(_actor_nodes()) < 2 and job.is_alive():
        assert time.monotonic() < deadline, "the embedding actors never started"
        time.sleep(0.2)
    time.sleep(1.0)  # let some batches finish on both actors
    assert job.is_alive(), "the job finished before a node could be removed"
    victims = [n for n in cluster.worker_nodes if n.node_id in _actor_nodes()]
    assert victims, "no worker node hosts an embedding actor"
    cluster.remove_node(victims[0], allow_graceful=False)
    job.join(timeout=300)
    assert not job.is_alive(), "the job did not finish after the node was removed"
    assert "error" not in result, result.get("error")
    vectors = result["vectors"]
    assert vectors.shape == (len(texts), 64)
    np.testing.assert_allclose(vectors, HashingEmbedder(64).embed(texts, kind="passage"), atol=1e-6)
    alive = [n for n in ray.nodes() if n["Alive"]]
    assert len(alive) == 2
    # The lost actor was restarted (on a surviving node) and its batches retried.
    assert sum(a["NumRestarts"] for a in _actors()) >= 1
