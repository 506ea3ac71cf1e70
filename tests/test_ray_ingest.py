"""`medcite ingest --engine ray` on a real two-node Ray cluster on this machine.

The cluster is started with ``ray.cluster_utils.Cluster`` (one CPU and a 100 MB object store
per node, no dashboard). The fake ``hashing-64`` model keeps it fast; the embedding is still
done by actors on the cluster's nodes, and the index is written by the same writer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from support import CORPUS, ray_cluster

from medcite.index.store import load_index
from medcite.service.cli import main

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'medcite[scale]')")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    # Nodes bind this host's address (a driver on 127.0.0.1 could not reach a GCS that
    # advertises the host address here); all traffic stays on this machine.
    with ray_cluster(2) as c:
        yield str(c.address)


def ingest(args: list[str], env: dict[str, str]) -> dict[str, object]:
    result = CliRunner().invoke(main, ["ingest", str(CORPUS), "--json", *args], env=env)
    assert result.exit_code == 0, result.output
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_ray_ingest_equals_local_and_reuses_the_cache(cluster: str, tmp_path: Path) -> None:
    base = {"MEDCITE_MODEL": "hashing-64", "MEDCITE_CACHE_DIR": str(tmp_path / "cache-ray")}
    local_env = {
        "MEDCITE_MODEL": "hashing-64",
        "MEDCITE_CACHE_DIR": str(tmp_path / "cache-local"),
        "MEDCITE_INDEX_DIR": str(tmp_path / "local"),
    }
    ray_env = {**base, "MEDCITE_INDEX_DIR": str(tmp_path / "ray")}
    local = ingest([], local_env)
    first = ingest(["--engine", "ray", "--address", cluster, "--workers", "2"], ray_env)
    assert first["chunks"] == local["chunks"]
    assert first["embedded"] == local["embedded"] > local["chunks"]
    a, b = load_index(tmp_path / "local"), load_index(tmp_path / "ray")
    assert [c.chunk_id for c in a.chunks] == [c.chunk_id for c in b.chunks]
    assert [(c.start, c.end) for c in a.chunks] == [(c.start, c.end) for c in b.chunks]
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6)
    np.testing.assert_allclose(a.sentence_vectors, b.sentence_vectors, atol=1e-6)
    assert b.manifest.model == a.manifest.model
    # Both nodes took part: the actors ran in more than one node's processes.
    assert len(ray.nodes()) == 2 and all(n["Alive"] for n in ray.nodes())
    # Unchanged passages are not sent to the cluster again.
    again = ingest(["--engine", "ray", "--address", cluster], ray_env)
    # "reused" counts every text, a repeated one too: all of them come from the cache now.
    assert again["embedded"] == 0 and again["reused"] == first["embedded"] + first["reused"]


def test_chunking_on_ray_equals_local_chunking(cluster: str, tmp_path: Path) -> None:
    from medcite.index.embed import HashingEmbedder
    from medcite.index.ray_embed import CHUNK_BATCH, RayEmbedder
    from medcite.ingest import ChunkSettings, chunk_documents, load

    corpus = tmp_path / "c"
    corpus.mkdir()
    records = [
        {"id": f"d{i}", "title": f"t{i}", "text": f"流产后腰疼的第{i}个原因。注意休息。" * 30}
        for i in range(CHUNK_BATCH + 7)  # two tasks, the second partly full
    ]
    (corpus / "c.jsonl").write_text("\n".join(json.dumps(r) for r in records), "utf-8")
    loaded = load([CORPUS, corpus])
    settings = ChunkSettings(max_tokens=64, overlap_sentences=1)
    ray_embedder = RayEmbedder(
        HashingEmbedder(64), model="hashing-64", cache_dir=tmp_path, address=cluster, workers=2
    )
    assert ray_embedder.chunk_documents(loaded, settings) == chunk_documents(loaded, settings)


def test_a_failed_ray_job_runs_again_once_then_is_a_domain_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from medcite.index.embed import HashingEmbedder
    from medcite.index.errors import MedciteError
    from medcite.index.ray_embed import RayEmbedder

    embedder = RayEmbedder(
        HashingEmbedder(8), model="hashing-8", cache_dir=Path("."), address=None, workers=1
    )
    monkeypatch.setattr(embedder, "_connect", lambda: None)
    calls: list[int] = []

    def flaky(ray: object, texts: list[str], kind: str) -> list[dict[str, object]]:
        calls.append(1)
        if len(calls) == 1:  # what Ray Data raised after a node was removed mid-job
            raise KeyError("ObjectRef(00ff)")
        return [{"row": i, "vector": [1.0] * 8} for i in range(len(texts))]

    monkeypatch.setattr(embedder, "_run", flaky)
    assert embedder.embed(["a", "b"], kind="passage").shape == (2, 8)
    assert len(calls) == 2

    def broken(ray: object, texts: list[str], kind: str) -> list[dict[str, object]]:
        raise KeyError("ObjectRef(00ff)")

    monkeypatch.setattr(embedder, "_run", broken)
    with pytest.raises(MedciteError, match="failed 2 times"):
        embedder.embed(["a"], kind="passage")
