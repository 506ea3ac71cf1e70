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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

import service.convertors  # noqa: F401  ({doc_id:anypath})
from index.build import remove_documents
from index.embed import set_threads
from index.errors import DocumentNotFound, MedciteError
from service.auth import bearer_key, key_matches
from service.engine import reload_engine
from service.schemas import ErrorResponse
from service.settings import Settings

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
class _Job:
    status: IngestStatus


ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    403: {"model": ErrorResponse, "description": "admin endpoints are disabled"},
    409: {"model": ErrorResponse, "description": "the operation could not be done now"},
}


def public_message(message: str, settings: Settings) -> str:
    """``message`` with the configured folders' absolute paths replaced by their variables."""
    folders: dict[str, Path | None] = {
        "$MEDCITE_INDEX_DIR": settings.index_dir,
        "$MEDCITE_CORPUS_DIR": settings.corpus_dir,
        "$MEDCITE_CACHE_DIR": settings.cache_dir,
    }
    forms = {
        str(form): name
        for name, folder in folders.items()
        if folder is not None
        for form in (folder.absolute(), folder.resolve())
    }
    for form in sorted(forms, key=len, reverse=True):  # a folder inside another one first
        if form != "/":
            message = message.replace(form, forms[form])
    return message


def admin_router(settings: Settings) -> APIRouter:
    key = settings.admin_api_key.get_secret_value().encode() if settings.admin_api_key else None

    def require_admin(request: Request) -> None:
        if key is None:
            raise HTTPException(403, "admin endpoints are disabled: set MEDCITE_ADMIN_API_KEY")
        if not key_matches(bearer_key(request), key):
            raise HTTPException(
                401, "a valid admin API key is required", {"WWW-Authenticate": "Bearer"}
            )

    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])
    lock = asyncio.Lock()
    job = _Job(IngestStatus(state="idle"))
    starting = threading.Lock()

    def swap(app: FastAPI) -> tuple[str, str | None]:
        current = getattr(app.state, "engine", None)
        new = reload_engine(settings, current)
        app.state.engine = new  # one assignment: in-flight requests keep the old engine
        app.state.error = None
        previous = current.index.path.name if current is not None else None
        LOG.info("reloaded index %s (was %s)", new.index.path.name, previous)
        return new.index.path.name, previous

    @router.post("/reload", response_model=ReloadResponse, responses=ADMIN_ERRORS)
    async def reload(request: Request) -> ReloadResponse:
        """Load the index's live version and serve it, without downtime."""
        async with lock:
            try:
                version, previous = await anyio.to_thread.run_sync(swap, request.app)
            except MedciteError as exc:
                raise HTTPException(
                    409,
                    "reload failed; still serving the old index: "
                    + public_message(str(exc), settings),
                ) from exc
        return ReloadResponse(status="reloaded", index_version=version, previous_version=previous)

    def remove(app: FastAPI, doc_id: str) -> str:
        engine = getattr(app.state, "engine", None)
        backend = engine.backend if engine is not None else None
        remove_documents(
            settings.index_dir,
            {doc_id},
            hnsw_threshold=settings.hnsw_threshold,
            before_publish=backend.publish if backend is not None else None,
        )
        version, _ = swap(app)
        return version

    @router.delete(
        "/documents/{doc_id:anypath}",
        response_model=RemovedResponse,
        responses={**ADMIN_ERRORS, 404: {"model": ErrorResponse}},
    )
    async def delete_document(request: Request, doc_id: str) -> RemovedResponse:
        """Publish and serve a new index version without this document (the corpus file is
        not touched: re-ingesting a corpus that still holds it brings it back)."""
        async with lock:
            try:
                version = await anyio.to_thread.run_sync(remove, request.app, doc_id)
            except DocumentNotFound as exc:
                raise HTTPException(404, str(exc)) from exc
            except MedciteError as exc:
                raise HTTPException(
                    409, "not removed: " + public_message(str(exc), settings)
                ) from exc
        return RemovedResponse(status="removed", doc_id=doc_id, index_version=version)

    def run(app: FastAPI) -> None:
        from service.pipeline import run_ingest

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
                )
            finally:
                set_threads(settings.threads)  # ingest used every core; serving uses these
            version, _ = swap(app)
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
    def ingest(request: Request) -> IngestStatus:
        """Re-ingest the configured corpus in the background, then reload; poll GET."""
        with starting:
            if job.status.state == "running":
                raise HTTPException(409, "an ingest is already running")
            job.status = IngestStatus(state="running", started=time.time())
        threading.Thread(target=run, args=(request.app,), daemon=True).start()
        return job.status

    @router.get("/ingest", response_model=IngestStatus, responses=ADMIN_ERRORS)
    def ingest_status() -> IngestStatus:
        """The last admin ingest: idle, running, succeeded or failed (with the reason)."""
        return job.status

    return router
