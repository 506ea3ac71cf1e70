"""What routes share, kept on ``app.state`` by ``create_app`` and read as typed dependencies.

The getters are ``async`` only so that FastAPI calls them on the event loop instead of in a
worker thread: they just read an attribute.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from medcite.service.ops import Metrics, QueryLog
from medcite.service.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_query_log(request: Request) -> QueryLog:
    query_log: QueryLog = request.app.state.query_log
    return query_log


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
QueryLogDep = Annotated[QueryLog, Depends(get_query_log)]
