"""The application: wiring, lifespan, exception handlers, the route table at start-up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from pydantic import TypeAdapter

from .. import __version__
from ..access.guards import LocalGuard
from ..access.identity import IdentityGate
from ..access.limits import Limiter, Quota
from ..apis.native.orphans import OrphanedAnswers
from ..apis.openai_chat.protocol import ChatCompletionChunk, ChatCompletionRequest
from ..apis.responses.protocol import CreateResponse
from ..apis.responses.serving import ResponsesService
from ..apis.responses.state import ResponseState
from ..apis.ui.orphans import UIOrphans
from ..apis.ui.protocol import UIChatRequest
from ..apis.ui.serving import UIChatServing
from ..config import Settings
from ..hub import MemoryHub, StreamHub
from ..logs import TraceMiddleware
from ..metrics import Metrics
from ..providers import build_provider
from ..routes import conversations, native, openai_chat, responses_api, system, ui, web
from ..routes.deps import UidQuery
from ..schemas import ChatRequest, StreamEvent
from ..service.chat import ChatService
from ..service.history import History
from ..store import ResponseStore, Store, create_engine
from ..store.keys import KeyStore
from ..store.ui_chats import UIChats
from . import handlers, routetable
from .admission import Admission, Gate, who_asked
from .bodylimit import BodyLimit
from .direct import DirectRoute, DirectRoutes
from .drain import Drain
from .jsonbody import StrictJson

log = logging.getLogger("streamchat")

# What a page on a listed origin may send: ours, and what the official OpenAI clients (their
# `x-stainless-*` telemetry) and the AI SDK send from a browser.
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Accept-Language",
    "Last-Event-ID",
    "OpenAI-Organization",
    "OpenAI-Project",
    "OpenAI-Beta",
    "Idempotency-Key",
    *(
        f"X-Stainless-{name}"
        for name in (
            "Arch",
            "Lang",
            "OS",
            "Package-Version",
            "Retry-Count",
            "Runtime",
            "Runtime-Version",
            "Timeout",
            "Helper-Method",
            "Poll-Helper",
            "Custom-Poll-Interval",
            "Async",
        )
    ),
]
CORS_EXPOSED_HEADERS = [
    "Trace-Id",
    "Retry-After",
    *(
        f"x-ratelimit-{what}-{of}"
        for what in ("limit", "remaining", "reset")
        for of in ("requests", "tokens")
    ),
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (from the environment when not given)."""
    settings = settings or Settings()
    refusal = settings.refusal()
    if refusal is not None:  # `streamchat serve` says it before binding; this is for the rest
        raise ValueError(refusal)
    metrics = Metrics(enabled=settings.metrics)
    provider = build_provider(settings, metrics)
    store = Store(
        create_engine(
            settings.database_url,
            schema=settings.database_schema,
            timeout=settings.database_timeout_seconds,
        ),
        progress_seconds=settings.history_save_seconds,
        metrics=metrics,
    )
    keys = KeyStore(store.engine)
    history = History(store, settings)
    limiter = Limiter(
        Quota(
            settings.limit_requests_per_minute,
            settings.limit_tokens_per_minute,
            settings.limit_streams,
        ),
        followers=settings.limit_followers,
        redis_url=settings.redis_url,
        key_prefix=settings.redis_key_prefix,
        redis_connections=settings.redis_max_connections,
        fail_closed=settings.limits_unreachable == "closed",
        metrics=metrics,
    )
    hub = build_hub(settings, store)
    service = ChatService(settings, provider, hub, history, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.start(run_migrations=settings.database_migrate)
        await hub.start()
        await provider.start()
        Drain(service, settings.shutdown_grace_seconds).install()
        _log_start(app, settings, provider.models())
        try:
            yield
        finally:
            await service.close()
            await provider.close()
            await hub.close()
            await limiter.close()
            await store.close()

    app = FastAPI(
        title="streamchat",
        version=__version__,
        description="Streaming AI chat server: Server-Sent Events, resumable streams.",
        openapi_url="/api.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.chat = service
    app.state.models = provider
    app.state.history = history
    app.state.limiter = limiter
    app.state.ui_serving = UIChatServing(
        service, history, UIChats(store), max_message_chars=settings.max_message_chars
    )
    app.state.metrics = metrics
    response_store = ResponseStore(store)
    app.state.responses = ResponsesService(service, store, response_store, settings)
    app.state.response_state = ResponseState(service, response_store)
    handlers.install(app)
    # The last added is the outermost: TraceMiddleware, then the admission seam, the body
    # bound, DirectRoutes (when on), the strict JSON check of FastAPI's routes, then
    # FastAPI's router.
    app.add_middleware(StrictJson)
    if settings.direct_routes:
        app.add_middleware(
            DirectRoutes,
            routes={
                "/api/chat": DirectRoute(ChatRequest, native.chat),
                "/v1/chat/completions": DirectRoute(
                    ChatCompletionRequest, openai_chat.chat_completions
                ),
                "/v1/responses": DirectRoute(
                    CreateResponse, responses_api.create_response, UidQuery
                ),
                "/api/ui/chat": DirectRoute(UIChatRequest, ui.ui_chat, UidQuery),
            },
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Admission, gates=gates(settings, keys))
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
        )
    app.add_middleware(TraceMiddleware, who=who_asked)
    app.include_router(native.router)
    app.include_router(conversations.router)
    app.include_router(openai_chat.router)
    app.include_router(responses_api.router)
    app.include_router(ui.router)
    app.include_router(system.router)
    app.include_router(web.router)
    app.mount(web.WEB_ASSETS, web.WebAssets(), name="web-assets")
    app.mount(
        system.SWAGGER_ASSETS,
        StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
        name="swagger-assets",
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def gates(settings: Settings, keys: KeyStore) -> list[Gate]:
    """The checks of the admission seam, in order: who asks (keys, or the guards of a
    server without keys)."""
    if settings.auth_mode == "keys":
        return [IdentityGate(keys, cache_seconds=settings.key_cache_seconds)]
    return [
        LocalGuard(
            settings.allowed_host_names,
            settings.cors_origin_list,
            # Off only because nothing was set: nobody chose to serve a proxy's clients.
            refuse_proxied=settings.auth is None,
        )
    ]


def build_hub(settings: Settings, store: Store) -> StreamHub:
    """The Redis hub when `REDIS_URL` is set (several nodes), else the in-process one."""
    if settings.redis_url:
        # Imported here: a single node never loads redis-py (about 20 MB resident).
        from ..hub.redis import RedisHub

        hub = RedisHub(
            settings.redis_url,
            key_prefix=settings.redis_key_prefix,
            ttl_seconds=settings.stream_ttl_seconds,
            outage_seconds=settings.redis_outage_seconds,
            max_connections=settings.redis_max_connections,
            max_events=settings.redis_stream_max_events,
            node_timeout_seconds=settings.node_timeout_seconds,
        )
        # Each API ends a dead node's streams in its own protocol.
        hub.watch_orphans(UIOrphans(store, then=OrphanedAnswers(store)))
        return hub
    return MemoryHub(
        ttl_seconds=settings.stream_ttl_seconds,
        retain_bytes=settings.stream_retain_bytes,
        owner_bytes=settings.stream_retain_bytes_per_owner,
    )


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's spec plus the stream event and chunk models, which no JSON response references."""
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        events = TypeAdapter(StreamEvent).json_schema(ref_template="#/components/schemas/{model}")
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(events.pop("$defs", {}))
        schemas["StreamEvent"] = events
        chunk = ChatCompletionChunk.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(chunk.pop("$defs", {}))
        schemas["ChatCompletionChunk"] = chunk
        # Our validation errors are 400 envelopes, not FastAPI's default 422 bodies.
        for operation in (op for path in spec["paths"].values() for op in path.values()):
            operation.get("responses", {}).pop("422", None)
            _errors_as_json(operation.get("responses", {}))
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = spec
    return app.openapi_schema


def _errors_as_json(responses: dict[str, Any]) -> None:
    """Errors are JSON envelopes even where the answer is a stream: FastAPI gives every
    documented response the route's media type (text/event-stream for the stream routes)."""
    for status, response in responses.items():
        content = response.get("content", {})
        if status >= "400" and "text/event-stream" in content:
            content["application/json"] = content.pop("text/event-stream")


def _log_start(app: FastAPI, settings: Settings, models: list[str]) -> None:
    base = f"http://{settings.host}:{settings.port}"
    if settings.models_file is None:
        log.info("provider %s, model %s", settings.provider, settings.model_name)
    else:
        log.info("models from %s: %s", settings.models_file, ", ".join(models))
    if settings.auth_mode == "keys":
        log.info("auth: API keys (Authorization: Bearer) on /api and /v1")
    elif settings.auth is None:
        log.info(
            "auth: off (loopback only; hosts %s; requests through a proxy refused)",
            ", ".join(settings.allowed_host_names),
        )
    else:
        # Set explicitly: on loopback too, since a proxy in front serves whoever reaches it.
        log.warning(
            "AUTH IS OFF ON %s: ANYONE WHO REACHES THIS PORT, OR A PROXY IN FRONT OF IT, CAN "
            "READ, WRITE AND DELETE EVERY USER'S CONVERSATIONS AND SPEND YOUR MODEL "
            "(set STREAMCHAT_AUTH=keys)",
            settings.host,
        )
    log.info("chat page is serving at address: %s/", base)
    log.info("streams: %s", "redis (shared by every node)" if settings.redis_url else "in process")
    log.info("swagger ui is serving at address: %s/swagger/", base)
    log.info("openapi specification is serving at address: %s/api.json", base)
    table = routetable.rows(app.routes, f":{settings.port}", TraceMiddleware.__name__)
    log.info("routes:\n%s", routetable.render(table))
