"""Admin endpoints (reload, ingest, delete): disabled unless MEDCITE_ADMIN_API_KEY is set.

The key is sent as ``Authorization: Bearer <key>`` and compared in constant time. A reload
swaps ``app.state.engine`` in one assignment: requests already running keep the engine they
started with, so they finish on the old index while new ones use the new.

Failures are reported with the domain error's message, the configured folders in it shown
as the variables that set them ($MEDCITE_INDEX_DIR, ...): no absolute path reaches a client.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

import medcite.service.convertors  # noqa: F401  ({doc_id:anypath})
from medcite.index.build import remove_documents
from medcite.index.embed import set_threads
from medcite.index.errors import DocumentNotFound, MedciteError
from medcite.service.auth import bearer_key, key_matches
from medcite.service.deps import SettingsDep
from medcite.service.engine import reload_engine
from medcite.service.errors import public_message
from medcite.service.schemas import ErrorResponse
from medcite.service.settings import Settings

LOG = logging.getLogger(__name__)


class ReloadResponse(BaseModel):
    status: Literal["reloaded"]
    index_version: str
    previous_version: str | None


class IngestStatus(BaseModel):
    state: Literal["idle", "running", "succeeded", "failed"]
    started: float | None = None
    finished: float | None = None
    message: str | None = None
    index_version: str | None = None


class RemovedResponse(BaseModel):
    status: Literal["removed"]
    doc_id: str
    index_version: str


@dataclass
class IngestJob:
    """The app's admin work on the index: the background ingest's status, the lock that
    lets one ingest start at a time, and the one that runs reloads and deletions one by one."""

    status: IngestStatus = field(default_factory=lambda: IngestStatus(state="idle"))
    starting: threading.Lock = field(default_factory=threading.Lock)
    changing: asyncio.Lock = field(default_factory=asyncio.Lock)


async def get_ingest_job(request: Request) -> IngestJob:
    job: IngestJob = request.app.state.ingest_job
    return job


IngestJobDep = Annotated[IngestJob, Depends(get_ingest_job)]


def require_admin(request: Request, settings: SettingsDep) -> None:
    """403 while no admin key is configured, 401 for a missing or wrong key."""
    key = settings.admin_api_key
    if key is None:
        raise HTTPException(403, "admin endpoints are disabled: set MEDCITE_ADMIN_API_KEY")
    if not key_matches(bearer_key(request), key.get_secret_value().encode()):
        raise HTTPException(
            401, "a valid admin API key is required", {"WWW-Authenticate": "Bearer"}
        )


ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    403: {"model": ErrorResponse, "description": "admin endpoints are disabled"},
    409: {"model": ErrorResponse, "description": "the operation could not be done now"},
}

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


def swap(app: FastAPI, settings: Settings) -> tuple[str, str | None]:
    """Serve the index's live version; the new and the previous version's names."""
    current = getattr(app.state, "engine", None)
    new = reload_engine(settings, current)
    app.state.engine = new  # one assignment: in-flight requests keep the old engine
    app.state.error = None
    previous = current.index.path.name if current is not None else None
    LOG.info("reloaded index %s (was %s)", new.index.path.name, previous)
    return new.index.path.name, previous


@router.post("/reload", response_model=ReloadResponse, responses=ADMIN_ERRORS)
async def reload(request: Request, settings: SettingsDep, job: IngestJobDep) -> ReloadResponse:
    """Load the index's live version and serve it, without downtime."""
    async with job.changing:
        try:
            version, previous = await anyio.to_thread.run_sync(swap, request.app, settings)
        except MedciteError as exc:
            raise HTTPException(
                409,
                "reload failed; still serving the old index: " + public_message(str(exc), settings),
            ) from exc
    return ReloadResponse(status="reloaded", index_version=version, previous_version=previous)


def remove(app: FastAPI, settings: Settings, doc_id: str) -> str:
    """Publish an index version without ``doc_id`` and serve it; the new version's name."""
    engine = getattr(app.state, "engine", None)
    backend = engine.backend if engine is not None else None
    remove_documents(
        settings.index_dir,
        {doc_id},
        hnsw_threshold=settings.hnsw_threshold,
        before_publish=backend.publish if backend is not None else None,
        tokenizer=engine.tokenizer if engine is not None else None,
    )
    version, _ = swap(app, settings)
    return version


@router.delete(
    "/documents/{doc_id:anypath}",
    response_model=RemovedResponse,
    responses={**ADMIN_ERRORS, 404: {"model": ErrorResponse}},
)
async def delete_document(
    request: Request, doc_id: str, settings: SettingsDep, job: IngestJobDep
) -> RemovedResponse:
    """Publish and serve a new index version without this document (the corpus file is
    not touched: re-ingesting a corpus that still holds it brings it back)."""
    async with job.changing:
        try:
            version = await anyio.to_thread.run_sync(remove, request.app, settings, doc_id)
        except DocumentNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except MedciteError as exc:
            raise HTTPException(409, "not removed: " + public_message(str(exc), settings)) from exc
    return RemovedResponse(status="removed", doc_id=doc_id, index_version=version)


def run_ingest_job(app: FastAPI, settings: Settings, job: IngestJob) -> None:
    """Re-ingest the corpus, then serve the new version; the outcome goes to ``job``."""
    from medcite.service.pipeline import run_ingest

    try:
        if settings.corpus_dir is None:
            raise MedciteError("no corpus folder is configured (MEDCITE_CORPUS_DIR)")
        engine = getattr(app.state, "engine", None)
        try:
            run_ingest(
                [settings.corpus_dir],
                settings,
                quiet=True,
                embedder=engine.embedder if engine is not None else None,
                backend=engine.backend if engine is not None else None,
                tokenizer=engine.tokenizer if engine is not None else None,
            )
        finally:
            set_threads(settings.threads)  # ingest used every core; serving uses these
        version, _ = swap(app, settings)
        job.status = job.status.model_copy(
            update={"state": "succeeded", "index_version": version, "message": None}
        )
    except Exception as exc:  # reported through the status endpoint, and logged
        LOG.exception("admin ingest failed")
        # A domain error's message (IndexWriteError: disk full, with the space free and
        # needed); anything else by its type only.
        message = (
            public_message(str(exc), settings)
            if isinstance(exc, MedciteError)
            else type(exc).__name__
        )
        job.status = job.status.model_copy(update={"state": "failed", "message": message})
    finally:
        job.status = job.status.model_copy(update={"finished": time.time()})


@router.post("/ingest", response_model=IngestStatus, status_code=202, responses=ADMIN_ERRORS)
def ingest(request: Request, settings: SettingsDep, job: IngestJobDep) -> IngestStatus:
    """Re-ingest the configured corpus in the background, then reload; poll GET."""
    with job.starting:
        if job.status.state == "running":
            raise HTTPException(409, "an ingest is already running")
        job.status = IngestStatus(state="running", started=time.time())
    threading.Thread(target=run_ingest_job, args=(request.app, settings, job), daemon=True).start()
    return job.status


@router.get("/ingest", response_model=IngestStatus, responses=ADMIN_ERRORS)
def ingest_status(job: IngestJobDep) -> IngestStatus:
    """The last admin ingest: idle, running, succeeded or failed (with the reason)."""
    return job.status
