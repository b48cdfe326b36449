"""Providers: where answers come from."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..metrics import Metrics
from .base import Provider
from .catalog import Catalog, ModelEntry, api_key, load_catalog
from .cooldown import Cooldown
from .echo import EchoProvider
from .openai import OpenAIProvider
from .router import Route, Router


def build_provider(settings: Settings, metrics: Metrics | None = None) -> Router:
    """The models of `STREAMCHAT_MODELS_FILE` (or the one `STREAMCHAT_PROVIDER` names) as one
    router; raises `CatalogError` for a bad file or a missing key variable."""
    catalog = load_catalog(settings)
    # Without a models file there is nothing to fall back to: no cooldown either, so that
    # one model behaves exactly as before (every request tries it).
    with_cooldown = settings.models_file is not None
    locals_by_path: dict[Path | None, Provider] = {}
    routes = []
    for entry in catalog.models:
        if entry.provider == "local":
            # Entries of the same GGUF share one loaded model.
            provider = locals_by_path.get(entry.model_path)
            if provider is None:
                provider = locals_by_path[entry.model_path] = _local(settings, entry, metrics)
        else:
            provider = _provider(settings, entry)
        cooldown = (
            Cooldown(settings.model_cooldown_failures, settings.model_cooldown_seconds)
            if with_cooldown
            else None
        )
        routes.append(Route(entry.name, provider, entry.sent_as, cooldown))
    _link(routes, catalog)
    return Router(routes, catalog.default_name)


def local_settings(settings: Settings, entry: ModelEntry) -> Settings:
    """The settings a local entry's model is loaded with: its own GGUF, if it names one."""
    if entry.model_path is None:  # the embedded model, as STREAMCHAT_MODEL / LOCAL_MODEL_PATH say
        return settings.model_copy(update={"provider": "local"})
    return settings.model_copy(update={"local_model_path": entry.model_path, "model": entry.name})


def local_entries(settings: Settings, catalog: Catalog) -> list[tuple[str, Settings]]:
    """Each distinct local model of the catalog, by the first entry naming it."""
    seen: dict[Path | None, tuple[str, Settings]] = {}
    for entry in catalog.models:
        if entry.provider == "local" and entry.model_path not in seen:
            seen[entry.model_path] = (entry.name, local_settings(settings, entry))
    return list(seen.values())


def _local(settings: Settings, entry: ModelEntry, metrics: Metrics | None) -> Provider:
    # Imported here: a server without a local model never loads the embedded model's code.
    from .local import LocalProvider

    return LocalProvider(local_settings(settings, entry), metrics)


def _provider(settings: Settings, entry: ModelEntry) -> Provider:
    if entry.provider == "openai":
        assert entry.base_url is not None  # the catalog checked it
        return OpenAIProvider(
            base_url=entry.base_url,
            api_key=api_key(entry) if settings.models_file else settings.openai_api_key,
            model=entry.sent_as,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
            max_connections=settings.upstream_max_connections,
        )
    return EchoProvider(entry.name, settings.echo_delay_ms)


def _link(routes: list[Route], catalog: Catalog) -> None:
    """Give each route its chain: itself, then its fallbacks' routes in order."""
    by_name = {route.name: route for route in routes}
    for route, entry in zip(routes, catalog.models, strict=True):
        route.chain = (route, *(by_name[name] for name in entry.fallbacks))
