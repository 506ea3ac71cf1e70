"""Staff feedback over HTTP: ``POST /feedback`` and ``GET /feedback/enabled``.

``POST /feedback`` needs ``Authorization: Bearer <key>`` with the staff key
(MEDCITE_STAFF_KEY) or the admin key (MEDCITE_ADMIN_API_KEY): with neither set it answers
403, with a missing or wrong key 401. ``GET /feedback/enabled`` tells the page whether
feedback is on and, when a key is presented, whether it is accepted (a wrong one is a 401).
The store (:mod:`service.feedback`) is opened on first use, so a store that cannot be opened
(corrupt, read-only) makes feedback a 503 while search keeps serving (the HTTP form of its
errors is in :mod:`service.errors`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from medcite.index.search import MAX_QUERY_CHARS, validate_query
from medcite.service.auth import bearer_key, key_matches
from medcite.service.deps import MetricsDep
from medcite.service.feedback import (
    MAX_ID,
    FeedbackStore,
    InvalidFeedback,
    staff_id,
)
from medcite.service.schemas import ErrorResponse
from medcite.service.settings import Settings


@dataclass(frozen=True)
class StaffKey:
    """Who gives feedback: the role of the key presented and the store's id for that key."""

    role: Literal["staff", "admin"]
    id: str


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(..., max_length=MAX_QUERY_CHARS, description="The question as searched.")
    label: Literal["helpful", "not_helpful", "none"] = Field(
        description='"none": none of the passages answers the question (give no passage).'
    )
    doc_id: str | None = Field(None, max_length=MAX_ID, description="The passage's doc_id.")
    chunk_id: str | None = Field(None, max_length=MAX_ID, description="The passage's chunk_id.")
    start: int | None = Field(None, ge=0, description="The passage's start (if no chunk_id).")
    end: int | None = Field(None, ge=1, description="The passage's end (if no chunk_id).")
    language: Literal["zh", "en"] | None = Field(None, description="The question's language.")
    save_question: bool = Field(
        False,
        description="Store the question's text as a test case (otherwise only its HMAC, "
        "unless MEDCITE_LOG_QUERIES is set).",
    )


class FeedbackStored(BaseModel):
    status: Literal["stored"]
    query_key: str = Field(description="The question's HMAC: its id in the exported set.")
    label: Literal["helpful", "not_helpful", "none"]
    question_saved: bool = Field(description="The question's text is stored (exportable).")


class FeedbackAccess(BaseModel):
    enabled: bool = Field(description="Staff feedback is on (a staff or admin key is set).")
    signed_in: bool = Field(description="The request presented a key that may give feedback.")
    role: Literal["staff", "admin"] | None = None
    question_text: Literal["on_request", "always"] | None = Field(
        None,
        description='"always" when MEDCITE_LOG_QUERIES stores every judged question\'s text.',
    )


FEEDBACK_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong staff key"},
    403: {"model": ErrorResponse, "description": "feedback is disabled (no staff key set)"},
    422: {"model": ErrorResponse},
    503: {"model": ErrorResponse, "description": "the feedback store cannot be written"},
}


class Feedback:
    """The app's feedback store, opened on first use (again after a failed open), and the
    keys that may write to it."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.feedback_path
        self.keys = {"staff": _secret(settings.staff_key), "admin": _secret(settings.admin_api_key)}
        self.always = settings.log_queries  # every judged question keeps its text
        self._store: FeedbackStore | None = None
        self._lock = threading.Lock()

    def store(self) -> FeedbackStore:
        with self._lock:
            if self._store is None:
                self._store = FeedbackStore(self.path)
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def _secret(value: Any) -> bytes | None:
    return value.get_secret_value().encode() if value is not None else None


def get_feedback(request: Request) -> Feedback:
    feedback: Feedback = request.app.state.feedback
    return feedback


FeedbackDep = Annotated[Feedback, Depends(get_feedback)]


def require_staff(request: Request, feedback: FeedbackDep) -> StaffKey:
    """The role and the store's id of the key the request presents (403 when feedback is
    off, 401 for a missing or wrong key)."""
    if not any(feedback.keys.values()):
        raise HTTPException(403, "feedback is disabled: set MEDCITE_STAFF_KEY")
    given = bearer_key(request)
    if given is not None:
        key = given.decode("utf-8", "surrogateescape")
        if key_matches(given, feedback.keys["staff"]):
            return StaffKey("staff", staff_id(key))
        if key_matches(given, feedback.keys["admin"]):
            return StaffKey("admin", staff_id(key))
    raise HTTPException(
        401, "a valid staff or admin key is required", {"WWW-Authenticate": "Bearer"}
    )


StaffDep = Annotated[StaffKey, Depends(require_staff)]


router = APIRouter(prefix="/feedback", tags=["feedback"])


@router.get(
    "/enabled",
    response_model=FeedbackAccess,
    responses={401: FEEDBACK_ERRORS[401]},
)
def enabled(request: Request, feedback: FeedbackDep) -> FeedbackAccess:
    """Whether staff feedback is on and, with a key, whether that key may give it (the
    page shows its buttons then). A key that is presented and wrong is a 401."""
    on = any(feedback.keys.values())
    if not on or bearer_key(request) is None:
        return FeedbackAccess(enabled=on, signed_in=False)
    staff = require_staff(request, feedback)
    return FeedbackAccess(
        enabled=True,
        signed_in=True,
        role=staff.role,
        question_text="always" if feedback.always else "on_request",
    )


@router.post("", response_model=FeedbackStored, responses=FEEDBACK_ERRORS)
def give_feedback(
    body: FeedbackRequest,
    request: Request,
    staff: StaffDep,
    feedback: FeedbackDep,
    metrics: MetricsDep,
) -> FeedbackStored:
    """Mark a passage helpful or not helpful, or the question as answered by none of
    them. Marking the same passage again replaces the label."""
    query = validate_query(body.query)  # InvalidQuery: 422 invalid_query
    engine = getattr(request.app.state, "engine", None)
    version = None
    if engine is not None:
        version = engine.index.path.name
        if body.doc_id is not None and body.doc_id not in engine.index.documents:
            raise InvalidFeedback("doc_id is not a document of the served index")
    judgement = feedback.store().record(
        query=query,
        label=body.label,
        staff=staff.id,
        doc_id=body.doc_id,
        chunk_id=body.chunk_id,
        start=body.start,
        end=body.end,
        language=body.language,
        index_version=version,
        keep_text=feedback.always or body.save_question,
    )
    metrics.feedback.labels(body.label).inc()
    return FeedbackStored(
        status="stored",
        query_key=judgement.query_key,
        label=judgement.label,
        question_saved=judgement.question_saved,
    )
