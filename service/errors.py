"""Errors at the HTTP edge: one JSON shape (``{"error": {"code", "message"}}``), the domain
errors translated into it, and messages stripped of the configured folders' paths."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from medcite.index.errors import BackendUnavailable, InvalidQuery
from medcite.service.feedback import FeedbackUnavailable, InvalidFeedback
from medcite.service.schemas import ErrorResponse
from medcite.service.settings import Settings

LOG = logging.getLogger(__name__)

HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "not_ready",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A response in the error shape."""
    body = ErrorResponse.model_validate({"error": {"code": code, "message": message}})
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


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


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # a body FastAPI cannot decode (e.g. not UTF-8): bad input
        return error_response(422, "invalid_request", f"the request body is invalid: {exc.detail}")
    code = HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})  # e.g. Allow on a 405
    if exc.status_code == 503:
        headers["Retry-After"] = "5"
    return error_response(exc.status_code, code, str(exc.detail), headers or None)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = f"{where}: {first.get('msg', 'invalid request')}" if where else str(first.get("msg"))
    return error_response(422, "invalid_request", message)


async def invalid_query(request: Request, exc: Exception) -> JSONResponse:
    return error_response(422, "invalid_query", str(exc))


async def backend_unavailable(request: Request, exc: Exception) -> JSONResponse:
    LOG.error("index backend unavailable on %s: %s", request.url.path, exc)
    return error_response(
        503,
        "backend_unavailable",
        "the index backend is unavailable; try again later",
        {"Retry-After": "5"},
    )


async def invalid_feedback(request: Request, exc: Exception) -> JSONResponse:
    return error_response(422, "invalid_feedback", str(exc))


async def feedback_unavailable(request: Request, exc: Exception) -> JSONResponse:
    LOG.error("feedback store unavailable: %s", exc)
    return error_response(503, "feedback_unavailable", str(exc), {"Retry-After": "30"})


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    LOG.exception("unexpected error on %s", request.url.path)
    return error_response(500, "internal_error", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    """Answer HTTP errors, invalid requests and the domain errors in the error shape."""
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(InvalidQuery, invalid_query)
    app.add_exception_handler(BackendUnavailable, backend_unavailable)
    app.add_exception_handler(InvalidFeedback, invalid_feedback)
    app.add_exception_handler(FeedbackUnavailable, feedback_unavailable)
    app.add_exception_handler(Exception, unexpected)
