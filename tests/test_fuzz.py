"""Schemathesis fuzzing of the OpenAPI schema against a real ``medcite serve`` on loopback.

The server uses the fast fake model (``hashing-32``) and builds its index from a copy of the
bundled corpus. Every operation gets schema-valid (positive) cases and, where it has inputs,
schema-violating (negative) ones; every response must be no server error and must conform to
the schema (status code, content type, headers, body). Failures are collected rather than
raised, so Hypothesis does not spend the time budget shrinking, and all are reported at once.

Generation is derandomised (the same cases every run) so the test is reproducible; set
``MEDCITE_FUZZ_RANDOM=1`` to explore new cases.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from support import CORPUS, serve

pytestmark = pytest.mark.slow

# (method, path) -> (positive examples, negative examples); 0 negative = no inputs to violate.
BUDGET = {
    ("POST", "/search"): (350, 150),
    ("POST", "/search/batch"): (150, 100),
    ("GET", "/terms"): (200, 100),
    ("POST", "/terms"): (150, 100),
    # A path segment is always a string: there is nothing schema-violating to generate.
    ("GET", "/documents/{doc_id}"): (100, 0),
    ("GET", "/healthz"): (30, 0),  # no inputs: Hypothesis stops after the one possible case
    ("GET", "/readyz"): (30, 0),
    # Admin endpoints take no body: every generated case lacks the key and gets a 401.
    ("POST", "/admin/reload"): (20, 0),
    ("POST", "/admin/ingest"): (20, 0),
    ("GET", "/admin/ingest"): (20, 0),
    ("DELETE", "/admin/documents/{doc_id}"): (20, 0),
    # Staff feedback: no generated case has the key (401; 422 for a body that is not JSON).
    ("POST", "/feedback"): (30, 30),
    ("GET", "/feedback/enabled"): (20, 0),
}
MIN_CASES = 1000
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(CORPUS, root / "corpus")
    env = {
        "MEDCITE_MODEL": "hashing-32",
        "MEDCITE_ABSTAIN": "false",
        "MEDCITE_CORPUS_DIR": str(root / "corpus"),
        "MEDCITE_INDEX_DIR": str(root / "index"),  # empty: serve builds the index first
        "MEDCITE_CACHE_DIR": str(root / "cache"),
        "MEDCITE_ADMIN_API_KEY": "fuzz-admin-key-0123456789",
        # Fuzz the handlers, not the limiter (its 429 is tested in test_ops.py).
        "MEDCITE_RATE_LIMIT_PER_MINUTE": "0",
    }
    with serve(env, root / "serve.log", timeout=120) as base:
        yield base
    log = (root / "serve.log").read_text()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


def fuzz(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    examples: int,
    base: str,
    session: requests.Session,
    statuses: Counter[tuple[str, int]],
    failures: list[str],
    doc_ids: set[str],
) -> None:
    """Send up to ``examples`` generated cases; count statuses, collect check failures."""
    label = f"{operation.method.upper()} {operation.path} {mode.value}"

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=os.environ.get("MEDCITE_FUZZ_RANDOM") != "1",
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        try:
            response = case.call(base_url=base, session=session, timeout=60)
            statuses[(label, response.status_code)] += 1
            case.validate_response(response, checks=CHECKS)
            if operation.path == "/search" and response.status_code == 200:
                doc_ids.update(p["doc_id"] for p in response.json()["passages"])
        except (Exception, FailureGroup) as exc:  # collected, not raised: no shrinking
            failures.append(f"{label}: {type(exc).__name__}: {str(exc)[:1500]}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # Nothing schema-violating can be sent (e.g. a path segment is always a string).
        assert mode is GenerationMode.NEGATIVE, label
        print(f"{label}: no negative cases can be generated")


def test_fuzz_every_operation_no_server_error_and_schema_conformance(fuzz_server: str) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server}/openapi.json", timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} == set(BUDGET)

    session = requests.Session()
    statuses: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []
    doc_ids: set[str] = set()
    t0 = time.perf_counter()
    for operation in sorted(operations, key=lambda op: op.path != "/search"):
        budget = BUDGET[(operation.method.upper(), operation.path)]
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for mode, examples in zip(modes, budget, strict=True):
            if examples:
                fuzz(operation, mode, examples, fuzz_server, session, statuses, failures, doc_ids)
    # Generated ids are (almost) never real: also fetch every document the searches cited.
    documents = schema["/documents/{doc_id}"]["GET"]
    assert doc_ids
    for doc_id in sorted(doc_ids):
        case = documents.Case(path_parameters={"doc_id": doc_id})
        response = case.call(base_url=fuzz_server, session=session, timeout=60)
        statuses[("GET /documents/{doc_id} cited", response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)
        assert response.status_code == 200, response.text
    took = time.perf_counter() - t0
    total = sum(statuses.values())
    server_errors = sum(n for (_, status), n in statuses.items() if status >= 500)
    summary = "\n".join(f"{k[0]} -> {k[1]}: {n}" for k, n in sorted(statuses.items()))
    print(f"\n{total} fuzz cases in {took:.1f} s, {server_errors} server errors\n{summary}")
    assert server_errors == 0, summary
    assert not failures, "\n\n".join(failures[:10]) + f"\n\n({len(failures)} failures)"
    assert total >= MIN_CASES, summary
