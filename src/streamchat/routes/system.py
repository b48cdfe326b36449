"""Hello, health, readiness, and the Swagger UI page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)

from ..metrics import Metrics
from ..schemas import Code, Envelope, Health
from .deps import ChatDep, HistoryDep, ModelsDep

router = APIRouter(tags=["system"])

SWAGGER_ASSETS = "/swagger/assets"


@router.get("/hello", response_class=PlainTextResponse, summary="Hello")
async def hello() -> str:
    """The seed's greeting."""
    return "Hello World!"


@router.get("/healthz", summary="Liveness")
async def healthz() -> Envelope[Health]:
    """The process is up and serving."""
    return Envelope(data=Health(status="ok"))


@router.get("/readyz", summary="Readiness", responses={503: {"model": Envelope[Health]}})
async def readyz(chat: ChatDep, history: HistoryDep, models: ModelsDep) -> JSONResponse:
    """Ready when new chats are accepted (not draining after SIGTERM), the provider can take
    a request, the database and the stream hub (Redis) answer, and every background task
    other requests rely on (the store's writer, the Redis hub's copying and listening) is
    running.

    `models` has one check per model (false: its provider is down, or it is cooling down
    after refusals); they are not part of readiness: every node reaches the same upstreams,
    so taking this one out of the balancer would not help, and `provider` is false only when
    the default model and all its fallbacks are out."""
    stopped = chat.stopped_tasks() + ([] if history.store.writer_alive() else ["store-writer"])
    checks: dict[str, Any] = {
        "accepting": not chat.draining,  # false from SIGTERM on (server/drain.py)
        "provider": await chat.provider_ready(),
        "database": await history.store.ping(),
        "streams": await chat.hub_ready(),
        "tasks": not stopped,
    }
    ready = all(checks.values())
    checks["models"] = await models.checks()
    if stopped:
        checks["stopped"] = stopped
    health = Health(status="ready" if ready else "not ready", checks=checks)
    code = Code.OK if ready else Code.SERVER_BUSY if checks["database"] else Code.DB_OPERATION_ERROR
    envelope: Envelope[Health] = Envelope(
        code=code, message="" if ready else "not ready", data=health
    )
    return JSONResponse(envelope.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition: every worker's metrics together (DESIGN.md §9)."""
    observer: Metrics = request.app.state.metrics
    if not observer.enabled:
        return PlainTextResponse("metrics are off (STREAMCHAT_METRICS=false)\n", status_code=404)
    body, content_type = observer.render()
    return Response(body, media_type=content_type)


@router.get("/swagger", include_in_schema=False)
async def swagger_redirect() -> RedirectResponse:
    """GoFrame serves the UI at `/swagger/`."""
    return RedirectResponse("/swagger/", status_code=308)


@router.get("/swagger/", include_in_schema=False)
async def swagger(request: Request) -> HTMLResponse:
    """Swagger UI, its assets served by us from the swagger-ui-bundle-v2 package."""
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title="streamchat API",
        swagger_js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_ASSETS}/favicon-32x32.png",
    )
